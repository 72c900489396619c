"""A private certificate authority for one machine: what `make run` and the tests use.

`ensure(directory)` creates, once, in `directory` (`.local/pki` for `make run`):

- `ca.crt` / `ca.key`: the CA every service trusts for its callers and peers;
- `<service>.crt` / `<service>.key` for each service, with the URI SAN
  `spiffe://licensing/<service>` (its identity) and the names it is reached by
  (`localhost`, `127.0.0.1`), usable as server and as client certificate;
- `operator.crt` / `operator.key`: the identity of the `licensing` command line,
  `spiffe://licensing/operator/local`;
- `token-signing.key` (ES256) and `jwks.json`, its public half, which services use to
  verify company-scoped tokens (`libs.common.tokens`).

Files already there are kept: a second start uses the same CA. In production the CA is
cert-manager's (deploy/components/cert-manager), never this module.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "spiffe://licensing"
OPERATOR = "operator"
OPERATOR_IDENTITY = f"{TRUST_DOMAIN}/operator/local"
SIGNING_KEY = "token-signing.key"
JWKS = "jwks.json"
SIGNING_KEY_ID = "local-1"
CERT_DAYS = 365


def identity_of(name: str) -> str:
    """The SPIFFE identity of a service (or the local operator) by its short name."""
    return OPERATOR_IDENTITY if name == OPERATOR else f"{TRUST_DOMAIN}/{name}"


@dataclass(frozen=True)
class Credentials:
    """The files of one identity: its certificate, its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class LocalPki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def jwks(self) -> Path:
        return self.directory / JWKS

    @property
    def signing_key(self) -> Path:
        return self.directory / SIGNING_KEY

    def credentials(self, name: str) -> Credentials:
        return Credentials(self.directory / f"{name}.crt", self.directory / f"{name}.key", self.ca)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Written to a new file readable by its owner only, then renamed into place: a
    reader never sees half a key (certificate rotation replaces files the same way)."""
    temporary = path.with_name(f".{path.name}.new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    temporary.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    temporary.replace(path)


def create_ca(
    directory: Path, name: str = "licensing local CA"
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA in `directory` (ca.crt, ca.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS * 10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca.key", _key_pem(key))
    _write_public(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cert_path: Path,
    key_path: Path,
    identity: str,
    dns_names: Sequence[str] = ("localhost",),
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> None:
    """A certificate for `identity` (its URI SAN), for server and client use, signed by
    `ca`, written to `cert_path` and `key_path`."""
    ca_cert, ca_key = ca
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)]
    names += [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names += [x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def create_signing_key(directory: Path) -> None:
    """An ES256 token-signing key and its JWKS (the public key, with its `kid`)."""
    key = _new_key()
    _write_private(directory / SIGNING_KEY, _key_pem(key))
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": SIGNING_KEY_ID, "alg": "ES256", "use": "sig"})
    _write_public(directory / JWKS, json.dumps({"keys": [public]}, indent=2).encode())


def ensure(directory: Path, services: Iterable[str]) -> LocalPki:
    """The CA, each service's and the operator's certificate, and the token-signing
    key in `directory`, created where missing."""
    pki = LocalPki(directory)
    if pki.ca.exists() and (directory / "ca.key").exists():
        ca = load_ca(directory)
    else:
        ca = create_ca(directory)
    for name in (*services, OPERATOR):
        files = pki.credentials(name)
        if not (files.cert.exists() and files.key.exists()):
            issue(ca, files.cert, files.key, identity_of(name), ("localhost", name))
    if not (pki.signing_key.exists() and pki.jwks.exists()):
        create_signing_key(directory)
    return pki
