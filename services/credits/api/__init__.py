"""The credits service over gRPC: `convert` (proto <-> domain, field checks) and
`servicer` (the handlers)."""
