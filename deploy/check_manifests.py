"""Checks rendered manifests against the deployment rules of this project.

Run by deploy/validate.sh on the output of `kustomize build` (schema validation is done
there by kubernetes-validate; this checks what a schema cannot):

    python deploy/check_manifests.py {base|dev|prod} RENDERED.yaml

Every Deployment: non-root, read-only root, no privilege escalation, capabilities
dropped, RuntimeDefault seccomp, requests and limits, probes, a ServiceAccount of its own.
The four services additionally: the gRPC port and native gRPC probes (liveness on a health
name of its own; on the plaintext health port when the service runs mutual TLS), a
`migrate` init container, their environment, a headless Service, and NetworkPolicies that
match the call graph in both directions, under a default-deny, with PostgreSQL reachable
at the database only. In prod: at least 2 replicas (or an HPA whose minimum is 2) and a
PodDisruptionBudget per service, mutual TLS with mounted certificates, and each server
connected to the database as its own role (Secret licensing-db-<service>).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

Doc = dict[str, Any]

SERVICES = ("pool", "billing", "credits", "provisioning")
GRPC_PORT = 50051
# The health name that stays SERVING while the process is up (libs/common/server.py).
LIVENESS_SERVICE = "liveness"
# Who calls whom (docs/architecture.md and deploy/base): callee -> pod callers.
POD_CALLERS = {
    "pool": {"billing", "provisioning"},
    "billing": {"provisioning"},
    "credits": {"billing"},
}
# Called from other namespaces carrying this label.
CLIENT_NAMESPACE_LABEL = ("licensing.io/client", "true")
CLIENT_FACING = {"credits", "provisioning"}
# Peer addresses each service is given.
PEER_ENV = {
    "billing": {"POOL_ADDRESS": "pool:50051", "CREDITS_ADDRESS": "credits:50051"},
    "provisioning": {"POOL_ADDRESS": "pool:50051", "BILLING_ADDRESS": "billing:50051"},
}
# The database Secret; where an overlay does not generate it, it must exist in the cluster.
DB_SECRET = "licensing-db"
# The PostgreSQL major version of dev, the tests and the embedded server (pgserver).
POSTGRES_MAJOR = "16"
POSTGRES_PORT = 5432
# kubelet's probes speak no TLS: with TLS on they use this plaintext health-only port.
HEALTH_PORT = 8081
TLS_MOUNT = "/etc/licensing/tls"


class Report:
    """Collects failures so one run shows all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, where: str, what: str) -> None:
        if not ok:
            self.failures.append(f"{where}: {what}")


def docs_of(path: str) -> list[Doc]:
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(pod: Doc) -> Iterator[tuple[str, Doc]]:
    for key in ("initContainers", "containers"):
        for container in pod.get(key, []):
            yield key, container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def check_hardening(report: Report, name: str, deployment: Doc, docs: list[Doc]) -> None:
    """Rules for every Deployment, the dev PostgreSQL included."""
    accounts = of_kind(docs, "ServiceAccount")
    report.check(name in accounts, f"ServiceAccount/{name}", "missing")
    report.check(
        accounts.get(name, {}).get("automountServiceAccountToken") is False,
        f"ServiceAccount/{name}",
        "automountServiceAccountToken is not false",
    )
    pod = deployment["spec"]["template"]["spec"]
    pod_security = pod.get("securityContext", {})
    where = f"Deployment/{name}"
    report.check(pod_security.get("runAsNonRoot") is True, where, "runAsNonRoot is not true")
    report.check(
        pod.get("automountServiceAccountToken") is False, where, "service account token mounted"
    )
    account = pod.get("serviceAccountName", "default")
    report.check(account == name, where, f"runs as ServiceAccount {account!r}, not its own")
    pod_seccomp = pod_security.get("seccompProfile", {}).get("type")
    for key, container in containers(pod):
        at = f"{where} {key}/{container['name']}"
        security = container.get("securityContext", {})
        report.check(
            security.get("allowPrivilegeEscalation") is False, at, "allowPrivilegeEscalation"
        )
        report.check(security.get("readOnlyRootFilesystem") is True, at, "readOnlyRootFilesystem")
        dropped = security.get("capabilities", {}).get("drop", [])
        report.check("ALL" in dropped, at, "capabilities are not all dropped")
        seccomp = security.get("seccompProfile", {}).get("type", pod_seccomp)
        report.check(seccomp == "RuntimeDefault", at, "seccompProfile is not RuntimeDefault")
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                report.check(resource in resources.get(bound, {}), at, f"no {bound}.{resource}")
        if key == "containers":
            for probe in ("readinessProbe", "livenessProbe"):
                report.check(probe in container, at, f"no {probe}")


def check_service(report: Report, name: str, docs: list[Doc], external: set[str]) -> None:
    """The gRPC shape of one of the four services."""
    deployments = of_kind(docs, "Deployment")
    where = f"Deployment/{name}"
    if name not in deployments:
        report.check(False, where, "missing")
        return
    pod = deployments[name]["spec"]["template"]["spec"]
    labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
    report.check(pod["securityContext"].get("runAsUser") == 10001, where, "runAsUser != 10001")
    server = next((c for c in pod["containers"] if c["name"] == "server"), None)
    migrate = next((c for c in pod.get("initContainers", []) if c["name"] == "migrate"), None)
    if server is None or migrate is None:
        report.check(False, where, "needs a `server` container and a `migrate` init container")
        return
    module = f"services.{name}"
    report.check(server.get("command", [])[-2:] == [module, "serve"], where, "server command")
    report.check(migrate.get("command", [])[-2:] == [module, "migrate"], where, "migrate command")
    report.check(
        {"name": "grpc", "containerPort": GRPC_PORT} in server.get("ports", []),
        where,
        f"no container port grpc/{GRPC_PORT}",
    )
    config_maps = of_kind(docs, "ConfigMap")
    prefix = name.upper()
    config: dict[str, str] = {}
    for source in server.get("envFrom", []):
        config.update(
            config_maps.get(source.get("configMapRef", {}).get("name"), {}).get("data", {})
        )
    # Overlays say explicitly (checked in check_overlay); the base, not deployable alone,
    # leaves TLS to them.
    tls_on = config.get(f"{prefix}_TLS_ENABLED", "") == "true"
    probe_port = HEALTH_PORT if tls_on else GRPC_PORT
    if tls_on:
        report.check(
            config.get(f"{prefix}_HEALTH_PORT") == str(HEALTH_PORT),
            where,
            f"TLS on: {prefix}_HEALTH_PORT must be {HEALTH_PORT} for kubelet's probes",
        )
        for kind in ("CERT", "KEY", "CA"):
            report.check(
                config.get(f"{prefix}_TLS_{kind}_FILE", "").startswith(TLS_MOUNT),
                where,
                f"TLS on: {prefix}_TLS_{kind}_FILE must be under {TLS_MOUNT}",
            )
        report.check(
            any(m.get("mountPath") == TLS_MOUNT for m in server.get("volumeMounts", [])),
            where,
            f"TLS on: nothing mounted at {TLS_MOUNT}",
        )
    for probe in ("readinessProbe", "livenessProbe"):
        report.check(
            server.get(probe, {}).get("grpc", {}).get("port") == probe_port,
            where,
            f"{probe} is not a native gRPC probe on {probe_port}",
        )
    # Readiness follows the database; liveness must not, or an outage restarts every pod.
    report.check(
        server.get("readinessProbe", {}).get("grpc", {}).get("service", "") == "",
        where,
        "readinessProbe must ask the overall health (no service name)",
    )
    report.check(
        server.get("livenessProbe", {}).get("grpc", {}).get("service") == LIVENESS_SERVICE,
        where,
        f'livenessProbe must ask the "{LIVENESS_SERVICE}" health service',
    )

    secrets = of_kind(docs, "Secret")
    for container in (server, migrate):
        at = f"{where} {container['name']}"
        env = {e["name"]: e for e in container.get("env", [])}
        secret_ref = env.get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
        secret_name = secret_ref.get("name", "")
        report.check(
            secret_ref.get("key") == "url"
            and (secret_name in secrets or secret_name in external)
            and secret_name.startswith(DB_SECRET),
            at,
            f"DATABASE_URL must come from Secret {DB_SECRET} key url (got {secret_ref})",
        )
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef", {}).get("name")
            report.check(ref in config_maps, at, f"envFrom ConfigMap {ref} is not rendered")
            values.update(config_maps.get(ref, {}).get("data", {}))
        expected = {f"{prefix}_HOST": "0.0.0.0", f"{prefix}_PORT": str(GRPC_PORT)}
        expected.update(PEER_ENV.get(name, {}))
        for key, value in expected.items():
            report.check(values.get(key) == value, at, f"env {key}={values.get(key)!r}")

    service = of_kind(docs, "Service").get(name)
    report.check(service is not None, f"Service/{name}", "missing")
    if service is not None:
        report.check(
            selects(service["spec"]["selector"], labels), f"Service/{name}", "selects no pod"
        )
        report.check(
            any(
                p.get("name") == "grpc" and p["port"] == GRPC_PORT and p["targetPort"] == "grpc"
                for p in service["spec"]["ports"]
            ),
            f"Service/{name}",
            f"no port grpc/{GRPC_PORT} -> grpc",
        )
        # Client-side balancing: DNS must answer with every pod, not one virtual IP.
        report.check(
            service["spec"].get("clusterIP") == "None",
            f"Service/{name}",
            "not headless (clusterIP: None)",
        )


def rule_ports(rule: Doc) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def check_network_policies(report: Report, docs: list[Doc]) -> None:
    """Each service's policy admits exactly its callers, and callers may reach it."""
    policies = of_kind(docs, "NetworkPolicy")
    for name in SERVICES:
        where = f"NetworkPolicy/{name}"
        policy = policies.get(name)
        if policy is None:
            report.check(False, where, "missing")
            continue
        spec = policy["spec"]
        report.check(
            spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": name},
            where,
            "does not select the service's pods",
        )
        report.check(
            set(spec.get("policyTypes", [])) == {"Ingress", "Egress"},
            where,
            "must restrict both Ingress and Egress",
        )
        pod_callers: set[str] = set()
        namespaces: list[dict[str, str]] = []
        for rule in spec.get("ingress", []):
            report.check(rule_ports(rule) == {GRPC_PORT}, where, "ingress beyond the gRPC port")
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    pod_callers.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
                elif "namespaceSelector" in peer:
                    namespaces.append(peer["namespaceSelector"].get("matchLabels", {}))
                else:
                    report.check(False, where, f"unexpected ingress peer {peer}")
        report.check(
            pod_callers == POD_CALLERS.get(name, set()),
            where,
            f"admits pods {sorted(pod_callers)}",
        )
        client_ns = [dict([CLIENT_NAMESPACE_LABEL])] if name in CLIENT_FACING else []
        report.check(namespaces == client_ns, where, f"admits namespaces {namespaces}")

        open_ports = set()
        for rule in spec.get("egress", []):
            if "to" not in rule:
                open_ports |= rule_ports(rule)
        report.check(53 in open_ports, where, "egress to DNS missing")
        report.check(GRPC_PORT not in open_ports, where, "egress to any gRPC port")
        report.check(POSTGRES_PORT not in open_ports, where, "egress to PostgreSQL at any address")

    # Every admitted caller must also be allowed out to its callee, or calls time out.
    for callee, callers in POD_CALLERS.items():
        for caller in callers:
            rules = policies.get(caller, {}).get("spec", {}).get("egress", [])
            reaches = any(
                GRPC_PORT in rule_ports(rule)
                and any(
                    t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                    == callee
                    for t in rule.get("to", [])
                )
                for rule in rules
            )
            report.check(reaches, f"NetworkPolicy/{caller}", f"cannot reach {callee}")


def check_isolation(report: Report, overlay: str, docs: list[Doc]) -> None:
    """A default-deny policy, and PostgreSQL egress to the database only."""
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies.get("default-deny", {}).get("spec", {})
    report.check(
        deny.get("podSelector") == {}
        and set(deny.get("policyTypes", [])) == {"Ingress", "Egress"}
        and not deny.get("ingress")
        and not deny.get("egress"),
        "NetworkPolicy/default-deny",
        "missing, or not denying all ingress and egress of every pod",
    )
    where = "NetworkPolicy/database-egress"
    spec = policies.get("database-egress", {}).get("spec")
    if spec is None:
        report.check(False, where, "missing")
        return
    labels = [{"app.kubernetes.io/name": name} for name in SERVICES]
    selector = spec.get("podSelector", {})
    for pod in labels:
        report.check(
            selects(selector.get("matchLabels", {}), pod)
            and all(
                e["operator"] == "In" and pod.get(e["key"]) in e["values"]
                for e in selector.get("matchExpressions", [])
            ),
            where,
            f"does not select {pod}",
        )
    for rule in spec.get("egress", []):
        report.check(rule_ports(rule) == {POSTGRES_PORT}, where, "egress beyond PostgreSQL")
        peers = rule.get("to", [])
        report.check(bool(peers), where, "PostgreSQL at any address")
        for peer in peers:
            if overlay == "prod":
                cidr = peer.get("ipBlock", {}).get("cidr", "")
                report.check(
                    cidr.endswith("/32") or "podSelector" in peer,
                    where,
                    f"prod database is not one address ({peer})",
                )
            else:
                report.check(
                    peer.get("podSelector", {}).get("matchLabels")
                    == {"app.kubernetes.io/name": "postgres"},
                    where,
                    f"{overlay}: not the PostgreSQL pod ({peer})",
                )


def check_overlay(report: Report, overlay: str, docs: list[Doc]) -> None:
    deployments = of_kind(docs, "Deployment")
    if overlay != "base":
        settings = {
            k: v for cm in of_kind(docs, "ConfigMap").values() for k, v in cm["data"].items()
        }
        for name in SERVICES:
            value = settings.get(f"{name.upper()}_TLS_ENABLED")
            report.check(
                value in ("true", "false"),
                overlay,
                f"{name.upper()}_TLS_ENABLED must be set explicitly (got {value!r})",
            )
    if overlay == "dev":
        for name, deployment in deployments.items():
            replicas = deployment["spec"].get("replicas", 1)
            report.check(replicas == 1, f"Deployment/{name}", f"{replicas} replicas in dev")
        report.check(
            any(n.startswith(DB_SECRET) for n in of_kind(docs, "Secret")),
            "dev",
            f"Secret {DB_SECRET} is not generated",
        )
        config = {k: v for cm in of_kind(docs, "ConfigMap").values() for k, v in cm["data"].items()}
        for name in SERVICES:
            traces = config.get(f"{name.upper()}_TRACES")
            report.check(traces == "console", "dev", f"{name.upper()}_TRACES={traces!r}")
        postgres = of_kind(docs, "Deployment").get("postgres", {})
        images = [
            c["image"]
            for _, c in containers(postgres.get("spec", {}).get("template", {}).get("spec", {}))
        ]
        report.check(
            bool(images) and all(i.startswith(f"postgres:{POSTGRES_MAJOR}") for i in images),
            "dev",
            f"PostgreSQL is {images}, not {POSTGRES_MAJOR} (the tests' and pgserver's)",
        )
    if overlay == "prod":
        config = {k: v for cm in of_kind(docs, "ConfigMap").values() for k, v in cm["data"].items()}
        for name in SERVICES:
            pod = deployments.get(name, {}).get("spec", {}).get("template", {}).get("spec", {})
            server = next((c for c in pod.get("containers", []) if c["name"] == "server"), {})
            env = {e["name"]: e for e in server.get("env", [])}
            ref = env.get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
            report.check(
                ref.get("name") == f"{DB_SECRET}-{name}",
                f"Deployment/{name}",
                f"prod: the server must connect as its own role (Secret {DB_SECRET}-{name})",
            )
            report.check(
                config.get(f"{name.upper()}_TLS_ENABLED") == "true",
                f"Deployment/{name}",
                "prod: mutual TLS must be on",
            )
        report.check(
            len(of_kind(docs, "Certificate")) >= len(SERVICES) + 1,
            "prod",
            "a cert-manager Certificate per service and the CA are expected",
        )
    if overlay == "prod":
        autoscalers = {
            hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]
            for hpa in of_kind(docs, "HorizontalPodAutoscaler").values()
            if hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        }
        for name in SERVICES:
            spec = deployments.get(name, {}).get("spec", {})
            hpa = autoscalers.get(name)
            # With an autoscaler it owns the count, from its minimum.
            least = hpa.get("minReplicas", 1) if hpa else spec.get("replicas", 1)
            report.check(least >= 2, "prod", f"{name} may run {least} replica(s)")
            if hpa:
                report.check("replicas" not in spec, "prod", f"{name}: replicas beside an HPA")
            labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
            report.check(
                any(
                    selects(pdb["spec"]["selector"]["matchLabels"], labels)
                    for pdb in of_kind(docs, "PodDisruptionBudget").values()
                ),
                "prod",
                f"no PodDisruptionBudget selects {name}",
            )
    for kind in ("Deployment", "Service", "NetworkPolicy", "ConfigMap"):
        for name, doc in of_kind(docs, kind).items():
            namespace = doc["metadata"].get("namespace")
            if overlay != "base":
                report.check(namespace is not None, f"{kind}/{name}", "no namespace")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("base", "dev", "prod"):
        print(__doc__, file=sys.stderr)
        return 2
    overlay, path = argv[1], argv[2]
    docs = docs_of(path)
    report = Report()
    # dev generates the Secret; base and prod expect it to exist in the cluster.
    external = set() if overlay == "dev" else {DB_SECRET}
    if overlay == "prod":
        external |= {f"{DB_SECRET}-{name}" for name in SERVICES}
    for name, deployment in of_kind(docs, "Deployment").items():
        check_hardening(report, name, deployment, docs)
    for name in SERVICES:
        check_service(report, name, docs, external)
    check_network_policies(report, docs)
    check_isolation(report, overlay, docs)
    check_overlay(report, overlay, docs)
    for failure in report.failures:
        print(f"FAIL {overlay}: {failure}")
    kinds = sorted({d["kind"] for d in docs})
    print(f"{overlay}: {len(docs)} objects ({', '.join(kinds)}), {len(report.failures)} problems")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
