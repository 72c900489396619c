"""Billing's use cases, one module per family: `plans`, `quotes` (and the checkout they
share with purchases, `checkout`), `purchases` (the saga's driver), `removals`,
`invoices`. Each takes a command and the unit of work (or an open `Tx`) and the pool
gateway, and returns domain objects."""
