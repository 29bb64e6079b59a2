"""Command line: `up` starts the local cluster in the background, `down` stops it.

up         starts a supervisor process that owns every component, waits until all are
           ready, prints `export KUBECONFIG=...` and the Prometheus URL, and returns.
down       stops the supervisor (which stops its components) and then, as a safety net,
           every pid recorded in cluster.json.
supervise  (internal) runs the cluster in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from localcluster.cluster import ClusterInfo, LocalCluster, ensure_binaries
from localcluster.processes import kill_pids

DEFAULT_STATE_DIR = Path(os.environ.get("AIGATE_CLUSTER_DIR", "/tmp/aigate-cluster"))


def _supervise(state_dir: Path, nodes: int, bin_dir: Path | None) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalCluster.start(state_dir, nodes=nodes, bin_dir=bin_dir):
        (state_dir / "ready").touch()
        while not stop:
            time.sleep(0.2)
    return 0


def _up(state_dir: Path, nodes: int) -> int:
    pid_file = state_dir / "supervisor.pid"
    if pid_file.exists() and _pid_alive(int(pid_file.read_text())):
        print(
            f"already running (supervisor pid {pid_file.read_text().strip()}); "
            f"`make cluster-down` first",
            file=sys.stderr,
        )
        _print_env(ClusterInfo.load(state_dir))
        return 0
    bin_dir = ensure_binaries()  # in the foreground, so build progress is visible
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    log = (state_dir / "supervisor.log").open("ab")
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localcluster",
            "supervise",
            f"--state-dir={state_dir}",
            f"--nodes={nodes}",
            f"--bin-dir={bin_dir}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives this command's exit
    )
    pid_file.write_text(str(supervisor.pid))
    t0 = time.monotonic()
    while not (state_dir / "ready").exists():
        if supervisor.poll() is not None:
            print((state_dir / "supervisor.log").read_text(errors="replace"), file=sys.stderr)
            print(f"local cluster failed to start (logs in {state_dir}/logs)", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(
        f"# local cluster ready in {time.monotonic() - t0:.1f}s; logs in {state_dir}/logs",
        file=sys.stderr,
    )
    _print_env(ClusterInfo.load(state_dir))
    return 0


def _print_env(info: ClusterInfo) -> None:
    print(f"export KUBECONFIG={info.kubeconfig}")
    print(f"export AIGATE_PROMETHEUS_URL={info.prometheus_url}")
    print(f"export AIGATE_EXPORTER_URL={info.exporter_url}")
    print(f"# Prometheus: {info.prometheus_url}   API server: {info.apiserver_url}")


def _down(state_dir: Path) -> int:
    pids: list[int] = []
    pid_file = state_dir / "supervisor.pid"
    if pid_file.exists():
        pids.append(int(pid_file.read_text()))
    if (state_dir / "cluster.json").exists():
        pids.extend(ClusterInfo.load(state_dir).pids.values())
    if not pids:
        print("no local cluster recorded in " + str(state_dir), file=sys.stderr)
        return 0
    # The supervisor first: it stops its components in order.
    kill_pids(pids[:1], timeout=30)
    forced = kill_pids(pids[1:], timeout=10)
    pid_file.unlink(missing_ok=True)
    (state_dir / "ready").unlink(missing_ok=True)
    print(
        f"local cluster stopped{' (forced: ' + str(forced) + ')' if forced else ''}",
        file=sys.stderr,
    )
    return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "env", "supervise"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--bin-dir", type=Path)
    args = parser.parse_args()
    if args.command == "up":
        return _up(args.state_dir, args.nodes)
    if args.command == "down":
        return _down(args.state_dir)
    if args.command == "env":
        _print_env(ClusterInfo.load(args.state_dir))
        return 0
    return _supervise(args.state_dir, args.nodes, args.bin_dir)


if __name__ == "__main__":
    sys.exit(main())
