"""Performance harness: the platform's scenarios, each with baselines measured in the same run.

Run `python -m bench [--quick] [--only S1,naive]`; the method (baselines, scenarios,
targets) is in docs/performance.md, the harness itself in bench/README.md.

- `bench.harness`: the command line, the scenario registry, results, the report, the
  machine, CPU accounting, checks, and the processes and databases a run starts;
- `bench.loadgen`: the Go load generator, its build, its request files and its driver;
- `bench.baselines`: what the scenarios are divided by (echo, naive, batched, hot row);
- `bench.scenarios`: the scenarios against the platform's services (S2-S9).
"""
