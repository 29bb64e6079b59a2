"""Benchmark: how fast the gate reacts, on the local control plane.

Measures, over N AIDeployments each in its own namespace:
  - create → phase AwaitingApproval (the refusal is visible)
  - approval annotation → phase Stable (4 replicas Ready on kwok nodes)
plus the control plane's own start time. Writes bench/results/governance-latency.json.

    make bench        # or: python bench/governance_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "hack"), str(ROOT / "operator")]

from kubernetes import client, config  # noqa: E402

from localcluster import LocalCluster  # noqa: E402
from localcluster.operator import OperatorProcess  # noqa: E402
from support.factories import approval_annotations, spec_dict  # noqa: E402
from support.kube import Aid  # noqa: E402
from support.waiting import wait_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "governance-latency.json"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aigate-bench-") as tmp:
        t0 = time.monotonic()
        with LocalCluster.start(Path(tmp) / "cluster") as cluster:
            startup = time.monotonic() - t0
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            cluster.kubectl("wait", "--for=condition=Established", "crd/aideployments.aigate.dev")
            operator = OperatorProcess(cluster.info.kubeconfig, Path(tmp) / "operator.log")
            try:
                operator.start()
                api = config.new_client_from_config(config_file=cluster.info.kubeconfig)
                refusals, deploys = [], []
                for run in range(args.runs):
                    namespace = f"bench-{run}"
                    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
                    wait_for(
                        lambda ns=namespace: (
                            client.CoreV1Api(api).list_namespaced_service_account(ns).items
                        ),
                        timeout=60,
                        what="default ServiceAccount",
                    )
                    aid = Aid(api, namespace, "bench")
                    start = time.monotonic()
                    aid.create(spec_dict())
                    wait_for(
                        lambda a=aid: a.phase() == "AwaitingApproval",
                        timeout=60,
                        what="refusal",
                        interval=0.05,
                    )
                    refusals.append(time.monotonic() - start)
                    revision = aid.status()["revision"]
                    start = time.monotonic()
                    aid.annotate(
                        approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5))
                    )
                    wait_for(
                        lambda a=aid: a.phase() == "Stable",
                        timeout=120,
                        what="Stable",
                        interval=0.05,
                    )
                    deploys.append(time.monotonic() - start)
            finally:
                operator.stop()

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "runs": args.runs,
        "control_plane_start_seconds": round(startup, 2),
        "create_to_awaiting_approval_seconds": _summary(refusals),
        "approval_to_stable_seconds": _summary(deploys),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


if __name__ == "__main__":
    sys.exit(main())
