"""A PgBouncer of one's own in front of a PostgreSQL server, in transaction pooling mode:
what the tests and `make bench` put between the services and their database.

The binary is the Debian `pgbouncer` package's: `unavailable_reason()` installs it with
apt-get when it is missing and we are root, and otherwise says why it cannot run.
PgBouncer refuses to run as root: as root it runs as `nobody`, or, in front of a
server reached by a unix socket, as the owner of the socket's directory (who can reach it).
Every database of the server is reachable through it by its own name, as the server URL's
user; clients are trusted (it listens on 127.0.0.1 only).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from libs.common.database import plain_url

PACKAGE = "pgbouncer"
_STATS_DATABASE = "pgbouncer"  # PgBouncer's admin console
STATS_PERIOD_SECONDS = 1  # how often PgBouncer adds up its counters


def binary() -> str | None:
    """The pgbouncer executable, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


def unavailable_reason() -> str | None:
    """Why no PgBouncer can run here (None: it can); installs the package when missing
    and we are root."""
    if binary() is not None:
        return None
    if os.geteuid() != 0:
        return f"pgbouncer is not installed (as root: apt-get install {PACKAGE})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", PACKAGE]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
    return None if binary() is not None else f"apt-get installed {PACKAGE} but no pgbouncer"


def version() -> str:
    """E.g. "1.18.0"."""
    found = binary()
    assert found is not None
    first = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    return first.stdout.split()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: how to reach a database through it, and its counters."""

    port: int
    user: str
    log_path: Path

    def url(self, database_url: str) -> str:
        """`database_url` (a database on the server behind) through this PgBouncer."""
        database = make_url(plain_url(database_url)).database or "postgres"
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def transactions(self, database_url: str) -> int:
        """Transactions PgBouncer has passed to the database of `database_url`, as of
        its last count (every STATS_PERIOD_SECONDS): its admin console's SHOW STATS,
        through psql (the console speaks only the simple query protocol)."""
        database = make_url(plain_url(database_url)).database
        psql = shutil.which("psql")
        if psql is None:
            from pgserver._commands import POSTGRES_BIN_PATH

            psql = str(POSTGRES_BIN_PATH / "psql")
        shown = subprocess.run(
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                _STATS_DATABASE,
                "-AtF",
                "\t",
                "-c",
                "SHOW STATS",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in shown.stdout.splitlines():
            fields = line.split("\t")
            if fields[0] == database:
                return int(fields[1])  # total_xact_count
        return 0


def _run_as(host: str | None) -> str | None:
    """The user PgBouncer runs as (None: ourselves, when we are not root)."""
    if os.geteuid() != 0:
        return None
    if host and host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


@contextmanager
def running(server_url: str, pool_size: int = 20) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the server of `server_url`,
    with at most `pool_size` server connections per database; stopped at the end."""
    found = binary()
    if found is None:
        raise RuntimeError(unavailable_reason() or "pgbouncer is not installed")
    url = make_url(plain_url(server_url))
    host = url.host or str(url.query.get("host", "")) or "127.0.0.1"
    user = url.username or "postgres"
    target = f"host={_quoted(host)} port={url.port or 5432} user={_quoted(user)}"
    if url.password:
        target += f" password={_quoted(str(url.password))}"
    run_as = _run_as(host)
    root = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = _free_port()
    log_path = root / "pgbouncer.log"
    (root / "users.txt").write_text(f'"{user}" ""\n')
    config = root / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = {target}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {root / 'users.txt'}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 5000",
                f"stats_period = {STATS_PERIOD_SECONDS}",
                f"logfile = {log_path}",
                "",
            ]
        )
    )
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (root, *root.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    command = [found, *(["-u", run_as] if run_as else []), str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log_path)
        yield PgBouncer(port, user, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            log = log_path.read_text() if log_path.exists() else ""
            raise RuntimeError(f"pgbouncer exited ({process.returncode}): {log[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not listen within 10 s")
