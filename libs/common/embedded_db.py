"""A private PostgreSQL from the `pgserver` package, for machines with no database."""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import quote

# pgserver asks platformdirs for a runtime directory it does not need.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from pgserver import get_server  # type: ignore[attr-defined]  # noqa: E402

_servers: list[object] = []  # keeps servers referenced until the process exits


def start(data_dir: Path, cleanup: bool) -> str:
    """Starts (or reuses) the embedded server in `data_dir`; returns its URL.

    With `cleanup` the server stops, and its data is deleted, when the process exits.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="delete" if cleanup else "stop")
    _servers.append(server)
    # pgserver listens on a unix socket in the data directory.
    return f"postgresql://postgres@/postgres?host={quote(str(data_dir))}"
