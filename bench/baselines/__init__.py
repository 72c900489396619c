"""Baselines measured in the same run as the scenarios divided by them: the transport
ceiling (echo), commit-per-request allocation (naive), batched allocation, the hot row."""
