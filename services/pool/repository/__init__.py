"""Every SQL statement of the pool service (schema `pool`), as raw asyncpg statements
(prepared and cached per connection by asyncpg), one module per aggregate. Each
repository is bound to the connection of one transaction (`unit_of_work.py`).
"""
