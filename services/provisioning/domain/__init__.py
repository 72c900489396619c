"""Provisioning's rules in plain Python (docs/product.md, "Provisioning" and "Mass
configuration"): no gRPC, SQL or protobuf here."""
