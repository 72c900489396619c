"""Where the command looks for each service when no `--pool`-style option says.

The same variables `make run` (services/__main__.py) starts the platform with, in order:
`LICENSING_<SVC>` (this command's own), `<SVC>_ADDRESS` (host:port, what the services
give each other), `<SVC>_PORT` on `LICENSING_HOST` (default 127.0.0.1), then the
launcher's default port. So a platform started with `POOL_PORT=6000 make run` is found
by `POOL_PORT=6000 licensing ...`, or after the `export` line `make run` prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_HOST = "127.0.0.1"


def default_address(name: str, default_port: int, environ: Mapping[str, str] | None = None) -> str:
    """The address of service `name` from `<NAME>_ADDRESS`, else `<NAME>_PORT`, else the
    default port; the host is `LICENSING_HOST` (what `make run` listens on) or 127.0.0.1."""
    env = os.environ if environ is None else environ
    prefix = name.upper()
    given = env.get(f"{prefix}_ADDRESS", "").strip()
    if given:
        return given
    host = env.get("LICENSING_HOST", "").strip() or DEFAULT_HOST
    port = env.get(f"{prefix}_PORT", "").strip() or str(default_port)
    return f"{host}:{port}"
