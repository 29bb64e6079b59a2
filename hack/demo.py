"""`make demo`: aigate's main job, end to end, on a local control plane it starts itself.

It never touches the cluster your KUBECONFIG names: it starts its own (etcd, kube-apiserver,
controllers, kwok fake nodes, Prometheus and a stand-in model-server exporter), runs the
operator against it, tells the story below, and cleans everything up.

  1. an AIDeployment is refused: no approval, no workload
  2. a developer's attempt to approve is refused by the cluster (the chart's admission
     policy); the risk officer and the approver sign with their SSH keys (`kubectl aigate
     accept-risk/approve --sign`, riskTier high requires it): the first version is deployed
  3. version 2.5.0, healthy, goes through the canary stages with live metric values
  4. version 2.6.0's canary breaches its error-rate threshold and is rolled back
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from aigate import kubectl_plugin
from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core.gate import format_rfc3339
from aigate.core.revision import compute_revision
from localcluster import LocalCluster
from localcluster.exporter import set_values
from localcluster.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
NAME, NAMESPACE = "fraud-scorer", "risk-ml"
RELEASE_NAMESPACE = "aigate-system"
# Outside the demo's temporary directory, so the report is still there to open afterwards.
REPORT_DIR = Path(tempfile.gettempdir()) / "aigate-demo"
REGISTRY = "aigate-approver-keys"
# The chart's RBAC (the operator's ServiceAccount) and its admission policies.
CHART_KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
# The demo's people may edit AIDeployments in the namespace; the policy decides the rest.
PEOPLE_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: aigate-demo-editor}}
rules:
  - {{apiGroups: [aigate.dev], resources: [aideployments], verbs: [get, list, watch, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: aigate-demo-editors, namespace: {NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aigate-demo-editor}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}}
"""
GROUP, VERSION, PLURAL = "aigate.dev", "v1alpha1", "aideployments"
START = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


def step(number: int, title: str) -> None:
    say()
    say(
        f"━━ {number}. {title} "
        + "━" * max(0, 70 - len(title))
        + f" [{time.monotonic() - START:5.1f}s]"
    )


def _image(version: str) -> str:
    """A high-risk model's image is pinned by digest (kwok runs no containers: any digest)."""
    return (
        f"registry.example.com/fraud-scorer@sha256:{hashlib.sha256(version.encode()).hexdigest()}"
    )


def manifest(prometheus_url: str, version: str) -> dict[str, Any]:
    selector = 'aideployment="{{name}}",namespace="{{namespace}}",track="{{track}}"'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": NAME,
                "version": version,
                "riskTier": "high",
                "owner": "team-risk-ml",
                "intendedUse": "Score card-not-present transactions for fraud review.",
                "limitations": ["Not validated for gambling merchants."],
            },
            "replicas": 4,
            "template": {"spec": {"containers": [{"name": "server", "image": _image(version)}]}},
            "service": {"port": 8080},
            "rollout": {
                "progressDeadline": "60s",
                "stages": [
                    {"name": "canary-10", "weight": 10, "duration": "6s"},
                    {"name": "canary-50", "weight": 50, "duration": "6s"},
                    {"name": "full", "weight": 100, "duration": "3s"},
                ],
                "analysis": {
                    "prometheus": {"url": prometheus_url, "timeout": "2s"},
                    "interval": "2s",
                    "failureLimit": 1,
                    "inconclusiveLimit": 3,
                    "metrics": [
                        {
                            "name": "error-rate",
                            "query": f"model_error_rate{{{selector}}}",
                            "max": 0.01,
                        },
                        {
                            "name": "p99-latency-seconds",
                            "query": f"model_latency_p99_seconds{{{selector}}}",
                            "max": 0.25,
                        },
                    ],
                },
            },
        },
    }


class Demo:
    def __init__(self, cluster: LocalCluster, keys: Path) -> None:
        self.cluster = cluster
        self.keys = keys
        self.api = config.new_client_from_config(config_file=cluster.info.kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)

    def kubectl(self, *args: str, user: str = "admin") -> str:
        return self.cluster.kubectl(*args, user=user)

    def show(self, *args: str, user: str = "admin") -> None:
        say(f"$ kubectl {' '.join(args)}" + ("" if user == "admin" else f"    # as {user}"))
        for line in self.kubectl(*args, user=user).rstrip().splitlines():
            say(f"  {line}")

    def refused(self, *args: str, user: str) -> str:
        """Runs a kubectl command the cluster must refuse; shows and returns its message."""
        say(f"$ kubectl {' '.join(args)}    # as {user}")
        result = self.run_as(user, *args)
        if result.returncode == 0:
            raise RuntimeError(f"demo: the cluster accepted what it must refuse: {args}")
        for line in result.stderr.strip().splitlines():
            say(f"  {line}")
        return result.stderr

    def run_as(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        kubeconfig = self.cluster.info.user_kubeconfigs[user]
        return subprocess.run(
            [str(self.cluster.bin / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def aid(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)

    def status(self) -> dict[str, Any]:
        return self.aid().get("status") or {}

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})

    def apply(self, body: dict[str, Any]) -> None:
        path = Path(self.cluster.state_dir) / "demo-aid.yaml"
        path.write_text(yaml.safe_dump(body))
        self.show("apply", "-f", str(path))

    def metrics(self, track: str, error: float, latency: float) -> None:
        labels = {"aideployment": NAME, "namespace": NAMESPACE, "track": track}
        set_values(
            self.cluster.info.exporter_url,
            [
                {"name": "model_error_rate", "labels": labels, "value": error},
                {"name": "model_latency_p99_seconds", "labels": labels, "value": latency},
            ],
        )

    def wait(
        self,
        what: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 120,
        narrate: bool = False,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last_line = ""
        while True:
            status = self.status()
            if narrate:
                line = self.progress_line(status)
                if line != last_line:
                    say(f"  {line}")
                    last_line = line
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo: timed out waiting for {what}; status: {status}")
            time.sleep(0.5)

    @staticmethod
    def progress_line(status: dict[str, Any]) -> str:
        phase = status.get("phase", "")
        stage = status.get("stage") or "-"
        weight = status.get("canaryWeight", 0)
        running = status.get("rollout") if phase in ("Progressing", "Paused") else None
        running = running or (status.get("watch") if phase == "Verifying" else None) or {}
        metrics = (running.get("analysis") or {}).get("metrics") or {}
        values = ", ".join(
            f"{name} {m['last']['value']} {m['last']['verdict'].lower()}"
            for name, m in metrics.items()
            if m.get("last")
        )
        return (
            f"{phase:<12} stage {stage:<10} weight {weight:>3}%  stable {status.get('readyReplicas', 0)} "
            f"canary {status.get('canaryReadyReplicas', 0)} ready  {values}"
        ).rstrip()

    def approval_args(self, user: str, revision: str) -> tuple[str, ...]:
        now = format_rfc3339(datetime.now(UTC))
        return (
            "annotate",
            "-n",
            NAMESPACE,
            "--overwrite",
            f"aid/{NAME}",
            f"aigate.dev/approved-by={user}",
            f"aigate.dev/approved-at={now}",
            f"aigate.dev/approved-revision={revision}",
        )

    def approve(self, body: dict[str, Any]) -> str:
        """The risk officer signs the risk acceptance, then the approver the approval of the
        full revision (its statement names the risk reference): two people, each as
        themselves (the cluster checks it) and with their own SSH key (the operator checks
        it against the registry)."""
        revision = compute_revision(AIDeploymentSpec.model_validate(body["spec"]))
        self.plugin("risk-officer", "accept-risk", NAME, "--reference", "RISK-1234")
        self.plugin("approver", "approve", NAME)
        return revision

    def plugin(self, user: str, *command: str) -> None:
        key = self.keys / user
        say(f"$ kubectl aigate {' '.join(command)} --sign --key {key.name} --yes    # as {user}")
        kubeconfig = self.cluster.info.user_kubeconfigs[user]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # the review it shows is long; its verdict:
            code = kubectl_plugin.main(
                [
                    "--kubeconfig",
                    kubeconfig,
                    "-n",
                    NAMESPACE,
                    *command,
                    "--sign",
                    "--key",
                    str(key),
                    "--yes",
                ]
            )
        if code != 0:
            raise RuntimeError(f"demo: kubectl aigate {command[0]} failed:\n{out.getvalue()}")
        say(f"  {out.getvalue().strip().splitlines()[-1]}")

    def wait_policy_enforced(self, revision: str) -> None:
        """The API server picks a new policy binding up asynchronously: wait until a
        server-side dry run of the developer's approval is refused."""
        args = (*self.approval_args("developer", revision), "--dry-run=server")
        deadline = time.monotonic() + 60
        while self.run_as("developer", *args).returncode == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("demo: the approval policy was not enforced after 60s")
            time.sleep(0.3)

    def history(self, revision: str | None = None) -> None:
        say("  history:")
        for entry in self.status().get("history", []):
            if revision and entry.get("revision") != revision:
                continue
            evidence = "; ".join(
                f"{e['metric']}={e['value']} {e['verdict']}" for e in entry.get("evidence", [])
            )
            say(
                f"    {entry['time'][11:19]}  {entry['toPhase']:<16} {entry['reason']:<22} {entry['message'][:90]}"
            )
            if evidence:
                say(f"    {'':8}  {'':16} evidence: {evidence}")


def run(demo: Demo) -> None:
    prometheus = demo.cluster.info.prometheus_url
    demo.metrics("stable", 0.002, 0.09)
    demo.metrics("canary", 0.002, 0.09)

    step(1, "An AIDeployment without approval is refused")
    v1 = manifest(prometheus, "2.4.0")
    demo.apply(v1)
    status = demo.wait("AwaitingApproval", lambda s: s.get("phase") == "AwaitingApproval")
    demo.show("get", "aid", "-n", NAMESPACE)
    say("  why (condition Authorized):")
    for reason in demo.condition("Authorized")["message"].split("; "):
        say(f"    - {reason}")
    deployments = demo.apps.list_namespaced_deployment(NAMESPACE).items
    say(f"  Deployments created: {len(deployments)} — nothing runs without approval.")
    demo.history(status["revision"])
    say(
        f"  The approval must name revision {status['revision']} "
        f"(`aigate revision -f manifest.yaml` computes it offline)."
    )

    step(2, "Only an approver may approve: a developer's attempt is refused by the cluster")
    demo.wait_policy_enforced(status["revision"])
    demo.refused(*demo.approval_args("developer", status["revision"]), user="developer")
    say("  the chart's ValidatingAdmissionPolicy refused it: the API server, not the operator,")
    say("  knows who asks (docs/decisions/0008-who-may-write-what.md). riskTier high needs signed")
    say("  approvals: the risk officer and the approver each sign a statement of what they")
    say("  approve with their SSH key (ssh-keygen -Y sign), registered by a platform admin")
    say("  (docs/decisions/0011-signed-approvals.md):")
    demo.approve(v1)
    demo.wait("Stable", lambda s: s.get("phase") == "Stable", narrate=True)
    approval = demo.status()["approval"]
    for what, check in (("approval", "approvalSignature"), ("risk acceptance", "riskSignature")):
        signature = approval.get(check) or {}
        verdict = "verified" if signature.get("verified") else f"NOT verified: {signature}"
        say(
            f"  {what} signed by {signature.get('signer')} with key "
            f"{signature.get('keyFingerprint')}: {verdict}"
        )
    demo.show("get", "aid", "-n", NAMESPACE)
    demo.show("get", "pods", "-n", NAMESPACE, "-L", "aigate.dev/track,aigate.dev/version")
    demo.history(status["revision"])

    step(3, "Version 2.5.0 (healthy) goes through canary stages, judged by Prometheus")
    v2 = manifest(prometheus, "2.5.0")
    demo.apply(v2)
    demo.wait(
        "AwaitingApproval", lambda s: s.get("phase") == "AwaitingApproval" and s.get("revision")
    )
    say("  the new version needs its own approval; 2.4.0 keeps serving meanwhile")
    r2 = demo.approve(v2)
    demo.wait(
        "2.5.0 stable",
        lambda s: s.get("phase") == "Stable" and s.get("stableRevision") == r2,
        narrate=True,
    )
    demo.show("get", "aid", "-n", NAMESPACE)
    demo.history(r2)

    step(4, "Version 2.6.0's canary breaches the error-rate threshold: automatic rollback")
    demo.metrics("canary", 0.07, 0.11)
    say("  (the stand-in model server now reports a 7% error rate for the canary track)")
    v3 = manifest(prometheus, "2.6.0")
    demo.apply(v3)
    demo.wait(
        "AwaitingApproval",
        lambda s: s.get("phase") == "AwaitingApproval" and s.get("revision") != r2,
    )
    r3 = demo.approve(v3)
    demo.wait("RolledBack", lambda s: s.get("phase") == "RolledBack", narrate=True)
    demo.wait("canary removed", lambda s: s.get("canaryReadyReplicas", 0) == 0)
    demo.show("get", "aid", "-n", NAMESPACE)
    demo.show("get", "pods", "-n", NAMESPACE, "-L", "aigate.dev/track,aigate.dev/version")
    demo.history(r3)
    say("  events:")
    events = (
        client.CoreV1Api(demo.api)
        .list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NAME}")
        .items
    )
    for event in sorted(events, key=lambda e: e.metadata.creation_timestamp)[-6:]:
        say(f"    {event.type:<8} {event.reason:<22} {event.message[:100]}")

    step(5, "The evidence: signed records outside status, verified, and the auditor's report")
    demo.show(
        "get",
        "airecords",
        "-n",
        RELEASE_NAMESPACE,
        "-l",
        f"aigate.dev/subject-uid={demo.aid()['metadata']['uid']}",
    )
    report = REPORT_DIR / f"aigate-report-{NAMESPACE}-{NAME}.html"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    for command in (
        ("verify", NAME),
        ("report", NAME, "-o", "html", "--output", str(report)),
    ):
        say(f"$ kubectl aigate {' '.join(command)}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = kubectl_plugin.main(
                ["--kubeconfig", demo.cluster.info.kubeconfig, "-n", NAMESPACE, *command]
            )
        for line in out.getvalue().strip().splitlines():
            say(f"  {line}")
        if code != 0:
            raise RuntimeError(f"demo: kubectl aigate {command[0]} failed")
    say(f"  the auditor's report: {report}")
    say()
    say(
        f"Done in {time.monotonic() - START:.0f}s: 2.5.0 serves at full strength; 2.6.0 was rolled "
        f"back and will not be retried until its spec changes or aigate.dev/retry is set."
    )


def make_keys(tmp: Path) -> tuple[Path, str]:
    """SSH keys of the approver and the risk officer, and their allowed_signers lines."""
    keys = tmp / "keys"
    keys.mkdir()
    lines = []
    for user in ("approver", "risk-officer"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user, "-f", str(keys / user)],
            check=True,
        )
        public = (keys / f"{user}.pub").read_text().strip()
        lines.append(f'{user} namespaces="aigate.dev" {public}')
    return keys, "\n".join(lines) + "\n"


def install_chart_parts(cluster: LocalCluster, tmp: Path, allowed_signers: str) -> Path:
    """The chart's RBAC, approver key registry (with the people's keys, as a platform admin
    registers them) and admission policies, rendered by `helm template` and applied;
    returns a kubeconfig acting as the operator's ServiceAccount (the only identity the
    status and children policies let write)."""
    rendered = subprocess.run(
        [
            str(cluster.bin / "helm"),
            "template",
            "aigate",
            str(ROOT / "charts" / "aigate"),
            "-n",
            RELEASE_NAMESPACE,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in CHART_KINDS]
    docs = [d for d in docs if d["kind"] != "ConfigMap" or d["metadata"]["name"] == REGISTRY]
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            doc["data"]["allowed_signers"] += allowed_signers
    docs.sort(key=lambda d: d["kind"] != "ConfigMap")  # the registry before its policy
    manifest = tmp / "chart-parts.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    people = tmp / "people-rbac.yaml"
    people.write_text(PEOPLE_RBAC)
    cluster.kubectl("create", "namespace", RELEASE_NAMESPACE)
    cluster.kubectl("apply", "-f", str(manifest))
    cluster.kubectl("apply", "-f", str(people))
    say(
        "  installed the chart's RBAC, approver key registry and admission policies (approvals, "
        "status, children, approver keys)"
    )
    return cluster.service_account_kubeconfig(
        RELEASE_NAMESPACE, "aigate", tmp / "kubeconfig-operator"
    )


def main() -> int:
    say(
        "aigate demo: starting a local control plane (etcd, kube-apiserver, controllers, kwok, "
        "Prometheus)…"
    )
    with (
        tempfile.TemporaryDirectory(prefix="aigate-demo-") as tmp,
        LocalCluster.start(Path(tmp) / "cluster") as cluster,
    ):
        say(
            f"  ready in {time.monotonic() - START:.1f}s; API server {cluster.info.apiserver_url}, "
            f"Prometheus {cluster.info.prometheus_url}"
        )
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/aideployments.aigate.dev")
        cluster.kubectl("create", "namespace", NAMESPACE)
        keys, allowed_signers = make_keys(Path(tmp))
        identity = install_chart_parts(cluster, Path(tmp), allowed_signers)
        # as the chart runs it: refusing every approval unless the approval policy enforces,
        # verifying signed approvals with the registry's keys
        operator = OperatorProcess(
            identity,
            Path(tmp) / "operator.log",
            "--require-approval-policy=aigate-approvals",
            f"--approver-keys={RELEASE_NAMESPACE}/{REGISTRY}",
            "--require-signed-approval=high",
        )
        try:
            operator.start()
            say(
                "  operator running (`aigate run`) as the chart's ServiceAccount with the chart's "
                "RBAC; logs: JSON lines"
            )
            # The namespace's default ServiceAccount must exist before pods can be created.
            deadline = time.monotonic() + 60
            while not cluster.kubectl(
                "get", "serviceaccount", "default", "-n", NAMESPACE, check=False
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("default ServiceAccount never appeared")
                time.sleep(0.3)
            run(Demo(cluster, keys))
        except (RuntimeError, subprocess.CalledProcessError):
            say("\n--- operator log (last lines) ---")
            say(operator.log_tail(40))
            raise
        finally:
            operator.stop()
    say("Cleaned up: every process the demo started has stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
