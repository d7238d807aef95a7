#!/usr/bin/env python3
"""Renders and validates Gantry's Kustomize install package (deploy/kustomize).

    python3 ci/check_kustomize.py [--root DIR] [--out DIR]

For `base/` and every overlay (`embedded/`, `production/`): renders it with `kubectl kustomize`
(or a standalone `kustomize build` when there is no kubectl), writes the result to
`target/kustomize/<name>.yaml`, validates it with `kubernetes-validate --strict` against
KUBERNETES_VERSION, and checks what the schemas cannot: restricted security contexts, probes,
the provisioner's RBAC equal to deploy/kubernetes/gantry-rbac.yaml, ScaledObjects that target a
rendered Deployment and scale on a real queue, and every setting documented (ConfigMap keys in
the README's Configuration table, files and components in deploy/kustomize/README.md).

KEDA ScaledObjects and Prometheus Operator ServiceMonitors have no schema in kubernetes-validate
and their published CRDs cannot be fetched here: they get the structural checks in
`check_scaled_object` and `check_service_monitor` instead (a note says so).
Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

KUBERNETES_VERSION = "1.37.0"
OVERLAYS = ("base", "embedded", "production")
WORKER_ROLES = (
    "outbox-publisher",
    "codegen-runner",
    "vcluster-provisioner",
    "backup-executor",
    "health-poller",
)
# Kinds validated structurally here because kubernetes-validate has no schema for them.
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
# Which roles consume which queue (src/workers/registry.rs); the health poller has no queue.
QUEUE_OF_ROLE = {
    "outbox-publisher": "probe",
    "codegen-runner": "codegen",
    "vcluster-provisioner": "vcluster",
    "backup-executor": "backup",
}


class Checker:
    def __init__(self, root: Path, out: Path):
        self.root = root
        self.out = out
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # -- rendering ---------------------------------------------------------------------------

    def render(self, name: str) -> list[dict] | None:
        path = self.root / "deploy/kustomize" / name
        if shutil.which("kubectl"):
            cmd = ["kubectl", "kustomize", str(path)]
        elif shutil.which("kustomize"):
            cmd = ["kustomize", "build", str(path)]
        else:
            self.problem(name, "neither kubectl nor kustomize is installed")
            return None
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            self.problem(name, f"{' '.join(cmd[:2])} failed: {run.stderr.strip()}")
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{name}.yaml").write_text(run.stdout)
        return [d for d in yaml.safe_load_all(run.stdout) if d]

    def validate(self, name: str, docs: list[dict]) -> None:
        """kubernetes-validate --strict over the built-in kinds (CRD kinds are checked below)."""
        exe = shutil.which("kubernetes-validate")
        if exe is None:
            self.problem(name, "kubernetes-validate is not installed (pip install kubernetes-validate)")
            return
        builtin = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CRD_KINDS]
        target = self.out / f"{name}.builtin.yaml"
        target.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
        run = subprocess.run(
            [exe, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(target)],
            capture_output=True,
            text=True,
        )
        output = (run.stdout + run.stderr).strip()
        if run.returncode != 0 or "WARN" in output or "ERROR" in output:
            self.problem(name, f"kubernetes-validate --strict -k {KUBERNETES_VERSION}: {output}")

    # -- checks of the rendered objects -----------------------------------------------------

    def check_workloads(self, name: str, docs: list[dict]) -> None:
        for doc in docs:
            if doc["kind"] != "Deployment":
                continue
            where = f"{name}: Deployment {doc['metadata']['name']}"
            pod = doc["spec"]["template"]["spec"]
            psc = pod.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True:
                self.problem(where, "pod securityContext.runAsNonRoot must be true")
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                self.problem(where, "pod seccompProfile must be RuntimeDefault")
            for container in pod.get("initContainers", []) + pod["containers"]:
                csc = container.get("securityContext", {})
                cwhere = f"{where} container {container['name']}"
                if csc.get("allowPrivilegeEscalation") is not False:
                    self.problem(cwhere, "allowPrivilegeEscalation must be false")
                if csc.get("capabilities", {}).get("drop") != ["ALL"]:
                    self.problem(cwhere, "capabilities must drop ALL")
                if csc.get("readOnlyRootFilesystem") is not True:
                    self.problem(cwhere, "readOnlyRootFilesystem must be true")
                if "resources" not in container:
                    self.problem(cwhere, "no resources")
            main = pod["containers"][0]
            for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                if main.get(probe, {}).get("httpGet", {}).get("path") != path:
                    self.problem(where, f"{probe} must GET {path}")
            args = main.get("args", [])
            component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            if component in WORKER_ROLES and args != ["--workers", component]:
                self.problem(where, f"args {args} do not run role {component}")

    def check_roles_present(self, name: str, docs: list[dict]) -> None:
        deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
        wanted = {"gantry-api"} | (
            {f"gantry-{r}" for r in WORKER_ROLES} if name == "production" else set()
        )
        for missing in sorted(wanted - deployments):
            self.problem(name, f"no Deployment {missing}")
        pdbs = {d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component")
                for d in docs if d["kind"] == "PodDisruptionBudget"}
        for doc in docs:
            if doc["kind"] == "Deployment":
                component = doc["metadata"]["labels"].get("app.kubernetes.io/component")
                if component not in pdbs:
                    self.problem(name, f"Deployment {doc['metadata']['name']} has no PodDisruptionBudget")

    def check_rbac(self, name: str, docs: list[dict]) -> None:
        roles = [d for d in docs if d["kind"] == "ClusterRole"]
        if not roles:
            return
        reference = [
            d for d in yaml.safe_load_all((self.root / "deploy/kubernetes/gantry-rbac.yaml").read_text())
            if d and d["kind"] == "ClusterRole"
        ]
        if not reference:
            self.problem("deploy/kubernetes/gantry-rbac.yaml", "no ClusterRole")
            return
        for role in roles:
            if role["rules"] != reference[0]["rules"]:
                self.problem(name, f"ClusterRole {role['metadata']['name']} rules differ from deploy/kubernetes/gantry-rbac.yaml")
        namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] == "ServiceAccount"}
        for binding in (d for d in docs if d["kind"] == "ClusterRoleBinding"):
            for subject in binding["subjects"]:
                if subject.get("namespace") not in namespaces:
                    self.problem(name, f"ClusterRoleBinding subject {subject['name']} is in namespace {subject.get('namespace')}, not the install's")

    def check_scaled_object(self, name: str, doc: dict, deployments: dict[str, dict]) -> None:
        where = f"{name}: ScaledObject {doc['metadata']['name']}"
        spec = doc.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            self.problem(where, f"scaleTargetRef {target} is not a rendered Deployment")
            return
        role = target.removeprefix("gantry-")
        lo, hi = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            self.problem(where, f"needs 1 <= minReplicaCount <= maxReplicaCount, got {lo}, {hi}")
        if not isinstance(spec.get("cooldownPeriod"), int):
            self.problem(where, "no cooldownPeriod")
        known = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                 "cooldownPeriod", "advanced", "triggers", "idleReplicaCount", "fallback",
                 "initialCooldownPeriod"}
        for key in spec:
            if key not in known:
                self.problem(where, f"unknown field spec.{key}")
        queue = QUEUE_OF_ROLE.get(role)
        queries = []
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata", {})
            if trigger.get("type") != "prometheus":
                self.problem(where, f"trigger type {trigger.get('type')} (expected prometheus)")
                continue
            for key in ("serverAddress", "query", "threshold"):
                if not isinstance(meta.get(key), str):
                    self.problem(where, f"prometheus trigger needs string metadata.{key}")
            queries.append(meta.get("query", ""))
        if queue and not any(f'queue="{queue}"' in q and "gantry_queue_depth" in q for q in queries):
            self.problem(where, f"no trigger on gantry_queue_depth{{queue=\"{queue}\"}}")

    def check_service_monitor(self, name: str, doc: dict, services: list[dict]) -> None:
        where = f"{name}: ServiceMonitor {doc['metadata']['name']}"
        selector = doc.get("spec", {}).get("selector", {}).get("matchLabels", {})
        matched = [s for s in services if selector.items() <= s["metadata"].get("labels", {}).items()]
        if not matched:
            self.problem(where, "selects no rendered Service")
        for endpoint in doc.get("spec", {}).get("endpoints", []):
            ports = {p.get("name") for s in matched for p in s["spec"]["ports"]}
            if endpoint.get("port") not in ports or endpoint.get("path") != "/metrics":
                self.problem(where, f"endpoint {endpoint} is not a /metrics port of the Service")

    def check_crds(self, name: str, docs: list[dict]) -> None:
        deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        services = [d for d in docs if d["kind"] == "Service"]
        for doc in docs:
            if doc["kind"] == "ScaledObject":
                self.check_scaled_object(name, doc, deployments)
            elif doc["kind"] == "ServiceMonitor":
                self.check_service_monitor(name, doc, services)

    # -- documentation -----------------------------------------------------------------------

    def check_documented(self, all_docs: dict[str, list[dict]]) -> None:
        readme = self.root / "README.md"
        table = set(re.findall(r"^\| `([A-Z0-9_]+)`", readme.read_text(), re.M))
        package_readme = self.root / "deploy/kustomize/README.md"
        if not package_readme.is_file():
            self.problem("deploy/kustomize/README.md", "missing")
            return
        text = package_readme.read_text()
        for name, docs in all_docs.items():
            for doc in docs:
                if doc["kind"] == "ConfigMap":
                    for key in doc.get("data", {}):
                        if key not in table and not key.startswith("ROCKET_"):
                            self.problem(name, f"ConfigMap key {key} is not in README.md's Configuration table")
                        if f"`{key}`" not in text:
                            self.problem("deploy/kustomize/README.md", f"does not document {key}")
        base = self.root / "deploy/kustomize"
        for path in sorted(base.rglob("*.yaml")):
            rel = path.relative_to(base).as_posix()
            if path.name == "kustomization.yaml":
                rel = path.parent.relative_to(base).as_posix() + "/"
            generic = re.sub(r"^components/(roles|keda)/[^/]+/", r"components/\1/<role>/", rel)
            if f"`{rel}`" not in text and f"`{generic}`" not in text:
                self.problem("deploy/kustomize/README.md", f"does not describe `{rel}`")

    def run(self) -> int:
        rendered: dict[str, list[dict]] = {}
        for name in OVERLAYS:
            docs = self.render(name)
            if docs is None:
                continue
            rendered[name] = docs
            self.validate(name, docs)
            self.check_workloads(name, docs)
            self.check_roles_present(name, docs)
            self.check_rbac(name, docs)
            self.check_crds(name, docs)
        self.check_documented(rendered)
        for line in self.problems:
            print(line)
        if self.problems:
            return 1
        counts = ", ".join(f"{n}: {len(d)} objects" for n, d in rendered.items())
        print(f"deploy/kustomize renders and validates (Kubernetes {KUBERNETES_VERSION}; {counts})")
        print("note: ScaledObject and ServiceMonitor are checked structurally here, not against "
              "their CRD schemas, which cannot be fetched from this network")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or args.root / "target/kustomize"
    return Checker(args.root, out).run()


if __name__ == "__main__":
    sys.exit(main())
