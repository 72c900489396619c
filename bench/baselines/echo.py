"""S1, the transport ceiling: the same generator and load against a trivial echo server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.baselines.echo_messages import METHOD, EchoRequest, EchoResponse
from bench.harness.context import CONCURRENCY, BenchContext, Timing
from bench.harness.processes import RunningServer, free_port, grpc_server, python_module
from bench.harness.registry import scenario
from bench.harness.results import Outcome
from bench.loadgen.driver import run_load
from bench.loadgen.result import LoadResult
from bench.loadgen.row import load_row
from bench.loadgen.spec import LoadSpec, Method
from bench.scenarios.acquire_call import acquire_response_size, echo_choices, echo_template

ECHO_METHOD = Method(METHOD, EchoRequest, EchoResponse)


@contextmanager
def echo_server(
    ctx: BenchContext, response_bytes: int | None = None, refuse: bool = False
) -> Iterator[RunningServer]:
    """Starts the echo server; responses as large as a one-unit AcquireResponse (with
    `refuse`, every call refused as a shedding service refuses it)."""
    size = response_bytes if response_bytes is not None else acquire_response_size(1)
    port = free_port()
    argv = python_module(
        "bench.baselines.echo_server", "--port", str(port), "--response-bytes", str(size)
    )
    if refuse:
        argv.append("--refuse")
    with grpc_server(argv, port, ctx.path("echo-server.log")) as server:
        yield server


def echo_load(
    ctx: BenchContext,
    server: RunningServer,
    timing: Timing,
    *,
    concurrency: int = CONCURRENCY,
    rate: float | None = None,
    deadline_ms: int = LoadSpec.deadline_ms,
) -> LoadResult:
    """Drives the echo server closed loop (`concurrency`) or open loop (`rate`)."""
    spec = LoadSpec(
        target=server.address,
        method=ECHO_METHOD,
        template=echo_template(),
        choices=echo_choices(),
        timing=timing,
        mode="open" if rate else "closed",
        concurrency=concurrency,
        rate=rate,
        deadline_ms=deadline_ms,
    )
    return run_load(spec, ctx.workdir, server_pid=server.pid, postgres_pid=ctx.postgres_pid)


@scenario("S1", "echo baseline: trivial grpc.aio unary server, same messages and load")
def s1_echo(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=15, quick=5)
    with echo_server(ctx) as server:
        result = echo_load(ctx, server, timing)
    row = load_row("S1 echo", result, timing, response_bytes=acquire_response_size(1))
    return Outcome("S1", "echo baseline", "ok", rows=[row])
