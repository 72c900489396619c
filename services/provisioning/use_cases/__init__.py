"""Provisioning's use cases: one module per family; each takes a command and a unit of
work (or one open transaction) and answers domain objects."""
