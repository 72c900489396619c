"""The rules of credits (docs/product.md, "Credits") in plain Python: no gRPC, SQL or
protobuf here.

- `periods`: billing periods (monthly from the plan's anchor, day clamped to month end);
- `drawing`: the draw order of a usage and its split across sources;
- `ledger`: double-entry postings over accounts that never go below zero;
- `charging`: usages of one (company, currency) charged together, periods opened once;
- `grants`: where granted credits go; `accounts`: when an office's currency is fixed;
- `balances`: what GetBalances shows, from the accounts;
- `caps`: office caps on the shared company balance; `alerts`: thresholds on it;
- `model`: what the credits service keeps; `errors`: its business errors.
"""
