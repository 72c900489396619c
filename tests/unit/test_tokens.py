"""Token verification without a server: RS256 and ES256 keys of one JWKS file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from libs.common.errors import DomainError
from libs.common.tokens import TokenVerifier, issue


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    jwks = {"keys": [{**rsa_jwk, "kid": "r"}, {**ec_jwk, "kid": "e"}]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    return path, pem(rsa_key), pem(ec_key)


def test_rs256_and_es256_tokens_verify_with_their_keys(keys: tuple[Path, bytes, bytes]) -> None:
    path, rsa_pem, ec_pem = keys
    verifier = TokenVerifier(path, "licensing")
    rs = verifier.verify(issue(rsa_pem, ["A"], "licensing", "x", key_id="r", algorithm="RS256"))
    es = verifier.verify(issue(ec_pem, ["b"], "licensing", "y", key_id="e"))
    assert (rs.company_ids, rs.subject) == (frozenset({"a"}), "x")
    assert (es.company_ids, es.subject) == (frozenset({"b"}), "y")


def test_a_token_naming_the_other_key_is_refused(keys: tuple[Path, bytes, bytes]) -> None:
    path, rsa_pem, _ = keys
    verifier = TokenVerifier(path, "licensing")
    with pytest.raises(DomainError) as refused:
        verifier.verify(issue(rsa_pem, ["a"], "licensing", key_id="e", algorithm="RS256"))
    assert refused.value.reason == "UNAUTHENTICATED_CALLER"


def test_a_withdrawn_key_stops_verifying(keys: tuple[Path, bytes, bytes]) -> None:
    path, _, ec_pem = keys
    verifier = TokenVerifier(path, "licensing")
    token = issue(ec_pem, ["a"], "licensing", key_id="e")
    verifier.verify(token)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({"keys": [k for k in document["keys"] if k["kid"] != "e"]}))
    with pytest.raises(DomainError):
        verifier.verify(token)


def test_without_keys_no_token_is_accepted(keys: tuple[Path, bytes, bytes]) -> None:
    _, _, ec_pem = keys
    with pytest.raises(DomainError):
        TokenVerifier(None, "licensing").verify(issue(ec_pem, ["a"], "licensing"))


def test_a_jwks_file_not_there_yet_refuses_tokens_then_accepts_them(
    keys: tuple[Path, bytes, bytes], tmp_path: Path
) -> None:
    path, _, ec_pem = keys
    later = tmp_path / "mounted-later.json"
    verifier = TokenVerifier(later, "licensing")  # does not stop the service from starting
    token = issue(ec_pem, ["a"], "licensing", key_id="e")
    with pytest.raises(DomainError):
        verifier.verify(token)
    later.write_text(path.read_text())
    assert verifier.verify(token).company_ids == frozenset({"a"})
