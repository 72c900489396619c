"""Mutual TLS for scenarios that measure it: a CA and certificates for the run, and the
client credentials each TLS service's address is reached with.

A service started with `tls=True` (bench/harness/services.py) gets its certificate from
the run's CA (`libs.common.local_pki`, in the run's scratch folder) and requires client
certificates; `channel(address)` then opens a channel with the operator's certificate
for that address (setup, health checks), and the load generator is given the same files.
Addresses not registered get plaintext channels, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from libs.common import local_pki
from libs.common.tls import TlsFiles, client_credentials

_clients: dict[str, TlsFiles] = {}


def service_environment(directory: Path, name: str, prefix: str) -> tuple[dict[str, str], TlsFiles]:
    """The service's TLS settings and the operator's client files, from the run's CA."""
    pki = local_pki.ensure(directory, [name])
    server = pki.credentials(name)
    operator = pki.credentials(local_pki.OPERATOR)
    env = {
        f"{prefix}_TLS_ENABLED": "true",
        f"{prefix}_TLS_CERT_FILE": str(server.cert),
        f"{prefix}_TLS_KEY_FILE": str(server.key),
        f"{prefix}_TLS_CA_FILE": str(server.ca),
    }
    return env, TlsFiles(operator.cert, operator.key, operator.ca)


def register(address: str, files: TlsFiles) -> None:
    _clients[address] = files


def unregister(address: str) -> None:
    _clients.pop(address, None)


def client_files(address: str) -> TlsFiles | None:
    """The client certificate files `address` is reached with (None: plaintext)."""
    return _clients.get(address)


def channel(address: str, options: Sequence[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking channel to `address`: mTLS when it was registered, else plaintext."""
    files = _clients.get(address)
    if files is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, client_credentials(files), options=options)
