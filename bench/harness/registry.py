"""The scenario registry: every scenario is a function registered under an id.

A scenario module decorates a function `(BenchContext) -> Outcome` with `@scenario(...)`
and is listed in `SCENARIO_MODULES`; the runner imports those modules in order, so the
registration order is the run order. `requires` names the baselines a scenario divides
by: `--only S2` runs them too, first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.harness.context import BenchContext
from bench.harness.results import Outcome

ScenarioFn = Callable[[BenchContext], Outcome]

# Imported in this order; each registers its scenarios.
SCENARIO_MODULES = (
    "bench.baselines.echo",
    "bench.baselines.allocation",
    "bench.baselines.hot_row",
    "bench.scenarios.pool",
    "bench.scenarios.credits",
    "bench.scenarios.snapshots",
    "bench.scenarios.provisioning",
)


@dataclass(frozen=True)
class Scenario:
    """A registered scenario."""

    id: str
    title: str
    run: ScenarioFn
    requires: tuple[str, ...] = ()


_registry: dict[str, Scenario] = {}


def scenario(
    scenario_id: str, title: str, requires: Iterable[str] = ()
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Registers the decorated function as scenario `scenario_id`."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        if scenario_id in _registry:
            raise ValueError(f"scenario {scenario_id} registered twice")
        _registry[scenario_id] = Scenario(scenario_id, title, fn, tuple(requires))
        return fn

    return register


def load() -> list[Scenario]:
    """Imports the scenario modules; returns every scenario in run order."""
    for module in SCENARIO_MODULES:
        importlib.import_module(module)
    return list(_registry.values())


def select(only: Iterable[str] | None) -> list[Scenario]:
    """The scenarios to run: `only` (case-insensitive ids) plus what they require."""
    scenarios = load()
    if only is None:
        return scenarios
    by_id = {s.id.lower(): s for s in scenarios}
    wanted: set[str] = set()
    pending = [name.strip().lower() for name in only if name.strip()]
    while pending:
        name = pending.pop()
        if name not in by_id:
            known = ", ".join(s.id for s in scenarios)
            raise SystemExit(f"unknown scenario {name!r}; known: {known}")
        if name not in wanted:
            wanted.add(name)
            pending.extend(r.lower() for r in by_id[name].requires)
    return [s for s in scenarios if s.id.lower() in wanted]
