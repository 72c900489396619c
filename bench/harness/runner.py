"""`python -m bench [--quick] [--only S1,naive,...]`: run the scenarios, report, save."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import grpc

from bench.harness import registry
from bench.harness.context import BenchContext
from bench.harness.database import postmaster_pid, resolve_admin_url
from bench.harness.machine import machine_facts
from bench.harness.report import print_machine, print_outcome, print_table, write_results
from bench.harness.results import Outcome
from bench.loadgen.build import ensure_generator

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Performance scenarios with baselines measured in the same run "
        "(see bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument(
        "--only",
        type=lambda text: [part for part in text.split(",") if part.strip()],
        help="comma-separated scenario ids; their baselines run too",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (JSON)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch folder (logs, configs, unit ids)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def _describe(error: Exception) -> str:
    """One line about an error; gRPC errors by status code and details."""
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return f"gRPC {error.code().name}: {error.details()}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _run_one(scenario: registry.Scenario, ctx: BenchContext) -> Outcome:
    started = time.monotonic()
    try:
        outcome = scenario.run(ctx)
    except Exception as error:  # one broken scenario must not hide the others' results
        log = ctx.path(f"{scenario.id}-error.txt")
        log.write_text(traceback.format_exc())
        message = f"{_describe(error)} (traceback in {log})"
        outcome = Outcome(scenario.id, scenario.title, "error", message=message)
        ctx.keep = True
    outcome.elapsed_s = time.monotonic() - started
    if outcome.status == "failed":
        ctx.keep = True  # the unit ids and logs explain a failed check
    return outcome


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    scenarios = registry.select(args.only)
    if args.list:
        for scenario in registry.load():
            needs = f"  (needs {', '.join(scenario.requires)})" if scenario.requires else ""
            print(f"{scenario.id:8} {scenario.title}{needs}")
        return 0
    ensure_generator()
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    admin_url, source = resolve_admin_url()
    postgres_pid = postmaster_pid(admin_url)
    machine = machine_facts(admin_url, source, postgres_pid)
    print_machine(machine)
    ctx = BenchContext(
        quick=args.quick,
        admin_url=admin_url,
        postgres_pid=postgres_pid,
        workdir=workdir,
        keep=args.keep,
    )
    print(f"running {', '.join(s.id for s in scenarios)}{' (quick)' if args.quick else ''}")
    for scenario in scenarios:
        print(f"-- {scenario.id}: {scenario.title}", flush=True)
        outcome = _run_one(scenario, ctx)
        ctx.outcomes[scenario.id] = outcome
        print_outcome(outcome)
    outcomes = list(ctx.outcomes.values())
    print_table(outcomes)
    options = {"quick": args.quick, "only": args.only, "scenarios": [s.id for s in scenarios]}
    write_results(args.out, machine, outcomes, options)
    print(f"results written to {args.out}")
    if ctx.keep:
        print(f"scratch files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    bad = [o.scenario for o in outcomes if o.status in ("failed", "error")]
    if bad:
        print(f"FAILED: {', '.join(bad)}")
        return 1
    return 0
