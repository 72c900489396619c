"""The writers' locks written into a statement (`key_locks.lock_statement`, sent with
BEGIN): only ids and currency codes go in, once each, in the writers' order. That it
takes the same locks as `lock_keys` is tested against PostgreSQL
(tests/integration/pool/test_batch_statements.py)."""

import uuid

import pytest

from libs.common.key_locks import lock_statement


def test_lock_statement_writes_in_only_ids_and_currency_codes() -> None:
    company_id = uuid.uuid4()
    with pytest.raises(ValueError, match="not a lock key"):
        lock_statement("pool", [(company_id, "US'); DROP TABLE x; --")])
    with pytest.raises(ValueError, match="not a service name"):
        lock_statement("pool'", [(company_id, "USD")])
    a, b = sorted([uuid.uuid4(), uuid.uuid4()], key=str)
    statement = lock_statement("pool", [(b, "USD"), (a, "EUR"), (a, "CHF"), (b, "USD")])
    assert f"'{{{a},{a},{b}}}'::text[], '{{CHF,EUR,USD}}'::text[]" in statement  # sorted, once
