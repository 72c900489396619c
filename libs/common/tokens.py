"""Company-scoped tokens: a signed JWT that says for which companies a call acts.

A caller acting for one company (an admin console backend acting for a logged-in
company admin) sends `authorization: Bearer <jwt>` in the call's metadata. The token is
verified with PyJWT against the public keys of a JWKS file (`<SVC>_JWKS_FILE`, reread
when it changes): the algorithm must be RS256 or ES256 and match the key (`alg: none`
and algorithm confusion are refused), `exp` and `aud` must be present and hold, `nbf`
too when present. Its `company_ids` claim lists the companies it may act for.

Any failure is UNAUTHENTICATED (`UNAUTHENTICATED_CALLER`), with a message that says what
was wrong with the token but nothing about the data.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from libs.common.errors import DomainError
from libs.common.reasons import Reason

log = logging.getLogger(__name__)

ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}
COMPANIES_CLAIM = "company_ids"
METADATA_KEY = "authorization"
SCHEME = "bearer "
LEEWAY_SECONDS = 30
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Token:
    """A verified token: who it was issued to, its companies, when it expires."""

    raw: str
    subject: str
    company_ids: frozenset[str]
    expires: float


def unauthenticated(message: str) -> DomainError:
    return Reason.UNAUTHENTICATED_CALLER.error(message)


def bearer(metadata: Any) -> str | None:
    """The bearer token in a call's metadata (None: no `authorization` entry)."""
    for key, value in metadata or ():
        if key == METADATA_KEY:
            text = value.decode() if isinstance(value, bytes) else str(value)
            if not text.lower().startswith(SCHEME):
                raise unauthenticated("the authorization metadata is not a bearer token")
            return text[len(SCHEME) :].strip()
    return None


class TokenVerifier:
    """Verifies tokens with the keys of a JWKS file for one audience."""

    def __init__(self, jwks_file: str | Path | None, audience: str) -> None:
        self._path = Path(jwks_file) if jwks_file else None
        self._audience = audience
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._verified: dict[str, Token] = {}
        if self._path is not None:
            try:
                self._load()
            except OSError as error:  # mounted later (an optional volume): tokens wait
                log.warning("the JWKS file cannot be read yet (%s): tokens are refused", error)

    def _load(self) -> None:
        assert self._path is not None
        stat = os.stat(self._path)
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if stamp == self._stamp:
            return
        document = json.loads(self._path.read_text())
        keys: dict[str, jwt.PyJWK] = {}
        for index, entry in enumerate(document.get("keys", [])):
            algorithm = ALGORITHMS.get(entry.get("kty", ""))
            if algorithm is None or entry.get("alg", algorithm) != algorithm:
                continue  # only RS256 and ES256 keys are used
            keys[entry.get("kid") or f"#{index}"] = jwt.PyJWK(entry, algorithm)
        with self._lock:
            self._keys = keys
            self._verified = {}
            self._stamp = stamp

    def _key_for(self, header: Mapping[str, Any]) -> jwt.PyJWK:
        kid = header.get("kid")
        if kid is not None:
            key = self._keys.get(str(kid))
        elif len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        else:
            key = None
        if key is None:
            raise unauthenticated("the token is signed with a key this service does not know")
        return key

    def verify(self, raw: str) -> Token:
        """The verified token, or UNAUTHENTICATED."""
        if self._path is None:
            raise unauthenticated("this service is not configured to accept tokens")
        try:
            self._load()  # a replaced JWKS (a key withdrawn) drops what was verified
        except (OSError, ValueError) as error:
            raise unauthenticated(
                f"the token keys cannot be read ({type(error).__name__})"
            ) from None
        cached = self._verified.get(raw)
        if cached is not None and cached.expires > time.time() - LEEWAY_SECONDS:
            return cached
        try:
            header = jwt.get_unverified_header(raw)
            key = self._key_for(header)
            algorithm = ALGORITHMS[str(key.key_type)]
            if header.get("alg") != algorithm:
                raise unauthenticated("the token's algorithm is not its key's")
            claims = jwt.decode(
                raw,
                key.key,
                algorithms=[algorithm],
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthenticated("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("the token is for another audience") from None
        except jwt.InvalidTokenError as error:
            raise unauthenticated(f"the token is not valid ({type(error).__name__})") from None
        companies = claims.get(COMPANIES_CLAIM)
        if not isinstance(companies, list) or not all(isinstance(c, str) for c in companies):
            raise unauthenticated(f"the token's {COMPANIES_CLAIM} claim is not a list of ids")
        token = Token(
            raw, str(claims.get("sub", "")), frozenset(c.lower() for c in companies), claims["exp"]
        )
        with self._lock:
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified[raw] = token
        return token


def issue(
    signing_key_pem: bytes,
    company_ids: list[str],
    audience: str,
    subject: str = "",
    lifetime_seconds: int = 3600,
    key_id: str | None = None,
    algorithm: str = "ES256",
) -> str:
    """A token for `company_ids` (for the command line and tests; production tokens come
    from the identity provider that signs with the key the JWKS publishes)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        COMPANIES_CLAIM: company_ids,
    }
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, signing_key_pem, algorithm=algorithm, headers=headers)
