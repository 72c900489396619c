"""The licensing platform's gRPC contract: `licensing.<service>.v1` (generated stubs) and
`licensing.client` (channels and error details)."""
