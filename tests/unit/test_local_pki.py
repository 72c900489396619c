"""`make run`'s certificates: created once in .local/pki, found by the services."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from libs.common import local_pki
from services.__main__ import security_environment


def test_first_start_creates_the_ca_each_service_the_operator_and_a_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LICENSING_PKI_DIR", str(tmp_path / "pki"))
    monkeypatch.delenv("LICENSING_TLS_ENABLED", raising=False)
    for name in ("POOL", "BILLING"):
        for key in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "JWKS_FILE"):
            monkeypatch.delenv(f"{name}_{key}", raising=False)
    env = security_environment(["pool", "billing"])
    pki = tmp_path / "pki"
    assert env["POOL_TLS_CERT_FILE"] == str(pki / "pool.crt")
    assert env["BILLING_TLS_ENABLED"] == "true"
    for name in ("ca.crt", "ca.key", "pool.key", "operator.crt", "token-signing.key", "jwks.json"):
        assert (pki / name).is_file(), name
    cert = x509.load_pem_x509_certificate((pki / "billing.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "spiffe://licensing/billing" in names.get_values_for_type(x509.UniformResourceIdentifier)
    assert oct((pki / "pool.key").stat().st_mode & 0o777) == "0o600"
    before = (pki / "ca.crt").read_bytes()
    security_environment(["pool", "billing"])  # a second start keeps the same CA
    assert (pki / "ca.crt").read_bytes() == before


def test_settings_already_given_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSING_PKI_DIR", str(tmp_path))
    monkeypatch.setenv("POOL_TLS_CERT_FILE", "/elsewhere/pool.crt")
    assert security_environment(["pool"])["POOL_TLS_CERT_FILE"] == "/elsewhere/pool.crt"


def test_tls_can_be_turned_off_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSING_TLS_ENABLED", "false")
    assert security_environment(["pool"]) == {"POOL_TLS_ENABLED": "false"}


def test_the_operator_identity_is_an_operator() -> None:
    assert local_pki.identity_of("operator").startswith("spiffe://licensing/operator/")
