"""A rollout plan with short timings and model servers driven through the exporter,
shared by the end-to-end and chart tests."""

from __future__ import annotations

from localcluster.exporter import set_values
from support.factories import image_for, spec_dict

NAME = "fraud-scorer"
HEALTHY = {"error": 0.001, "latency": 0.08}


def plan(prometheus_url: str, version: str, *, manual: bool = False, monitor: str = "0s") -> dict:
    raw = spec_dict()
    raw["model"]["version"] = version
    raw["template"]["spec"]["containers"][0]["image"] = image_for(version)
    selector = 'aideployment="{{name}}",namespace="{{namespace}}",track="{{track}}"'
    raw["rollout"] = {
        "progressDeadline": "60s",
        "stages": [
            {"name": "canary-10", "weight": 10, "duration": "3s"},
            {"name": "canary-50", "weight": 50, "duration": "3s", "manualPromotion": manual},
            {"name": "full", "weight": 100, "duration": "2s"},
        ],
        "analysis": {
            "prometheus": {"url": prometheus_url, "timeout": "2s"},
            "interval": "1s",
            "failureLimit": 1,
            "inconclusiveLimit": 2,
            "metrics": [
                {"name": "error-rate", "query": f"model_error_rate{{{selector}}}", "max": 0.01},
                {
                    "name": "p99-latency",
                    "query": f"model_latency_p99_seconds{{{selector}}}",
                    "max": 0.25,
                },
            ],
        },
        "postPromotion": {"monitorFor": monitor},
    }
    return raw


class ModelServers:
    """The exporter's values for one AIDeployment, per track."""

    def __init__(self, exporter_url: str, namespace: str) -> None:
        self.url = exporter_url
        self.namespace = namespace

    def set(self, track: str, error: float, latency: float = 0.08) -> None:
        labels = {"aideployment": NAME, "namespace": self.namespace, "track": track}
        set_values(
            self.url,
            [
                {"name": "model_error_rate", "labels": labels, "value": error},
                {"name": "model_latency_p99_seconds", "labels": labels, "value": latency},
            ],
        )
