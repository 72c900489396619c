"""Provisioning's gRPC edge: converters (`convert`) and thin handlers (`servicer`)."""
