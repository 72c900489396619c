"""The credits service's use cases, one module per family:

- `accounts`: PutAccount, GetAccount, ListAccounts;
- `pooling`: SetCreditPooling, GetCreditPooling;
- `grants`: GrantCredits;
- `recording`: RecordUsage and BatchRecordUsage, through the per-(company, currency)
  writer that charges concurrent usages in one transaction;
- `usage`: GetUsage, ListUsage, GetUsageTotals, GetPeriodOverage;
- `ledger`: GetBalances, ListLedgerEntries, CheckLedger;
- `limits`: office caps on the shared balance, thresholds on it and their alerts;
- `housekeeping`: dropping request_ids past their retention.
"""
