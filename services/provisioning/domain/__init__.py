"""The rules of SPEC §11 in plain Python: no gRPC, SQL or protobuf here."""
