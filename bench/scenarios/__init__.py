"""Scenarios against the platform's services: pool (S2-S5, S8), credits (S6), snapshots and
cycle close (S7), CSV mass configuration (S9)."""
