"""The messages of bench/baselines/echo.proto, compiled at import (no generated files)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import grpc

SERVICE = "bench.echo.v1.EchoService"
METHOD = f"{SERVICE}/Echo"

# grpc.protos resolves the .proto against sys.path: make sure the repository is on it.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

_protos: Any = grpc.protos("bench/baselines/echo.proto")

EchoRequest: Any = _protos.EchoRequest
EchoResponse: Any = _protos.EchoResponse
