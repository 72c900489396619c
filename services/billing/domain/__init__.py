"""Billing's rules (plans, cycles, proration, checkout, the purchase saga, removals,
invoices) in plain Python: no gRPC, SQL or protobuf here."""
