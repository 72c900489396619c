"""The rules of SPEC §6-§8 in plain Python: no gRPC, SQL or protobuf here."""
