"""Metric presets: named, versioned PromQL templates for common model servers.

A metric may say `preset: vllm-v1/time-to-first-token-p95` instead of writing `query`; the
preset stands for exactly the template below, with the same placeholders ({{name}},
{{namespace}}, {{revision}}, {{version}}, {{track}}) and the same escaping as a hand-written
query. Decision 0016 (docs/decisions/0016-metric-presets.md) explains the rules:

- A published preset never changes meaning: its query is pinned by a digest in
  tests/unit/test_presets.py. A better query, or a server that renamed its metrics, gets a
  new name (`vllm-v2/...`); old names stay (marked deprecated) so stored objects stay valid.
- The revision an approval names covers the resolved query too (core/revision.py adds it as
  `presetQuery`), so even a changed catalogue can never slip under an existing approval.

Series are selected by the labels a scrape config gets from aigate's pod labels
(examples/monitoring/vllm-podmonitor.yaml): `namespace`, `aideployment`, `track` and `revision`. The
revision keeps a new canary from being judged on the counters of the canary before it for
as long as the rate window still holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The series of one track of one AIDeployment, as the documented relabeling names them.
SELECTOR = (
    'namespace="{{namespace}}",aideployment="{{name}}",track="{{track}}",revision="{{revision}}"'
)
# Rate window: at least four scrapes at a 30 s scrape interval, short enough for a stage.
WINDOW = "2m"


@dataclass(frozen=True)
class Preset:
    name: str
    server: str  # the model server (and its versions) whose exporter names these are
    measures: str  # what the value means, with its unit
    query: str  # the PromQL template, placeholders unresolved
    suggested: str  # a typical way to bound it, for the docs and `aigate presets`
    deprecated: str = ""  # non-empty: why, and what to use instead

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "server": self.server,
            "measures": self.measures,
            "query": self.query,
            "suggested": self.suggested,
            "deprecated": self.deprecated,
        }


def _quantile(q: float, metric: str, extra: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate({metric}_bucket{{{SELECTOR}{extra}}}[{WINDOW}])))"
    )


def _error_ratio(metric: str, extra: str = "") -> str:
    """5xx share of requests. A server that never failed has no 5xx series at all: that is 0,
    not "no data" (`or vector(0)`); no requests at all stay no data (empty or NaN)."""
    every = f"{metric}{{{SELECTOR}{extra}}}"
    errors = f'{metric}{{{SELECTOR}{extra},status=~"5.."}}'
    return f"(sum(rate({errors}[{WINDOW}])) or vector(0)) / sum(rate({every}[{WINDOW}]))"


VLLM = "vLLM (OpenAI-compatible server, v0.6 and later)"
VLLM_HTTP = ',handler=~"/v1/.*"'  # inference endpoints only; vLLM excludes /health etc.
KSERVE = "KServe Python model server (kserve.Model: sklearn, xgboost, lightgbm, custom)"

HTTP = "any server instrumented with prometheus-fastapi-instrumentator"

_CATALOGUE = (
    Preset(
        "vllm-v1/time-to-first-token-p95",
        VLLM,
        "95th percentile time to first token, seconds",
        _quantile(0.95, "vllm:time_to_first_token_seconds"),
        "max: 0.5, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "vllm-v1/time-to-first-token-p99",
        VLLM,
        "99th percentile time to first token, seconds",
        _quantile(0.99, "vllm:time_to_first_token_seconds"),
        "max: 1, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "vllm-v1/time-per-output-token-p95",
        VLLM + "; deprecated by vLLM in favour of inter-token latency",
        "95th percentile time per output token, seconds",
        _quantile(0.95, "vllm:time_per_output_token_seconds"),
        "max: 0.1, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "vllm-v1/inter-token-latency-p95",
        "vLLM v0.10 and later",
        "95th percentile inter-token latency, seconds",
        _quantile(0.95, "vllm:inter_token_latency_seconds"),
        "max: 0.1, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "vllm-v1/e2e-latency-p95",
        VLLM,
        "95th percentile end-to-end request latency, seconds",
        _quantile(0.95, "vllm:e2e_request_latency_seconds"),
        "compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "vllm-v1/error-rate",
        VLLM,
        "share of /v1/* requests answered 5xx (0 to 1)",
        _error_ratio("http_requests_total", VLLM_HTTP),
        "max: 0.01, or compareTo: stable with maxDifference: 0.005",
    ),
    Preset(
        "vllm-v1/queue-length",
        VLLM,
        "requests waiting per server, averaged over the window",
        f"avg(avg_over_time(vllm:num_requests_waiting{{{SELECTOR}}}[{WINDOW}]))",
        "max: 10, or compareTo: stable with maxDifference: 2",
    ),
    Preset(
        "kserve-v1/predict-latency-p95",
        KSERVE,
        "95th percentile latency of predict(), seconds",
        _quantile(0.95, "request_predict_seconds"),
        "max: 0.25, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "kserve-v1/predict-latency-p99",
        KSERVE,
        "99th percentile latency of predict(), seconds",
        _quantile(0.99, "request_predict_seconds"),
        "max: 0.5, or compareTo: stable with maxRatio: 1.2",
    ),
    Preset(
        "http-v1/error-rate",
        HTTP + " (vLLM's OpenAI server among them; KServe's Python server exports no "
        "request counter)",
        "share of requests answered 5xx (0 to 1)",
        _error_ratio("http_requests_total"),
        "max: 0.01, or compareTo: stable with maxDifference: 0.005",
    ),
    Preset(
        "http-v1/latency-p95",
        HTTP,
        "95th percentile request latency, seconds (the instrumentator's default buckets are "
        "coarse: 0.1, 0.5, 1)",
        _quantile(0.95, "http_request_duration_seconds"),
        "compareTo: stable with maxRatio: 1.2",
    ),
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _CATALOGUE}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def preset_query(name: str) -> str:
    """The query template `name` stands for; KeyError for a name not in the catalogue."""
    return PRESETS[name].query


def unknown_preset_message(name: str) -> str:
    return f"unknown preset {name!r}; expected one of: {', '.join(PRESET_NAMES)}"
