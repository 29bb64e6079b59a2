"""Starts and stops the whole local control plane; the one place that knows its layout."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from localcluster import pki
from localcluster.gateway import crd_files
from localcluster.processes import Process, StartupError, free_port, http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# Test users, authenticated by static tokens. The groups are what the chart's admission
# policies and RBAC key on (docs/decisions/0008-who-may-write-what.md); "admin" is a
# cluster superuser.
USERS: dict[str, list[str]] = {
    "admin": ["system:masters"],
    "approver": ["aigate:approvers", "system:authenticated"],
    "risk-officer": ["aigate:risk-acceptors", "system:authenticated"],
    "developer": ["aigate:developers", "system:authenticated"],
    "sre": ["aigate:operators", "system:authenticated"],
}


@dataclass
class ClusterInfo:
    """What a client needs to use a running local cluster (written to cluster.json)."""

    state_dir: str
    kubeconfig: str
    user_kubeconfigs: dict[str, str]
    apiserver_url: str
    prometheus_url: str
    exporter_url: str
    pids: dict[str, int] = field(default_factory=dict)

    def save(self) -> None:
        Path(self.state_dir, "cluster.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path | str) -> ClusterInfo:
        return cls(**json.loads(Path(state_dir, "cluster.json").read_text()))


def ensure_binaries() -> Path:
    """Builds the binaries if they are not cached yet (progress on stderr); returns bin/."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AIGATE_BUILD_QUIET": "1"},
    )
    return Path(result.stdout.strip().splitlines()[-1])


def _log(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


class LocalCluster:
    """A running control plane. Use as a context manager, or call stop() yourself."""

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path,
        audit_policy: Path | None = None,
        extra_flags: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.bin = bin_dir
        self.logs = state_dir / "logs"
        # The API server's audit log (JSON lines), written only when a policy is given: a
        # benchmark counts a client's requests on the server side with it.
        self.audit_policy = audit_policy
        self.audit_log = self.logs / "audit.log"
        # Flags added to a component's command line (a benchmark's client limits, say).
        self.extra_flags = {name: list(flags) for name, flags in (extra_flags or {}).items()}
        self.processes: dict[str, Process] = {}
        self.tokens = {user: secrets.token_hex(16) for user in USERS}
        self.tokens["control-plane"] = secrets.token_hex(16)
        self.ports = {
            name: free_port()
            for name in (
                "etcd",
                "etcd-peer",
                "apiserver",
                "controller-manager",
                "scheduler",
                "kwok",
                "prometheus",
                "exporter",
            )
        }
        self.info = ClusterInfo(
            state_dir=str(state_dir),
            kubeconfig=str(state_dir / "kubeconfig"),
            user_kubeconfigs={u: str(state_dir / f"kubeconfig-{u}") for u in USERS},
            apiserver_url=f"https://127.0.0.1:{self.ports['apiserver']}",
            prometheus_url=f"http://127.0.0.1:{self.ports['prometheus']}",
            exporter_url=f"http://127.0.0.1:{self.ports['exporter']}",
        )

    # ---- lifecycle -------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        nodes: int = 2,
        bin_dir: Path | None = None,
        audit_policy: Path | None = None,
        extra_flags: Mapping[str, Sequence[str]] | None = None,
    ) -> LocalCluster:
        state_dir.mkdir(parents=True, exist_ok=True)
        cluster = cls(state_dir, bin_dir or ensure_binaries(), audit_policy, extra_flags)
        try:
            cluster._start_all(nodes)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops every process, in reverse start order."""
        for process in reversed(list(self.processes.values())):
            process.stop()

    def _start_all(self, nodes: int) -> None:
        t0 = time.monotonic()
        self.pki = pki.write_pki(self.state_dir / "pki")
        self._write_tokens_and_kubeconfigs()
        # Prometheus and its exporter do not depend on Kubernetes: start them first so they
        # come up while etcd and the apiserver do.
        self._start_exporter()
        self._start_prometheus(wait=False)
        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        self._wait_prometheus()
        self._register_fake_nodes(nodes)
        self._wait_default_service_account()
        self.info.pids = {name: p.pid for name, p in self.processes.items() if p.pid}
        self.info.save()
        _log(f"control plane ready in {time.monotonic() - t0:.1f}s")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        argv = [*argv, *self.extra_flags.get(name, ())]
        process = Process(name, argv, self.logs / f"{name}.log", env)
        process.start()
        self.processes[name] = process
        return process

    # ---- credentials -----------------------------------------------------------------

    def _write_tokens_and_kubeconfigs(self) -> None:
        lines = [
            f'{self.tokens["control-plane"]},system:aigate-control-plane,uid-cp,"system:masters"'
        ]
        for user, groups in USERS.items():
            lines.append(f'{self.tokens[user]},{user},uid-{user},"{",".join(groups)}"')
        self.token_file = self.state_dir / "pki" / "tokens.csv"
        self.token_file.write_text("\n".join(lines) + "\n")
        self.token_file.chmod(0o600)

        self.control_plane_kubeconfig = self.state_dir / "kubeconfig-control-plane"
        self._write_kubeconfig(self.control_plane_kubeconfig, "control-plane")
        self._write_kubeconfig(Path(self.info.kubeconfig), "admin")
        for user, path in self.info.user_kubeconfigs.items():
            self._write_kubeconfig(Path(path), user)

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, duration: str = "1h"
    ) -> Path:
        """A kubeconfig that acts as ServiceAccount namespace/name (a token valid `duration`)."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).strip()
        self._write_kubeconfig(path, f"{namespace}-{name}", token)
        return path

    def _write_kubeconfig(self, path: Path, user: str, token: str | None = None) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "aigate-local",
                    "cluster": {
                        "server": self.info.apiserver_url,
                        "certificate-authority": str(self.pki["ca_cert"]),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.tokens[user]}}],
            "contexts": [
                {
                    "name": f"aigate-local-{user}",
                    "context": {"cluster": "aigate-local", "user": user},
                }
            ],
            "current-context": f"aigate-local-{user}",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    # ---- components ------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        process = self._spawn(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=node0",
                f"--data-dir={self.state_dir / 'etcd'}",
                "--unsafe-no-fsync=true",  # test data: durability traded for speed
                "--auto-compaction-retention=1",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=node0={peer}",
                "--log-level=warn",
            ],
        )
        process.wait_ready(
            lambda: http_ok(f"{client}/health", body_contains='"health":"true"'), 60, "healthy"
        )

    def _audit_flags(self) -> list[str]:
        if self.audit_policy is None:
            return []
        return [
            f"--audit-policy-file={self.audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxbackup=0",
            "--audit-log-maxsize=0",  # never rotate: the reader wants one file
        ]

    def _start_apiserver(self) -> None:
        p = self.pki
        process = self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={p['serving_cert']}",
                f"--tls-private-key-file={p['serving_key']}",
                f"--client-ca-file={p['ca_cert']}",
                f"--token-auth-file={self.token_file}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={p['sa_pub']}",
                f"--service-account-signing-key-file={p['sa_key']}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                *self._audit_flags(),
            ],
        )
        process.wait_ready(
            lambda: http_ok(
                f"{self.info.apiserver_url}/readyz",
                ca_file=p["ca_cert"],
                token=self.tokens["admin"],
            ),
            180,
            "ready (/readyz)",
        )

    def _component_auth_flags(self) -> list[str]:
        kubeconfig = str(self.control_plane_kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]

    def _start_controller_manager(self) -> None:
        port = self.ports["controller-manager"]
        process = self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *self._component_auth_flags(),
                f"--secure-port={port}",
                f"--cert-dir={self.state_dir / 'controller-manager-certs'}",
                f"--root-ca-file={self.pki['ca_cert']}",
                f"--service-account-private-key-file={self.pki['sa_key']}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Each controller acts as its own ServiceAccount (as with kubeadm), so the
                # chart's children policy can tell the Deployment and ReplicaSet controllers
                # from a cluster admin.
                "--use-service-account-credentials=true",
                "--node-monitor-period=5s",
                "--node-monitor-grace-period=40s",
            ],
        )
        process.wait_ready(
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", insecure=True), 120, "healthy"
        )

    def _start_scheduler(self) -> None:
        port = self.ports["scheduler"]
        process = self._spawn(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                *self._component_auth_flags(),
                f"--secure-port={port}",
                f"--cert-dir={self.state_dir / 'scheduler-certs'}",
            ],
        )
        process.wait_ready(
            lambda: http_ok(f"https://127.0.0.1:{port}/readyz", insecure=True), 120, "ready"
        )

    def _start_kwok(self) -> None:
        port = self.ports["kwok"]
        stages = self.bin.parent / "kwok-stages"
        process = self._spawn(
            "kwok",
            [
                str(self.bin / "kwok"),
                f"--kubeconfig={self.control_plane_kubeconfig}",
                *[f"--config={path}" for path in sorted(stages.glob("*.yaml"))],
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{port}",
            ],
        )
        process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "healthy")

    def _start_exporter(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT / "hack"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        self._spawn(
            "exporter",
            [sys.executable, "-m", "localcluster.exporter", f"--port={self.ports['exporter']}"],
            env,
        )

    def _prometheus_config(self) -> Path:
        path = self.state_dir / "prometheus.yml"
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "model-servers",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports['exporter']}"]}],
                }
            ],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def _start_prometheus(self, wait: bool = True) -> None:
        self._spawn(
            "prometheus",
            [
                str(self.bin / "prometheus"),
                f"--config.file={self._prometheus_config()}",
                f"--storage.tsdb.path={self.state_dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
        )
        if wait:
            self._wait_prometheus()

    def _wait_prometheus(self) -> None:
        self.processes["exporter"].wait_ready(
            lambda: http_ok(f"{self.info.exporter_url}/healthz"), 30, "serving"
        )
        self.processes["prometheus"].wait_ready(
            lambda: http_ok(f"{self.info.prometheus_url}/-/ready"), 60, "ready"
        )

    @contextlib.contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """Suspends components (SIGSTOP) for the block and always resumes them (SIGCONT), so a
        test can freeze, e.g., Deployment rollouts or pod readiness at a chosen moment."""
        suspended: list[Process] = []
        try:
            for name in names:
                process = self.processes[name]
                process.suspend()
                suspended.append(process)
            yield
        finally:
            for process in reversed(suspended):
                process.resume()

    def pause_controllers(self) -> contextlib.AbstractContextManager[None]:
        """kube-controller-manager suspended for the block: no Deployment, ReplicaSet or
        garbage-collector progress, so Deployment status stays as it was."""
        return self.paused("kube-controller-manager")

    def stop_prometheus(self) -> None:
        """Stops Prometheus (to test analysis while it is down); restart_prometheus() undoes it."""
        self.processes["prometheus"].stop()

    def restart_prometheus(self) -> None:
        self.processes.pop("prometheus").stop()
        self._start_prometheus(wait=True)
        self.info.pids["prometheus"] = self.processes["prometheus"].pid or 0
        self.info.save()

    # ---- cluster objects -------------------------------------------------------------

    def install_gateway_crds(self) -> list[str]:
        """Installs the Gateway API (standard channel) and InferencePool CRDs (pinned in
        hack/versions.env, cached from the Go module proxy) and waits until they serve;
        returns their names."""
        names = []
        for path in crd_files():
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names)
        )
        return names

    def kubectl(self, *args: str, user: str = "admin", check: bool = True) -> str:
        kubeconfig = self.info.kubeconfig if user == "admin" else self.info.user_kubeconfigs[user]
        result = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _register_fake_nodes(self, count: int) -> None:
        for index in range(count):
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{index}",
                    "annotations": {
                        FAKE_NODE_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": f"kwok-node-{index}",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
            }
            manifest = self.state_dir / f"node-{index}.yaml"
            manifest.write_text(yaml.safe_dump(node))
            self.kubectl("apply", "-f", str(manifest))
        deadline = time.monotonic() + 90
        while True:
            out = self.kubectl(
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
            )
            if out.split().count("True") >= count:
                return
            if time.monotonic() > deadline:
                raise StartupError(
                    f"kwok nodes not Ready after 90s:\n{self.processes['kwok'].log_tail()}"
                )
            time.sleep(0.5)

    def _wait_default_service_account(self) -> None:
        # Pods are refused in a namespace until the controller-manager has created its
        # default ServiceAccount.
        deadline = time.monotonic() + 90
        while self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False) == "":
            if time.monotonic() > deadline:
                raise StartupError("default ServiceAccount not created after 90s")
            time.sleep(0.5)
