"""The billing service over gRPC: converters (`convert`) and handlers (`servicer`)."""
