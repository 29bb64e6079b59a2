"""Benchmark: the control plane's own floor for the scale benchmark's rollout, no operator.

`scale.py` times N rollouts driven by aigate. Part of that time is not aigate's: the
Deployment and ReplicaSet controllers, the scheduler and kwok must create N canary pods
and roll N stable Deployments, on the same 2 cores. This script does exactly the child
writes aigate makes for one rollout, directly and as fast as the control plane allows,
with no analysis and no waiting between stages:

  1. N stable Deployments (aigate's own manifests for version 1), until all are Ready;
  2. N canary Deployments (version 2) at once, until all are Ready   -> `canary_ready_seconds`
  3. every stable Deployment patched to version 2, until all are rolled -> `promote_seconds`
  4. the canaries deleted (not timed: aigate does not wait for it).

So an operator that drives the same rollout with stages of total duration D cannot finish
before roughly `canary_ready_seconds + D + promote_seconds` on this machine, however cheap
it is itself. Writes bench/results/floor-<N>[-<profile>].json; see bench/README.md.

    python bench/floor.py --n 1000 [--control-plane tuned]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import scale  # first: puts operator/, hack/ and tests/ on sys.path
from kubernetes import client

from aigate.core.revision import compute_revision
from aigate.core.workloads import Owner, build_deployment
from localcluster import LocalCluster
from support.factories import spec_model

NAMESPACE = "floor"
PARALLEL = 8  # like the operator's worker threads and scale.py's applies


def manifest(name: str, track: str, spec: dict[str, Any]) -> dict[str, Any]:
    """aigate's manifest for the child, without the ownerReference (there is no
    AIDeployment here: the garbage collector would delete an orphan)."""
    owner = Owner(name=name, namespace=NAMESPACE, uid="00000000-0000-0000-0000-000000000000")
    body = build_deployment(
        owner,
        track,
        model_name=spec["model"]["name"],
        version=spec["model"]["version"],
        revision=compute_revision(spec_model(spec)),
        template=spec["template"],
        replicas=1,
    )
    body["metadata"].pop("ownerReferences", None)
    return body


def in_parallel(work: Callable[[str], object], all_names: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(work, all_names))


def rolled(item: Any, image: str) -> bool:
    """Every replica of the Deployment runs `image` and is ready, and nothing older is left."""
    status, spec = item.status, item.spec
    return (
        spec.template.spec.containers[0].image == image
        and (status.observed_generation or 0) >= (item.metadata.generation or 0)
        and (status.updated_replicas or 0) == spec.replicas
        and (status.ready_replicas or 0) == spec.replicas
        and (status.replicas or 0) == spec.replicas
    )


def wait_rolled(
    apps: client.AppsV1Api, names: set[str], image: str, what: str, timeout: float
) -> float:
    def count() -> tuple[int, str]:
        items = apps.list_namespaced_deployment(NAMESPACE, resource_version="0").items
        return sum(1 for d in items if d.metadata.name in names and rolled(d, image)), "rolled"

    return scale.poll_until(count, len(names), what, timeout)


def run(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    n = args.n
    all_names = scale.names(n)
    nodes = max(2, math.ceil(2 * n / 250))
    flags = scale.CONTROL_PLANES[args.control_plane]
    scale.log(f"N={n}: control plane ({args.control_plane}, {nodes} kwok nodes), no operator")
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster.start(state / "cluster", nodes=nodes, extra_flags=flags)
        )
        api = scale.admin_client(cluster.info.kubeconfig)
        stack.callback(api.close)
        apps = client.AppsV1Api(api)
        scale.create_namespace(api, NAMESPACE)
        v1, v2 = (scale.spec_for(v, cluster.info.prometheus_url) for v in scale.VERSIONS)
        image1 = v1["template"]["spec"]["containers"][0]["image"]
        image2 = v2["template"]["spec"]["containers"][0]["image"]
        stables = {f"{name}-stable" for name in all_names}
        canaries = {f"{name}-canary" for name in all_names}
        timeout = args.timeout or max(900.0, 2.0 * n)

        in_parallel(
            lambda name: apps.create_namespaced_deployment(NAMESPACE, manifest(name, "stable", v1)),
            all_names,
        )
        first = wait_rolled(apps, stables, image1, "stable v1", timeout)

        pids = {name: p.pid for name, p in cluster.processes.items() if p.pid}
        sampler = scale.Sampler(pids)
        before = sampler.sample()
        start = time.monotonic()
        in_parallel(
            lambda name: apps.create_namespaced_deployment(NAMESPACE, manifest(name, "canary", v2)),
            all_names,
        )
        canary = wait_rolled(apps, canaries, image2, "canary v2", timeout)
        promote_start = time.monotonic()
        in_parallel(
            lambda name: apps.patch_namespaced_deployment(
                f"{name}-stable", NAMESPACE, manifest(name, "stable", v2)
            ),
            all_names,
        )
        promote = wait_rolled(apps, stables, image2, "stable v2", timeout)
        total = time.monotonic() - start
        after = sampler.sample()
        in_parallel(
            lambda name: apps.delete_namespaced_deployment(f"{name}-canary", NAMESPACE),
            all_names,
        )
        return {
            "n": n,
            "control_plane": args.control_plane,
            "control_plane_flags": flags,
            "kwok_nodes": nodes,
            "first_version_ready_seconds": round(first, 1),
            "canary_ready_seconds": round(canary, 1),
            "promote_seconds": round(promote, 1),
            "promote_apply_seconds": round(promote_start - start - canary, 1),
            "floor_seconds": round(total, 1),
            "scale_ideal_seconds": scale.IDEAL_SECONDS,
            "scale_floor_seconds": round(total + scale.IDEAL_SECONDS, 1),
            "control_plane_cpu_seconds": {
                name: round(after[name].cpu_seconds - before[name].cpu_seconds, 1)
                for name in after
                if name in before
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="rollouts (default 100)")
    parser.add_argument("--control-plane", choices=sorted(scale.CONTROL_PLANES), default="default")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--timeout", type=float, help="per phase (default max(900, 2N) s)")
    parser.add_argument("--notes", default="")
    args = parser.parse_args()
    output = args.output or scale.result_path("floor", args.n, args.control_plane)
    scale.install_interrupt_handlers()
    header = {"machine": scale.machine(), "git": scale.git(), "started": scale.now().isoformat()}
    state_dir = tempfile.mkdtemp(prefix=f"aigate-floor-{args.n}-")
    try:
        result = run(args, Path(state_dir))
    except KeyboardInterrupt:
        scale.log("interrupted: the control plane is stopped")
        return 130
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    full = {**header, "finished": scale.now().isoformat(), "notes": args.notes, **result}
    full["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(full, indent=2) + "\n")
    for key in ("canary_ready_seconds", "promote_seconds", "floor_seconds", "scale_floor_seconds"):
        print(f"{key:<22} {full[key]}")
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
