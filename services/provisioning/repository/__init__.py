"""Every SQL statement of the provisioning service (schema `provisioning`, raw asyncpg),
one module per concern; each repository runs on the connection of one transaction."""
