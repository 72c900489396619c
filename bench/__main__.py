"""Entry point of `python -m bench`."""

from bench.harness.runner import main

raise SystemExit(main())
