"""Every SQL statement of the credits service (schema `credits`), on raw asyncpg, as
repositories bound to one connection (`services/credits/unit_of_work.py` binds them).

- `offices`: office credit accounts and the pooling switches;
- `ledger`: the writers' lock, ledger accounts, entries and grants, and the ledger check;
- `usage`: usage records and their totals;
- `limits`: office caps and their draws, thresholds, top-up levels and credit alerts.

Writers of one (company, currency) serialize on a transaction-level advisory lock
(`LedgerRepository.lock`), across replicas. Balances are kept in `ledger_accounts`
together with the append-only `entries`, in the same transaction; CHECK constraints
make a balance below zero (or a counter-account above zero) impossible whatever the code
above does.
"""
