"""Benchmark: N AIDeployments given a new approved version at once, on one operator.

Starts the local control plane (kube-apiserver with an audit log of the operator's
requests), Prometheus with the model-server exporter, and the operator as its own process
with the chart's ServiceAccount and RBAC. Creates N AIDeployments (replicas 1, approved,
riskTier limited), waits until all are Stable, then applies a new version with its approval
to all of them at once (one server-side apply per object, like a GitOps sync) and measures
until all are Stable again, then a quiet window with nothing to do. Reports:

  - time until all are Stable against the ideal (the sum of the stage durations);
  - p50/p95 lag of measurements behind their due time, from the AIRecords;
  - operator peak RSS and CPU-seconds (total and per rollout);
  - the operator's API requests per rollout by verb and resource, counted by the API server
    (kopf's watches, patches and Events included), and its reads in the quiet window;
  - Prometheus queries per rollout.

Writes bench/results/scale-<N>.json and prints a short table. See bench/README.md.

    make bench-scale N=100      # or: python bench/scale.py --n 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "bench"),
    str(ROOT / "tests"),
    str(ROOT / "hack"),
    str(ROOT / "operator"),
]

import scale_analysis as sa  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from aigate.core.revision import compute_revision  # noqa: E402
from aigate.core.rollout.table import declared  # noqa: E402
from localcluster import LocalCluster  # noqa: E402
from localcluster.cluster import ensure_binaries  # noqa: E402
from localcluster.exporter import set_values  # noqa: E402
from localcluster.operator import RECORDS_NAMESPACE, OperatorProcess  # noqa: E402
from support.chart import render_chart  # noqa: E402
from support.factories import approval_annotations, image_for, spec_dict, spec_model  # noqa: E402

GROUP, VERSION, PLURAL = "aigate.dev", "v1alpha1", "aideployments"
NAMESPACE = "bench"
OPERATOR_SA = "aigate"  # the chart's ServiceAccount in the records namespace
OPERATOR_USER = f"system:serviceaccount:{RECORDS_NAMESPACE}:{OPERATOR_SA}"
FIELD_MANAGER = "bench-gitops"
STAGE_SECONDS, INTERVAL_SECONDS = 30, 10
STAGES = [
    {"name": "canary-50", "weight": 50, "duration": f"{STAGE_SECONDS}s"},
    {"name": "full", "weight": 100, "duration": f"{STAGE_SECONDS}s"},
]
IDEAL_SECONDS = STAGE_SECONDS * len(STAGES)
VERSIONS = ("1.0.0", "2.0.0")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
# The control plane's client limits. `default`: as each binary ships (controller-manager
# 20 QPS and 5 Deployment/ReplicaSet workers, scheduler 50 QPS), which makes the
# controllers, not the operator, the slowest part at N=1,000. `tuned`: the limits the
# Kubernetes project's own scale tests and large clusters raise them to.
CONTROL_PLANES: dict[str, dict[str, list[str]]] = {
    "default": {},
    "tuned": {
        "kube-controller-manager": [
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-deployment-syncs=25",
            "--concurrent-replicaset-syncs=25",
        ],
        "kube-scheduler": ["--kube-api-qps=100", "--kube-api-burst=200"],
    },
}
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def now() -> datetime:
    return datetime.now(UTC)


# ---- the workload --------------------------------------------------------------------------


def spec_for(version: str, prometheus_url: str) -> dict[str, Any]:
    raw = spec_dict()
    raw["model"].update(version=version, riskTier="limited")
    raw["replicas"] = 1
    raw["template"]["spec"]["containers"][0]["image"] = image_for(version)
    selector = 'aideployment="{{name}}",namespace="{{namespace}}",track="{{track}}"'
    raw["rollout"] = {
        # generous: the benchmark measures how late things are, it should not fail on it
        "progressDeadline": "30m",
        "stages": STAGES,
        "analysis": {
            "prometheus": {"url": prometheus_url, "timeout": "5s"},
            "interval": f"{INTERVAL_SECONDS}s",
            "metrics": [
                {"name": "error-rate", "query": f"model_error_rate{{{selector}}}", "max": 0.01}
            ],
        },
    }
    return raw


def names(n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"m-{i:0{width}d}" for i in range(n)]


def serve_healthy_metrics(exporter_url: str, all_names: list[str]) -> None:
    values = [
        {
            "name": "model_error_rate",
            "labels": {"aideployment": name, "namespace": NAMESPACE, "track": track},
            "value": 0.001,
        }
        for name in all_names
        for track in ("stable", "canary")
    ]
    set_values(exporter_url, values)


def apply_all(api: client.ApiClient, all_names: list[str], spec: dict[str, Any]) -> None:
    """Spec and its approval in one server-side apply per object, in parallel (a GitOps
    sync of N objects)."""
    revision = compute_revision(spec_model(spec))
    annotations = approval_annotations(revision, now() - timedelta(seconds=5))
    custom = client.CustomObjectsApi(api)

    def apply(name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": spec,
        }
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(apply, all_names))


# ---- watching progress ---------------------------------------------------------------------


def phase_table(api: client.ApiClient) -> list[dict[str, str]]:
    """Name, Phase and Revision of every AIDeployment, as a server-side Table (cheap to
    poll: the server sends the printer columns, not the objects)."""
    response = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, _headers={"Accept": TABLE}, _preload_content=False
    )
    table = json.loads(response.data)
    columns = [c["name"] for c in table["columnDefinitions"]]
    return [dict(zip(columns, row["cells"], strict=False)) for row in table["rows"]]


class Sampler(threading.Thread):
    """Samples the operator's (and the control plane's) CPU and memory every second."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.latest: dict[str, sa.ProcSample] = {}
        self.peak_rss: dict[str, int] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(1.0)

    def sample(self) -> dict[str, sa.ProcSample]:
        with self.lock:
            for name, pid in self.pids.items():
                got = sa.proc_sample(pid)
                if got is not None:
                    self.latest[name] = got
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0), got.rss_bytes)
            return dict(self.latest)

    def reset_peaks(self) -> None:
        with self.lock:
            self.peak_rss = {}


def poll_until(
    count: Callable[[], tuple[int, str]], total: int, what: str, timeout: float
) -> float:
    """Calls `count` (done so far, a progress text) until all `total` are done; prints the
    progress every 10 s. Returns the seconds it took (poll resolution: 2 s, 5 s above 200
    objects, so the poll itself stays a small load on the API server)."""
    start = time.monotonic()
    last_print = 0.0
    while True:
        done, progress = count()
        elapsed = time.monotonic() - start
        if elapsed - last_print >= 10 or done == total:
            last_print = elapsed
            log(f"{what} {elapsed:5.0f}s: {done}/{total} {progress}")
        if done == total:
            return elapsed
        if elapsed > timeout:
            raise TimeoutError(f"{what}: {done}/{total} done after {timeout:.0f}s")
        time.sleep(2 if total <= 200 else 5)


def wait_all(
    api: client.ApiClient,
    n: int,
    revision: str,
    sampler: Sampler,
    what: str,
    timeout: float,
) -> float:
    """Polls until all N are Stable at `revision` (status.shortRevision), showing phase
    counts and the operator's RSS and CPU."""
    short = revision[:12]

    def count() -> tuple[int, str]:
        rows = phase_table(api)
        done = sum(1 for r in rows if r.get("Phase") == "Stable" and r.get("Revision") == short)
        counts: dict[str, int] = {}
        for r in rows:
            phase = r.get("Phase") or "(none)"
            counts[phase] = counts.get(phase, 0) + 1
        op = sampler.sample().get("operator")
        usage = (
            f" | operator RSS {op.rss_bytes / 2**20:.0f} MB CPU {op.cpu_seconds:.0f} s"
            if op
            else ""
        )
        shown = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        return done, f"done | {shown}{usage}"

    return poll_until(count, n, what, timeout)


# ---- reading results -----------------------------------------------------------------------


def list_all(api: client.ApiClient, namespace: str, plural: str) -> Iterator[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)
    token = None
    while True:
        kwargs = {"limit": 500, **({"_continue": token} if token else {})}
        response = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _preload_content=False, **kwargs
        )
        page = json.loads(response.data)
        yield from page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return


def rollout_times(api: client.ApiClient, start: datetime) -> dict[str, Any]:
    """Per object, apply → its last transition (to Stable), from the status' own time
    (seconds resolution); the last one is when all were done."""
    durations, reasons = [], {}
    for item in list_all(api, NAMESPACE, PLURAL):
        last = (item.get("status") or {}).get("lastTransition") or {}
        reasons[last.get("reason", "")] = reasons.get(last.get("reason", ""), 0) + 1
        if last.get("time"):
            durations.append((sa.parse_time(last["time"]) - start).total_seconds())
    return {"per_rollout_seconds": sa.summary(durations), "last_transition_reasons": reasons}


def measurement_report(api: client.ApiClient, start: datetime) -> dict[str, Any]:
    """Lags of the measurements taken after `start`, from the AIRecords."""
    specs = [
        item["spec"]
        for item in list_all(api, RECORDS_NAMESPACE, "airecords")
        if item["spec"]["subject"]["namespace"] == NAMESPACE
        and sa.parse_time(item["spec"]["time"]) >= start.replace(microsecond=0)
    ]
    report = sa.measurement_lags(specs, INTERVAL_SECONDS, declared).as_dict()
    report["records"] = len(specs)
    return report


def scrape(url: str) -> dict[sa.Series, float]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
        return sa.parse_exposition(response.read().decode())


def metrics_delta(
    before: dict[str, dict[sa.Series, float]], after: dict[str, dict[sa.Series, float]], n: int
) -> dict[str, Any]:
    op_b, op_a, pr_b, pr_a = before["operator"], after["operator"], before["prom"], after["prom"]
    queries = sa.counter_delta(pr_b, pr_a, "prometheus_http_requests_total", "handler")
    engine = sa.counter_delta(pr_b, pr_a, "prometheus_engine_query_duration_seconds_count", "slice")
    operator_queries = sa.counter_delta(
        op_b, op_a, "aigate_prometheus_query_duration_seconds_count"
    ).get("total", 0.0)
    instant = queries.get("/api/v1/query", 0.0)
    return {
        "prometheus_queries_total": instant,
        "prometheus_queries_per_rollout": round(instant / n, 2),
        "prometheus_http_requests_by_handler": {k: v for k, v in queries.items() if v},
        "prometheus_engine_evaluations": engine.get("inner_eval", 0.0),
        "operator_prometheus_queries": operator_queries,
        "operator_prometheus_queries_shared": sa.counter_delta(
            op_b, op_a, "aigate_prometheus_queries_shared_total"
        ).get("total", 0.0),
        "operator_reconciles": sa.counter_delta(op_b, op_a, "aigate_reconciles_total", "result"),
        "operator_events_posted": sa.counter_delta(op_b, op_a, "aigate_events_total").get(
            "total", 0.0
        ),
        "operator_counted_api_requests": {
            f"{dict(labels).get('verb')} {dict(labels).get('resource')}": value
            - op_b.get((name, labels), 0.0)
            for (name, labels), value in sorted(op_a.items())
            if name == "aigate_api_requests_total" and value - op_b.get((name, labels), 0.0)
        },
    }


# ---- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(total_kb / 2**20, 1),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def versions(bin_dir: Path) -> dict[str, str]:
    def run(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""
        )

    return {
        "python": platform.python_version(),
        "kopf": metadata.version("kopf"),
        "kubernetes_client": metadata.version("kubernetes"),
        "kube-apiserver": run(str(bin_dir / "kube-apiserver"), "--version"),
        "etcd": run(str(bin_dir / "etcd"), "--version"),
        "kwok": run(str(bin_dir / "kwok"), "--version"),
        "prometheus": run(str(bin_dir / "prometheus"), "--version"),
    }


def git() -> dict[str, Any]:
    def run(*argv: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": run("rev-parse", "HEAD"),
        "branch": run("rev-parse", "--abbrev-ref", "HEAD"),
        # The operator's code, whatever else the commit changed: equal trees, equal operator.
        "operator_tree": run("rev-parse", "HEAD:operator"),
        "dirty": bool(run("status", "--porcelain", "--", "operator", "bench", "hack")),
    }


# ---- the run -------------------------------------------------------------------------------


def operator_identity(cluster: LocalCluster, state: Path) -> Path:
    """The chart's ServiceAccount with its RBAC, as installed by helm: the operator acts
    as this user, so the audit log tells its requests from everyone else's."""
    cluster.kubectl("create", "namespace", RECORDS_NAMESPACE)
    docs = [
        d
        for d in render_chart(cluster.bin, namespace=RECORDS_NAMESPACE)
        if d["kind"]
        in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    manifest = state / "operator-rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(manifest))
    return cluster.service_account_kubeconfig(
        RECORDS_NAMESPACE, OPERATOR_SA, state / "kubeconfig-operator", duration="24h"
    )


def admin_client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 16  # the parallel applies
    return client.ApiClient(configuration)


def prepare(cluster: LocalCluster, api: client.ApiClient, all_names: list[str]) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/aideployments.aigate.dev",
        "crd/airecords.aigate.dev",
    )
    create_namespace(api, NAMESPACE)
    serve_healthy_metrics(cluster.info.exporter_url, all_names)


def create_namespace(api: client.ApiClient, namespace: str) -> None:
    """Creates it and waits for its default ServiceAccount (pods are refused before)."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    deadline = time.monotonic() + 90
    while not core.list_namespaced_service_account(namespace).items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {namespace} after 90s")
        time.sleep(0.5)


def snapshot(operator: OperatorProcess, cluster: LocalCluster) -> dict[str, dict]:
    return {
        "operator": scrape(operator.metrics_url),
        "prom": scrape(f"{cluster.info.prometheus_url}/metrics"),
    }


def run(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    n = args.n
    all_names = names(n)
    marks: dict[str, datetime] = {}
    policy = state / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    nodes = max(2, math.ceil(2 * n / 250))
    flags = CONTROL_PLANES[args.control_plane]
    log(
        f"N={n}: starting the control plane ({args.control_plane}, {nodes} kwok nodes), "
        f"state in {state}"
    )
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster.start(
                state / "cluster", nodes=nodes, audit_policy=policy, extra_flags=flags
            )
        )
        startup = time.monotonic() - t0
        api = admin_client(cluster.info.kubeconfig)
        stack.callback(api.close)
        prepare(cluster, api, all_names)
        operator = OperatorProcess(operator_identity(cluster, state), state / "operator.log")
        stack.callback(operator.stop)
        operator.start()
        assert operator.process is not None and operator.process.pid is not None
        pids = {"operator": operator.process.pid}
        pids.update({name: p.pid for name, p in cluster.processes.items() if p.pid})
        sampler = Sampler(pids)
        sampler.start()
        stack.callback(sampler.stopping.set)
        log(f"control plane up in {startup:.0f}s; operator pid {pids['operator']}")

        v1, v2 = (spec_for(v, cluster.info.prometheus_url) for v in VERSIONS)
        marks["first_version_start"] = now()
        apply_all(api, all_names, v1)
        timeout = args.timeout or max(900.0, 2.0 * n)
        first = wait_all(
            api, n, compute_revision(spec_model(v1)), sampler, "first version", timeout
        )
        marks["first_version_done"] = now()
        time.sleep(args.settle)  # let the last Events and records of the first version land

        before, cpu_before = snapshot(operator, cluster), sampler.sample()
        sampler.reset_peaks()
        marks["rollout_start"] = now()
        apply_all(api, all_names, v2)
        marks["rollout_applied"] = now()
        log(
            f"new version applied to {n} AIDeployments in "
            f"{(marks['rollout_applied'] - marks['rollout_start']).total_seconds():.1f}s"
        )
        polled = wait_all(api, n, compute_revision(spec_model(v2)), sampler, "rollout", timeout)
        marks["rollout_done"] = now()
        # The rollout's trailing work (its last records and Events) is counted with it: the
        # accounting window ends `settle` seconds after all were seen Stable.
        time.sleep(args.settle)
        marks["rollout_end"] = now()
        after, cpu_after = snapshot(operator, cluster), sampler.sample()
        peaks = dict(sampler.peak_rss)

        marks["quiet_start"] = now()
        log(f"quiet window: {args.quiet:.0f}s with all {n} Stable")
        time.sleep(args.quiet)
        marks["quiet_end"] = now()
        cpu_quiet = sampler.sample()

        times = rollout_times(api, marks["rollout_start"])
        measurements = measurement_report(api, marks["rollout_start"])
        final = sampler.sample()
        operator.stop()
        result = {
            "n": n,
            "control_plane": args.control_plane,
            "control_plane_flags": flags,
            "control_plane_start_seconds": round(startup, 1),
            "kwok_nodes": nodes,
            "first_version_all_stable_seconds": round(first, 1),
            "rollout": {
                "ideal_seconds": IDEAL_SECONDS,
                "all_done_seconds_polled": round(polled, 1),
                "all_done_seconds": times["per_rollout_seconds"]["max"],
                "apply_seconds": round(
                    (marks["rollout_applied"] - marks["rollout_start"]).total_seconds(), 1
                ),
                **times,
            },
            "measurements": measurements,
            "operator": operator_usage(n, cpu_before, cpu_after, cpu_quiet, final, peaks),
            "control_plane_cpu_seconds_during_rollout": {
                name: round(cpu_after[name].cpu_seconds - cpu_before[name].cpu_seconds, 1)
                for name in cpu_after
                if name != "operator" and name in cpu_before
            },
            "prometheus": metrics_delta(before, after, n),
            "audit_log": str(cluster.audit_log),
        }
        result["api_requests"] = api_requests(cluster.audit_log, marks, n, args.quiet)
    result["marks"] = {k: v.isoformat() for k, v in marks.items()}
    return result


def operator_usage(
    n: int,
    before: dict[str, sa.ProcSample],
    after: dict[str, sa.ProcSample],
    quiet: dict[str, sa.ProcSample],
    final: dict[str, sa.ProcSample],
    peaks: dict[str, int],
) -> dict[str, Any]:
    rollout_cpu = after["operator"].cpu_seconds - before["operator"].cpu_seconds
    return {
        "peak_rss_mb": round(final["operator"].hwm_bytes / 2**20, 1),
        "peak_rss_mb_sampled_during_rollout": round(peaks.get("operator", 0) / 2**20, 1),
        "rss_mb_after_rollout": round(after["operator"].rss_bytes / 2**20, 1),
        "cpu_seconds_total": round(final["operator"].cpu_seconds, 1),
        "cpu_seconds_rollout": round(rollout_cpu, 1),
        "cpu_seconds_per_rollout": round(rollout_cpu / n, 3),
        "cpu_seconds_quiet_window": round(
            quiet["operator"].cpu_seconds - after["operator"].cpu_seconds, 2
        ),
    }


def api_requests(
    audit_log: Path, marks: dict[str, datetime], n: int, quiet_seconds: float
) -> dict[str, Any]:
    windows = {
        "first_version": (marks["first_version_start"], marks["first_version_done"]),
        "rollout": (marks["rollout_start"], marks["rollout_end"]),
        "quiet": (marks["quiet_start"], marks["quiet_end"]),
    }
    with audit_log.open(errors="replace") as lines:
        counts = sa.count_requests(lines, OPERATOR_USER, windows)
    return {
        "user": OPERATOR_USER,
        "per_rollout": sa.requests_table(counts["rollout"], n),
        "rollout_total": sa.requests_table(counts["rollout"]),
        "first_version_per_object": sa.requests_table(counts["first_version"], n),
        "quiet_window_seconds": quiet_seconds,
        "quiet_window_total": sa.requests_table(counts["quiet"]),
    }


# ---- output --------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    r, op, req, m = (
        result["rollout"],
        result["operator"],
        result["api_requests"],
        result["measurements"],
    )
    per = req["per_rollout"]
    lag = m["lag_seconds"]
    rows = [
        ("N", result["n"]),
        ("all Stable after (ideal)", f"{r['all_done_seconds']} s ({r['ideal_seconds']} s)"),
        (
            "per rollout p50 / p95",
            f"{r['per_rollout_seconds']['p50']} / {r['per_rollout_seconds']['p95']} s",
        ),
        (
            "measurement lag p50 / p95",
            f"{lag['p50']} / {lag['p95']} s ({m['measurements']} measurements)",
        ),
        ("measurements per stage", m["stages_by_measurement_count"]),
        ("operator peak RSS", f"{op['peak_rss_mb']} MB"),
        (
            "operator CPU rollout / per rollout",
            f"{op['cpu_seconds_rollout']} s / {op['cpu_seconds_per_rollout']} s",
        ),
        ("API requests per rollout", f"{per['total']} (reads {per['reads']}) {per['by_verb']}"),
        (
            "reads in quiet window",
            f"{req['quiet_window_total']['reads']} in {req['quiet_window_seconds']:.0f} s",
        ),
        ("Prometheus queries per rollout", result["prometheus"]["prometheus_queries_per_rollout"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def result_path(benchmark: str, n: int, control_plane: str) -> Path:
    """bench/results/<benchmark>-<N>[-<control plane, unless default>].json"""
    suffix = "" if control_plane == "default" else f"-{control_plane}"
    return ROOT / "bench" / "results" / f"{benchmark}-{n}{suffix}.json"


def install_interrupt_handlers() -> None:
    """SIGTERM cleans up like Ctrl-C: the ExitStack stops the operator and the cluster.
    SIGINT is set explicitly: a shell's background job inherits it ignored."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="AIDeployments (default 100)")
    parser.add_argument("--output", type=Path, help="default bench/results/scale-<N>.json")
    parser.add_argument("--quiet", type=float, default=60, help="quiet window after (s)")
    parser.add_argument("--settle", type=float, default=10, help="pause before windows (s)")
    parser.add_argument("--timeout", type=float, help="per phase (default max(900, 2N) s)")
    parser.add_argument("--notes", default="", help="free text stored in the result")
    parser.add_argument("--keep-state", action="store_true", help="keep logs and audit log")
    parser.add_argument(
        "--control-plane",
        choices=sorted(CONTROL_PLANES),
        default="default",
        help="the controllers' client limits (default: as shipped; see CONTROL_PLANES)",
    )
    args = parser.parse_args()
    output = args.output or result_path("scale", args.n, args.control_plane)
    install_interrupt_handlers()
    started = now()
    header = {"machine": machine(), "git": git(), "started": started.isoformat()}
    state_dir = tempfile.mkdtemp(prefix=f"aigate-scale-{args.n}-")
    try:
        result = run(args, Path(state_dir))
    except KeyboardInterrupt:
        log("interrupted: the operator and the control plane are stopped")
        return 130
    finally:
        if not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            log(f"state kept in {state_dir}")
    bin_dir = ensure_binaries()
    full = {
        **header,
        "versions": versions(bin_dir),
        "finished": now().isoformat(),
        "notes": args.notes,
        **result,
    }
    full["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(full, indent=2) + "\n")
    print(table(full))
    print(f"written: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
