"""`python -m bench.baselines.pool_without_history serve`: the pool service with unit
history switched off, the baseline of what history costs (scenario S2-nohistory).

Every statement that changes units writes its history rows in a CTE that
`services.pool.repository.history.recorded` builds. Here that function is replaced,
before any statement is built, by one giving the same rows without inserting them (a
plain SELECT no one references, which PostgreSQL does not run; it keeps the statement's
parameters), so the statements are the same but for the history insert. A measurement
hook only: on such a pool, unit timelines and as-of snapshots are wrong, which is why it
lives in bench/ and not in the settings.
"""

import runpy

from services.pool.domain.history import EventKind
from services.pool.repository import history

_recorded = history.recorded


def _nothing_recorded(rows: str, now: str, kind: EventKind | str, **columns: str) -> str:
    insert = _recorded(rows, now, kind, **columns)
    return insert[insert.index("SELECT") :] + " WHERE false"


if __name__ == "__main__":
    history.recorded = _nothing_recorded
    runpy.run_module("services.pool", run_name="__main__", alter_sys=True)
