"""Billing's use cases, one module per family: `plans`, `quotes` (and the checkout they
share with purchases, `checkout`), `purchases` (the saga's driver), `removals`,
`invoices`. Each takes a command and the unit of work (or an open `Tx`) and the peer
gateways it needs (the pool's; the credits' for plans and invoices), and returns domain
objects."""
