"""Performance harness: scenarios of /work/shared/PERFORMANCE.md with same-run baselines.

Run `python -m bench [--quick] [--only S1,naive]`; see bench/README.md.
"""
