"""How the command line proves who it is: the operator's client certificate, and a
company-scoped token when one is given.

Without flags it uses what `make run` created: `.local/pki` of the checkout (or
`LICENSING_PKI_DIR`), the CA `ca.crt` and the operator identity `operator.crt` /
`operator.key`. `LICENSING_TLS_CERT_FILE`, `LICENSING_TLS_KEY_FILE` and
`LICENSING_TLS_CA_FILE` name other files; `LICENSING_TLS_ENABLED=false` talks plaintext
to services that run without TLS. `LICENSING_TOKEN` (a JWT) is sent with every call as
`authorization: Bearer <token>`, for identities the policy requires a token of.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from licensing import client

ROOT = Path(__file__).resolve().parent.parent


class SecuritySetupError(Exception):
    """The certificate files the command line needs are not there."""


def pki_directory() -> Path:
    given = os.environ.get("LICENSING_PKI_DIR")
    if given:
        return Path(given)
    checkout = ROOT / ".local" / "pki"
    return checkout if checkout.exists() else Path.cwd() / ".local" / "pki"


def tls_enabled() -> bool:
    return os.environ.get("LICENSING_TLS_ENABLED", "true").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def operator_tls() -> client.Tls:
    """The operator's certificate, key and the CA (SecuritySetupError when the files are
    missing)."""
    directory = pki_directory()
    files = [
        Path(os.environ.get("LICENSING_TLS_CERT_FILE") or directory / "operator.crt"),
        Path(os.environ.get("LICENSING_TLS_KEY_FILE") or directory / "operator.key"),
        Path(os.environ.get("LICENSING_TLS_CA_FILE") or directory / "ca.crt"),
    ]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise SecuritySetupError(
            f"no client certificate: {', '.join(missing)} not found. `make run` creates "
            "them in .local/pki; or set LICENSING_PKI_DIR (LICENSING_TLS_ENABLED=false for "
            "services running without TLS)"
        )
    cert, key, ca = files
    return client.Tls.from_files(ca=ca, certificate=cert, key=key)


class _Token(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self._entry = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        return _Details(
            details.method,
            details.timeout,
            [*(details.metadata or ()), self._entry],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return continuation(self._with_token(details), requests)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def open_channel(address: str) -> grpc.Channel:
    """The client package's channel to a service: mTLS as the operator (unless TLS is
    turned off), with the token of `LICENSING_TOKEN` when set."""
    channel = client.channel(address, tls=operator_tls() if tls_enabled() else None)
    token = os.environ.get("LICENSING_TOKEN", "").strip()
    if token:
        channel = grpc.intercept_channel(channel, _Token(token))
    return channel
