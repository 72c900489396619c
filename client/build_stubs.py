"""Generates the typed gRPC stubs of every service from the .proto contract.

The package's build step (`setup.py`) runs this for every wheel and every install, so
code built from a fresh clone has the stubs; `make proto` runs it again when a .proto
changes. The code lands in `src/licensing/<svc>/v1/` (git-ignored: never edited), built
in a fresh directory first, so running code never sees it half-built.

    python build_stubs.py [PROTO_DIR]
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "src" / "licensing"
# The repository's contract, or its copy inside a source distribution.
PROTO_DIRS = (HERE / "proto", HERE.parent / "proto")
STAMP = TARGET / ".generated"


def proto_dir() -> Path:
    for candidate in PROTO_DIRS:
        if (candidate / "licensing").is_dir():
            return candidate
    raise SystemExit(f"no .proto files in {' or '.join(str(p) for p in PROTO_DIRS)}")


def _plugin(name: str, function: str, workdir: Path) -> str:
    """A protoc plugin running mypy-protobuf's `function` with this interpreter (the
    one that has the build's mypy-protobuf, wherever its scripts were put)."""
    shim = workdir / name
    shim.write_text(
        f"#!{sys.executable}\nfrom mypy_protobuf.main import {function}\n{function}()\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return str(shim)


def generate(source: Path | None = None) -> list[str]:
    """Generates into `TARGET`; returns the service packages written (e.g. "pool")."""
    from grpc_tools import protoc  # build-time only: not a runtime dependency

    source = source or proto_dir()
    protos = sorted(str(p.relative_to(source)) for p in source.rglob("*.proto"))
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="stubs-", dir=TARGET.parent) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"-I{source}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy', 'main', Path(tmp))}",
            f"--mypy_out=quiet:{out}",
            "--plugin=protoc-gen-mypy_grpc=" + _plugin("protoc-gen-mypy_grpc", "grpc", Path(tmp)),
            f"--mypy_grpc_out=quiet:{out}",
            *protos,
        ]
        cwd = os.getcwd()
        os.chdir(source)  # protoc names files relative to an include path
        try:
            code = protoc.main(args)
        finally:
            os.chdir(cwd)
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
        generated = out / "licensing"
        written = sorted(p.name for p in generated.iterdir() if p.is_dir())
        for package in written:
            for directory in [generated / package, *(generated / package).rglob("*")]:
                if directory.is_dir():
                    (directory / "__init__.py").touch()
        for package in written:  # swap each service package in whole
            old = Path(tmp) / f"old-{package}"
            if (TARGET / package).exists():
                (TARGET / package).rename(old)
            (generated / package).rename(TARGET / package)
    STAMP.write_text("".join(f"{p}\n" for p in protos))
    return written


def packages() -> list[str]:
    """Every generated package (`licensing.pool`, `licensing.pool.v1`, ...)."""
    root = TARGET.parent
    return sorted(
        ".".join(init.parent.relative_to(root).parts)
        for init in TARGET.glob("*/**/__init__.py")
        if init.parent.name != "client"
    )


if __name__ == "__main__":
    done = generate(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None)
    print(f"generated licensing.{{{','.join(done)}}}.v1 into {TARGET.relative_to(HERE)}")
