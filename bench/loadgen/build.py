"""Builds the Go load generator (bench/loadgen/generator) on first use, from Debian packages.

The generator needs Go and grpc-go. Both come from Debian (`golang-go`,
`golang-google-grpc-dev`, which installs grpc-go's sources under /usr/share/gocode), so
the build needs no Go module proxy: it runs in GOPATH mode against those sources. When
they are missing and we are root, they are installed with apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GENERATOR_DIR = Path(__file__).resolve().parent / "generator"
SOURCE = GENERATOR_DIR / "main.go"
BINARY = GENERATOR_DIR / ".build" / "generator"
GOPATH = Path("/usr/share/gocode")
GRPC_SOURCES = GOPATH / "src" / "google.golang.org" / "grpc"
APT_PACKAGES = ("golang-go", "golang-google-grpc-dev")


def _install() -> None:
    if os.geteuid() != 0:
        raise SystemExit(
            "the load generator is built with Go and grpc-go from Debian; install them with\n"
            f"  sudo apt-get install -y {' '.join(APT_PACKAGES)}"
        )
    print(f"installing {', '.join(APT_PACKAGES)} (apt-get) for the load generator ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES], check=True, env=env)


def go_version() -> str | None:
    """`go version`, or None when Go is not installed."""
    go = shutil.which("go")
    if go is None:
        return None
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def ensure_generator() -> Path:
    """The generator binary, built (and its toolchain installed) when missing or stale."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    if shutil.which("go") is None or not GRPC_SOURCES.is_dir():
        _install()
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    print("building the load generator (go build bench/loadgen/generator) ...", flush=True)
    subprocess.run(
        ["go", "build", "-o", str(BINARY), str(SOURCE)], cwd=GENERATOR_DIR, env=env, check=True
    )
    return BINARY
