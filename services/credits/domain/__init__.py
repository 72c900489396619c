"""The rules of SPEC §10 in plain Python: no gRPC, SQL or protobuf here.

- `periods`: billing periods (monthly from the plan's anchor, day clamped to month end);
- `drawing`: the draw order of a usage and its split across sources;
- `ledger`: double-entry postings over accounts that never go below zero;
- `model`: what the credits service keeps; `errors`: its business errors.
"""
