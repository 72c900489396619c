"""In-memory units of work and peer gateways: use cases run on them without a database."""
