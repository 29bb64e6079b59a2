"""A real Kubernetes control plane on loopback for aigate's tests, demo and benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes, so the
pods of a Deployment become Running/Ready with no container runtime), plus Prometheus
scraping a small exporter whose values tests set. Binaries are built once by
hack/build-control-plane.sh and cached outside the repository.

    python -m localcluster up      # start in the background, print KUBECONFIG and URLs
    python -m localcluster down    # stop every process it started

In Python: ``with LocalCluster.start(state_dir) as cluster: ...``.
"""

from localcluster.cluster import ClusterInfo, LocalCluster

__all__ = ["ClusterInfo", "LocalCluster"]
