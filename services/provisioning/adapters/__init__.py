"""Typed gateways to provisioning's peers (the pool, billing) on `libs.common.peer`."""
