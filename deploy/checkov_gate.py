"""Runs checkov on the rendered manifests and the Dockerfile; fails on any finding that
deploy/checkov-accepted.yaml does not accept (each accepted finding names its check, the
resources it applies to, and why it is accepted), and on accepted findings that no longer
occur, so the list never outlives its reasons.

    python deploy/checkov_gate.py CHECKOV ACCEPTED.yaml RENDERED_DIR DOCKERFILE
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from typing import Any

import yaml

# JSON, failed checks only, exit 0 whatever was found (the gate judges), and offline.
QUIET = ["--output", "json", "--quiet", "--compact", "--soft-fail", "--skip-download"]
QUIET += ["--skip-results-upload"]


def findings(checkov: str, args: list[str]) -> list[tuple[str, str, str]]:
    """(check id, resource, file) of every failed check."""
    done = subprocess.run(
        [checkov, *args, *QUIET],
        capture_output=True,
        text=True,
        check=False,
        # Offline: no guideline mapping or policy download from the vendor's service.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    if done.returncode != 0:
        sys.exit(f"checkov failed ({done.returncode}): {done.stderr[-2000:]}")
    text = done.stdout.strip()
    if not text:
        return []
    parsed: Any = json.loads(text)
    reports = parsed if isinstance(parsed, list) else [parsed]
    found = []
    for report in reports:
        for failed in report.get("results", {}).get("failed_checks", []):
            found.append((failed["check_id"], failed["resource"], failed["file_path"]))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    checkov, accepted_path, rendered, dockerfile = argv[1:]
    with open(accepted_path, encoding="utf-8") as stream:
        accepted: list[dict[str, Any]] = yaml.safe_load(stream)["accepted"]
    for entry in accepted:
        if not str(entry.get("reason", "")).strip():
            sys.exit(f"{accepted_path}: {entry['check']} has no reason")
    found = findings(checkov, ["--directory", rendered, "--framework", "kubernetes"])
    found += findings(checkov, ["--file", dockerfile, "--framework", "dockerfile"])
    used: set[int] = set()
    problems = 0
    for check, resource, path in sorted(set(found)):
        matches = [
            i
            for i, entry in enumerate(accepted)
            if entry["check"] == check
            and any(fnmatch.fnmatchcase(resource, r) for r in entry.get("resources", ["*"]))
        ]
        if matches:
            used.update(matches)
        else:
            problems += 1
            print(f"FAIL checkov {check} {resource} ({path})")
    for i, entry in enumerate(accepted):
        if i not in used:
            problems += 1
            print(f"FAIL {accepted_path}: {entry['check']} no longer occurs: remove it")
    print(
        f"checkov: {len(set(found))} findings, {len(set(found)) - problems} accepted "
        f"({len(accepted)} entries), {problems} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
