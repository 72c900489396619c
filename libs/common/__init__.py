"""What every service shares: bootstrap, errors, idempotency, database, clock, settings."""
