"""The pool's use cases, one module per family: plain Python over commands and the unit
of work, answering domain objects (never protobuf)."""
