"""Mutual TLS: the server's credentials (reloaded when their files change) and the
client credentials our peers and the command line present.

A service reads three files: its certificate, its key, and the CA its callers'
certificates must come from (`<SVC>_TLS_CERT_FILE`, `<SVC>_TLS_KEY_FILE`,
`<SVC>_TLS_CA_FILE`). The server asks every caller for a certificate and refuses, at the
handshake, one that presents none or one the CA did not sign; a plaintext client cannot
connect at all.

Rotation needs no restart: on each new connection gRPC asks for the current
configuration, and when any of the three files changed (cert-manager replaces them in
place) the new ones are read and used from that handshake on. Connections already open
keep the certificate they started with. A half-written set of files that does not load
is not used: the previous configuration stays until the files are whole again.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from libs.common.logging_limits import RateLimitedWarning
from licensing.client import Tls

if TYPE_CHECKING:
    from libs.common.settings import ServiceSettings

log = logging.getLogger(__name__)
_unloadable = RateLimitedWarning(10.0)


class TlsConfigurationError(ValueError):
    """TLS is on but its files are not configured or cannot be read."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where one identity's certificate, key and trusted CA are."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA bundle), as PEM."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when any file is replaced (inode, size, modification time)."""
        stamps = []
        for path in (self.cert, self.key, self.ca):
            stat = os.stat(path)
            stamps.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(stamps)


def files_of(cert: str, key: str, ca: str, what: str) -> TlsFiles:
    """The files named by settings, checked to exist (a clear error at start rather
    than a refused handshake later)."""
    missing = [name for name, value in (("cert", cert), ("key", key), ("CA", ca)) if not value]
    if missing:
        raise TlsConfigurationError(
            f"{what}: TLS is on but no {', '.join(missing)} file is configured "
            "(set the *_TLS_CERT_FILE, *_TLS_KEY_FILE and *_TLS_CA_FILE settings, "
            "or turn TLS off explicitly with *_TLS_ENABLED=false)"
        )
    files = TlsFiles(Path(cert), Path(key), Path(ca))
    for path in (files.cert, files.key, files.ca):
        if not path.is_file():
            raise TlsConfigurationError(f"{what}: TLS file {path} does not exist")
    return files


class ReloadingServerCredentials:
    """Server credentials that require a client certificate and follow their files."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()  # gRPC may ask from several threads at once
        self._stamp = files.stamp()
        self.reloads = 0
        initial = self._configuration()
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            initial, self._fetch, require_client_authentication=True
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self._files.read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when the files
        changed, None to keep the current one."""
        try:
            with self._lock:
                stamp = self._files.stamp()
                if stamp == self._stamp:
                    return None
                configuration = self._configuration()
                self._stamp = stamp
                self.reloads += 1
        except Exception as error:  # a file mid-replacement: try again next handshake
            _unloadable.warn("TLS files could not be reloaded (%s); keeping the old ones", error)
            return None
        log.info("TLS certificate files changed: new connections use the new certificate")
        return configuration


def client_tls(files: TlsFiles) -> Tls:
    """The client package's TLS (`licensing.client.Tls`): present `files`' certificate,
    trust servers `files.ca` signed."""
    return Tls.from_files(files.ca, files.cert, files.key)


def client_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Credentials that present `files`' certificate and trust servers `files.ca` signed."""
    return client_tls(files).credentials()


def peer_identity(auth_context: dict[str, list[bytes]]) -> str | None:
    """The caller's identity from its verified certificate: the SPIFFE id, else the first
    URI SAN, else the first DNS SAN (None: no certificate, e.g. a plaintext call)."""
    for key in ("peer_spiffe_id", "peer_uri", "peer_dns"):
        values = auth_context.get(key)
        if values:
            return values[0].decode(errors="replace")
    return None


def service_files(settings: ServiceSettings) -> TlsFiles | None:
    """The service's own TLS files (None: TLS is off)."""
    if not settings.tls_enabled:
        return None
    return files_of(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file, "the service"
    )


def peer_credentials(settings: ServiceSettings) -> grpc.ChannelCredentials | None:
    """What the service presents when it calls a peer: its own certificate, trusting
    the same CA (None: TLS is off, the peer is called in plaintext)."""
    files = service_files(settings)
    return None if files is None else client_credentials(files)
