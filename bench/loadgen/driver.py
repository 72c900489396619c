"""Running the load generator (bench/loadgen/generator, in Go) and metering the CPU around it.

One generator drives every gRPC scenario, echo included, so that ratios compare servers
and not clients. It prints `started` when its clock starts; the driver then samples the
CPU counters at the start and the end of the measured window (after the warm-up), for
the CPU per successful call of the server and of PostgreSQL, and around the whole run,
for the generator's share of the machine.

Why Go: on these machines a grpc-js (Node) client spent 350-450 us of CPU per call and a
grpc.aio client 270 us, as much as the Python server they drive, so either would share
the 2 cores half and half with the server; grpc-go spends about 90 us.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness.context import Timing
from bench.harness.cpu import CallCpu, CpuMeter, CpuSample
from bench.loadgen.build import ensure_generator
from bench.loadgen.result import LoadResult, read_result
from bench.loadgen.spec import LoadSpec

_run_numbers = itertools.count(1)


def _wait_until(process: subprocess.Popen[bytes], at: float) -> bool:
    """Waits until monotonic time `at`; False if the generator failed before.

    A generator that ended well may end a little before our clock says the window did
    (it started its clock before we read `started`): the servers' counters still hold.
    """
    try:
        process.wait(timeout=max(0.0, at - time.monotonic()))
    except subprocess.TimeoutExpired:
        return True
    if process.returncode != 0:
        return False
    time.sleep(max(0.0, at - time.monotonic()))
    return True


def _window_samples(
    process: subprocess.Popen[bytes], meter: CpuMeter, timing: Timing
) -> tuple[CpuSample, CpuSample] | None:
    """CPU samples at the start and the end of the measured window, or None if the
    generator failed before the window ended."""
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"started":
        return None
    started = time.monotonic()
    if not _wait_until(process, started + timing.warmup_s):
        return None
    first = meter.sample()
    if not _wait_until(process, started + timing.total_s):
        return None
    return first, meter.sample()


def run_load(
    spec: LoadSpec,
    workdir: Path,
    server_pid: int | None = None,
    postgres_pid: int | None = None,
) -> LoadResult:
    """Runs the generator to completion and returns its measurements.

    `server_pid` is the process (tree) whose CPU is reported as the server's,
    `postgres_pid` the postmaster whose processes are PostgreSQL's.
    """
    number = next(_run_numbers)
    generator = ensure_generator()
    config_path = workdir / f"load-{number}.json"
    out_path = workdir / f"load-{number}.out.json"
    err_path = workdir / f"load-{number}.stderr"
    config_path.write_text(json.dumps(spec.to_config()))
    meter = CpuMeter(server_pid, postgres_pid)
    with err_path.open("wb") as err:
        process = subprocess.Popen(
            [str(generator), str(config_path), str(out_path)], stdout=subprocess.PIPE, stderr=err
        )
        with process:
            window = _window_samples(process, meter, spec.timing)
            process.wait()
    cpu = meter.stop()
    if process.returncode != 0:
        stderr = err_path.read_text(errors="replace")
        raise RuntimeError(f"load generator failed ({process.returncode}): {stderr}")
    raw: dict[str, Any] = json.loads(out_path.read_text())
    call_cpu = CallCpu.between(*window, calls=int(raw["ok"])) if window else None
    return read_result(raw, cpu, call_cpu)
