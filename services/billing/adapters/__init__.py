"""Typed gateways to the services billing calls: the pool and credits."""
