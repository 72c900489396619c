"""Settings every service reads from its environment, once, at start."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_POOL_ADDRESS = "127.0.0.1:50051"


def shared_setting(prefix: str, name: str, default: str, description: str | None = None) -> Any:
    """A setting the services share (`name`, e.g. DATABASE_URL) that one service's own
    variable (`prefix` + `name`, e.g. POOL_DATABASE_URL) overrides."""
    return Field(
        default=default,
        validation_alias=AliasChoices(prefix + name, name),
        description=description,
    )


class ServiceSettings(BaseSettings):
    """Shared settings. Each service subclasses this with its own env prefix.

    `DATABASE_URL` is shared by all services (each keeps its own schema in it); a
    service-prefixed variable (e.g. `POOL_DATABASE_URL`) overrides it.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="PostgreSQL URL (postgresql://...); the service uses its own schema.",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=0, ge=0, le=65535, description="Port; 0 picks a free one.")
    db_pool_size: int = Field(default=10, ge=1, le=200)
    read_database_url: str = Field(
        default="",
        description="A read replica of the database (postgresql://...), for the lists and "
        "history that may be a little behind (docs/operations.md); unset: the primary.",
    )
    database_statement_cache_size: int = Field(
        default=100,
        ge=0,
        description="Prepared statements kept per database connection; 0 behind a "
        "transaction-pooling PgBouncer that does not track them (before 1.21, or "
        "max_prepared_statements = 0): each statement is then parsed on every use.",
    )
    database_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long making a database connection may take."
    )
    database_probe_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often health checks that the database answers."
    )
    database_probe_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long the database may take to answer the probe."
    )
    max_concurrent_rpcs: int = Field(
        default=512, ge=1, description="Calls in flight before new ones are refused."
    )
    max_connection_age_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Connections older than this are closed (GOAWAY; +-10%): clients connect "
        "again and spread over the replicas there are now, new ones too.",
    )
    max_connection_age_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long calls on a closed connection (a long stream) may still run.",
    )
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes sharing the port (SO_REUSEPORT), each a whole "
        "service like a replica: more cores for one pod (libs/common/workers.py).",
    )
    log_level: str = Field(default="INFO")
    # "none", "console", or a file path that receives one JSON span per line; besides
    # the OTEL_* variables (OTLP export, see libs/common/telemetry.py).
    traces: str = Field(default="none")
    idempotency_retention_hours: int = Field(default=48, ge=24)
    # --- security (see libs/common/tls.py, authz.py, tokens.py) --------------------------
    tls_enabled: bool = Field(
        default=True,
        description="Mutual TLS on the service port; false (plaintext, every caller "
        "trusted) only for tests and benchmarks that need it.",
    )
    tls_cert_file: str = Field(default="", description="The service's certificate (PEM).")
    tls_key_file: str = Field(default="", description="The service's private key (PEM).")
    tls_ca_file: str = Field(
        default="", description="The CA that callers' and peers' certificates come from."
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="A plaintext port serving only grpc.health.v1 (kubelet probes); "
        "unset: none; 0 picks a free one.",
    )
    policy_file: str = Field(
        default="", description="Who may call what (TOML); unset: the shipped default."
    )
    jwks_file: str = Field(
        default="", description="Public keys (JWKS) that company-scoped tokens are verified with."
    )
    token_audience: str = Field(default="licensing", description="The tokens' `aud`.")
