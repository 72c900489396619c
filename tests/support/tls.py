"""The test run's certificates: the suite runs with mutual TLS on, as production does.

`install()` (called once by tests/conftest.py) creates a CA, a certificate for each
service, the operator and a few other callers, and a token-signing key in a temporary
directory, and points every service's settings (`<SVC>_TLS_*`, `<SVC>_JWKS_FILE`) and
the command line (`LICENSING_PKI_DIR`) at them through the environment: services started
in this process and as processes use them alike. Test clients connect as the operator
(`channel`), or as any identity of the CA (`channel(address, "rating")`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from libs.common import local_pki, tls, tokens
from libs.common.local_pki import LocalPki
from licensing.client import Tls

SERVICES = ("pool", "billing", "credits", "provisioning")
# Callers of the shipped policy besides the services and the operator.
CALLERS = ("rating", "console", "consumer-notifications", "stranger")
AUDIENCE = "licensing"

_pki: LocalPki | None = None


def install() -> LocalPki:
    """The run's PKI (created on first use), with the environment pointing at it."""
    global _pki
    if _pki is not None:
        return _pki
    directory = Path(tempfile.mkdtemp(prefix="licensing-pki-"))
    atexit.register(shutil.rmtree, directory, True)
    pki = local_pki.ensure(directory, (*SERVICES, *CALLERS))
    os.environ.update(environment(pki))
    _pki = pki
    return pki


def environment(pki: LocalPki) -> dict[str, str]:
    """Every service's TLS settings and the command line's PKI directory."""
    env = {"LICENSING_PKI_DIR": str(pki.directory)}
    for name in SERVICES:
        files = pki.credentials(name)
        prefix = name.upper()
        env[f"{prefix}_TLS_CERT_FILE"] = str(files.cert)
        env[f"{prefix}_TLS_KEY_FILE"] = str(files.key)
        env[f"{prefix}_TLS_CA_FILE"] = str(files.ca)
        env[f"{prefix}_JWKS_FILE"] = str(pki.jwks)
        env[f"{prefix}_TLS_ENABLED"] = "true"
    return env


def pki() -> LocalPki:
    return install()


def credentials(identity: str = "operator") -> grpc.ChannelCredentials:
    """Client credentials of one identity of the run's CA."""
    files = pki().credentials(identity)
    return tls.client_credentials(tls.TlsFiles(files.cert, files.key, files.ca))


def client_tls(identity: str = "operator", server_name: str | None = None) -> Tls:
    """The client package's TLS for one identity of the run's CA (`server_name`: the name
    to check the server's certificate against, for targets that name no host, such as a
    list of addresses)."""
    files = pki().credentials(identity)
    return Tls.from_files(files.ca, files.cert, files.key, server_name)


def channel(
    address: str, identity: str = "operator", options: Sequence[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to a service, presenting `identity`'s certificate."""
    return grpc.aio.secure_channel(address, credentials(identity), options=options)


def sync_channel(
    address: str, identity: str = "operator", options: Sequence[tuple[str, Any]] | None = None
) -> grpc.Channel:
    """A blocking channel to a service, presenting `identity`'s certificate."""
    return grpc.secure_channel(address, credentials(identity), options=options)


def token(company_ids: Sequence[str], **overrides: Any) -> str:
    """A company-scoped token signed with the run's token-signing key."""
    key = pki().signing_key.read_bytes()
    return tokens.issue(
        key, list(company_ids), overrides.pop("audience", AUDIENCE), key_id="local-1", **overrides
    )


def bearer(token_text: str) -> tuple[tuple[str, str]]:
    """Call metadata that carries `token_text`."""
    return ((tokens.METADATA_KEY, f"Bearer {token_text}"),)
