"""The rules of SPEC §3, §4 and §9 in plain Python: no gRPC, SQL or protobuf here."""
