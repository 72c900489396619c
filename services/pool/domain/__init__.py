"""The pool's product rules in plain Python: no gRPC, SQL or protobuf here."""
