"""The pool's gRPC edge: messages to commands and back (`convert`), and the handlers."""
