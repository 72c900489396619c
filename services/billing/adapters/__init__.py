"""Typed gateways to the services billing calls (only the pool)."""
