"""AIDeployment (aigate.dev/v1alpha1): spec and status models, and thereby the CRD schema.

"Model" in field names means the machine-learning model being served; the pydantic classes
are the resource types. Field names are snake_case here and camelCase in the API
(kube-custom-resource's alias generator). Every constraint written here ends up in the CRD,
so the API server rejects bad input before the operator sees it; what JSON schema cannot say
is written as CEL (``x-kubernetes-validations``).
"""

from __future__ import annotations

from typing import Literal

from kube_custom_resource import CustomResource, schema
from pydantic import ConfigDict, Field

from aigate.api.durations import DURATION_PATTERN

GROUP = "aigate.dev"
VERSION = "v1alpha1"
KIND = "AIDeployment"
PLURAL = "aideployments"

# A Kubernetes label value: model versions and names end up in labels and Prometheus queries.
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
METRIC_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

Duration = schema.constr(pattern=DURATION_PATTERN, max_length=32)
RiskTier = Literal["minimal", "limited", "high"]
Phase = Literal[
    "Pending",
    "AwaitingApproval",
    "Progressing",
    "Paused",
    "Promoting",
    "Stable",
    "RollingBack",
    "RolledBack",
    "Failed",
]


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    validation = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


class ModelInfo(schema.BaseModel):
    """The model version being deployed and the facts a reviewer needs about it."""

    name: str = Field(
        ..., pattern=LABEL_VALUE_PATTERN, max_length=63, description="Model name (a label value)."
    )
    version: str = Field(
        ...,
        pattern=LABEL_VALUE_PATTERN,
        max_length=63,
        description="Model version, e.g. 2.4.0 (a label value; shown in the VERSION column).",
    )
    risk_tier: RiskTier = Field(..., description="Risk tier assigned by the risk assessment.")
    owner: str = Field(..., min_length=1, max_length=253, description="Accountable team or person.")
    intended_use: str = Field(
        ..., min_length=1, max_length=4096, description="What the model is approved to be used for."
    )
    limitations: list[schema.constr(max_length=1024)] = Field(
        default_factory=list, max_length=64, description="Known limitations, recorded for review."
    )


class ContainerSketch(schema.BaseModel):
    """A container of the pod template. Only name and image are checked here; every other
    field of a Kubernetes Container is kept as written and validated when the operator
    creates the Deployment."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=63)
    image: str = Field(..., min_length=1, max_length=1024)


class PodSpecSketch(schema.BaseModel):
    model_config = ConfigDict(extra="allow")

    containers: list[ContainerSketch] = Field(..., min_length=1, max_length=32)


class PodTemplateMetadata(schema.BaseModel):
    model_config = ConfigDict(extra="allow")

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(schema.BaseModel):
    """A PodTemplateSpec: the model server."""

    model_config = ConfigDict(extra="allow")

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    spec: PodSpecSketch


class ServiceSpec(schema.BaseModel):
    port: int = Field(..., ge=1, le=65535, description="Port the Service exposes.")
    target_port: int = Field(
        0, ge=0, le=65535, description="Container port; 0 (the default) means the same as port."
    )


class GovernanceSpec(schema.BaseModel):
    approval_ttl: Duration = Field(
        "168h",
        alias="approvalTTL",
        description="How long an approval may wait before it is used (approved-at + TTL).",
    )


class Stage(schema.BaseModel):
    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=63)
    weight: int = Field(..., ge=1, le=100, description="Share of replicas (percent) on the canary.")
    duration: Duration = Field(
        "0s", description="How long the stage must run with every metric passing."
    )
    manual_promotion: bool = Field(
        False, description="Wait for the aigate.dev/promote annotation after the stage passed."
    )


class SecretKeyRef(schema.BaseModel):
    name: str = Field(..., pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = Field(..., min_length=1, max_length=253)


class PrometheusSpec(schema.BaseModel):
    url: str = Field(..., pattern=r"^https?://[^\s]+$", max_length=2048)
    timeout: Duration = Field("10s", description="Timeout of one query.")
    bearer_token_secret: schema.Optional[SecretKeyRef] = Field(
        None, description="Secret key holding a bearer token (never logged)."
    )
    ca_secret: schema.Optional[SecretKeyRef] = Field(
        None, description="Secret key holding a PEM CA bundle for https."
    )
    insecure_skip_verify: bool = False


class TrafficGuard(schema.BaseModel):
    """Below this much traffic a measurement is inconclusive, so an idle canary cannot pass."""

    query: str = Field(..., min_length=1, max_length=4096)
    min_samples: float = Field(..., ge=0)


class MetricSpec(schema.BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.min) || has(self.max)", "a metric needs min, max or both"),
                _cel(
                    "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "min must not exceed max",
                ),
            ]
        }
    )

    name: str = Field(..., pattern=METRIC_NAME_PATTERN, max_length=63)
    query: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="PromQL returning exactly one sample. Placeholders: {{name}}, "
        "{{namespace}}, {{revision}}, {{version}}, {{track}} (values are escaped).",
    )
    min: schema.Optional[float] = Field(None, description="Pass when value >= min.")
    max: schema.Optional[float] = Field(None, description="Pass when value <= max.")
    on_no_data: Literal["Inconclusive", "Fail"] = Field(
        "Inconclusive", description="Verdict for an empty result or NaN. Never a pass."
    )
    on_error: Literal["Inconclusive", "Fail"] = Field(
        "Inconclusive", description="Verdict when Prometheus is unreachable or errors."
    )
    traffic_guard: schema.Optional[TrafficGuard] = None


class AnalysisSpec(schema.BaseModel):
    prometheus: PrometheusSpec
    interval: Duration = Field("30s", description="Time between measurements.")
    failure_limit: int = Field(
        2, ge=0, le=1000, description="Failed measurements tolerated per stage."
    )
    consecutive_failure_limit: schema.Optional[int] = Field(
        None, ge=1, le=1000, description="Consecutive failed measurements that trigger rollback."
    )
    inconclusive_limit: int = Field(
        3, ge=0, le=1000, description="Consecutive inconclusive measurements before Paused."
    )
    pause_timeout: schema.Optional[Duration] = Field(
        None, description="How long Paused (inconclusive) may last before onPauseTimeout applies."
    )
    on_pause_timeout: Literal["Hold", "Rollback"] = "Hold"
    metrics: list[MetricSpec] = Field(
        ...,
        min_length=1,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(m, self.exists_one(n, n.name == m.name))",
                    "metric names must be unique",
                )
            ]
        },
    )


class PostPromotionSpec(schema.BaseModel):
    monitor_for: Duration = Field(
        "0s", description="Bake period after promotion; a breach rolls back to the previous stable."
    )


class RolloutSpec(schema.BaseModel):
    progress_deadline: Duration = Field(
        "10m", description="Canary pods not Ready within this time trigger a rollback."
    )
    stages: list[Stage] = Field(
        ...,
        min_length=1,
        max_length=20,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(s, self.exists_one(t, t.name == s.name))",
                    "stage names must be unique",
                ),
                _cel("self.map(s, s.weight).isSorted()", "stage weights must not decrease"),
                _cel(
                    "self.all(s, self.exists_one(t, t.weight == s.weight))",
                    "stage weights must be distinct",
                ),
                _cel("self[size(self) - 1].weight == 100", "the last stage must have weight 100"),
            ]
        },
    )
    analysis: AnalysisSpec
    post_promotion: PostPromotionSpec = Field(default_factory=PostPromotionSpec)


class AIDeploymentSpec(schema.BaseModel):
    model: ModelInfo
    replicas: int = Field(1, ge=1, le=1000, description="Replicas of the serving version.")
    template: PodTemplate
    service: ServiceSpec
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    rollout: RolloutSpec


class Condition(schema.BaseModel):
    """A kstatus-style condition (Ready, Reconciling, Stalled, Authorized)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


class ApprovalRecord(schema.BaseModel):
    """The approval the operator accepted, as it was when accepted."""

    approved_by: str
    approved_at: str
    revision: str
    risk_acceptance: str
    risk_accepted_by: str
    conditions: str = ""
    recorded_at: str = ""
    written_by: str = Field("", description="The client (field manager) that wrote approved-by.")
    asserted_through_git: bool = Field(
        False, description="Written by a GitOps controller: Git history says who approved."
    )


class ApplyError(schema.BaseModel):
    """The API server refused a child built from this generation of the spec."""

    generation: int
    message: str


Verdict = Literal["Pass", "Fail", "Inconclusive"]


class MeasurementRecord(schema.BaseModel):
    """One metric measured once: the evidence a stage decision rests on."""

    metric: str
    track: str
    query: str = Field(..., description="The query as sent, placeholders resolved.")
    value: str = Field(
        "", description="The value read, as text (NaN and Inf included); empty if none."
    )
    threshold: str = Field("", description="What would pass, e.g. '<= 0.01'.")
    verdict: Verdict
    reason: str = ""
    time: str = Field(..., description="The evaluation time the query was pinned to.")


class MetricCounters(schema.BaseModel):
    measurements: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    last: schema.Optional[MeasurementRecord] = None


class AnalysisState(schema.BaseModel):
    """Counters of the running analysis (a canary stage or the post-promotion watch)."""

    track: str = ""
    started_at: str = ""
    last_measured_at: str = ""
    paused_at: str = ""
    metrics: dict[str, MetricCounters] = Field(default_factory=dict)


class StableSnapshot(schema.BaseModel):
    """The version that served before the last promotion: what a post-promotion rollback restores."""

    revision: str
    version: str
    template: schema.Dict[str, schema.Any] = Field(default_factory=dict)


class HandledRequest(schema.BaseModel):
    value: str
    handled_at: str
    by: str = ""
    outcome: str = ""


class Requests(schema.BaseModel):
    """The last value of each request annotation the operator acted on."""

    promote: schema.Optional[HandledRequest] = None
    abort: schema.Optional[HandledRequest] = None
    retry: schema.Optional[HandledRequest] = None


class RollbackState(schema.BaseModel):
    reason: str
    message: str
    revision: str = Field(..., description="The revision being rolled back.")
    to_revision: str = Field(..., description="The revision restored.")
    started_at: str


class HistoryEntry(schema.BaseModel):
    model_config = ConfigDict(extra="allow")

    time: str
    from_phase: str = ""
    to_phase: str = ""
    revision: str = ""
    version: str = ""
    stage: str = ""
    reason: str = ""
    message: str = ""
    evidence: list[MeasurementRecord] = Field(default_factory=list)
    previous_digest: str = Field("", description="digest of the entry before this one")
    digest: str = Field("", description="SHA-256 of this entry chained to previousDigest")


class AIDeploymentStatus(schema.BaseModel):
    # kopf keeps its own bookkeeping under status.kopf; future fields must survive too.
    model_config = ConfigDict(extra="allow")

    observed_generation: int = 0
    revision: str = ""
    phase: Phase = "Pending"
    stage: str = ""
    canary_weight: int = 0
    stable_revision: str = ""
    stable_version: str = ""
    canary_revision: str = ""
    canary_version: str = ""
    ready_replicas: int = 0
    canary_ready_replicas: int = 0
    stage_index: int = 0
    stage_started_at: str = ""
    stage_ready_at: str = ""
    promoted_at: str = ""
    monitor_until: str = ""
    previous_stable: schema.Optional[StableSnapshot] = None
    rolled_back_revision: str = ""
    rollback: schema.Optional[RollbackState] = None
    approval: schema.Optional[ApprovalRecord] = None
    apply_error: schema.Optional[ApplyError] = None
    requests: Requests = Field(default_factory=Requests)
    analysis: schema.Optional[AnalysisState] = None
    recent_measurements: list[MeasurementRecord] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)


class AIDeployment(
    CustomResource,
    version=VERSION,
    kind=KIND,
    plural_name=PLURAL,
    short_names=["aid"],
    subresources={"status": {}},
    printer_columns=[
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.model.version"},
        {"name": "Revision", "type": "string", "jsonPath": ".status.revision"},
        {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canaryReadyReplicas"},
        {"name": "Approved-By", "type": "string", "jsonPath": ".status.approval.approvedBy"},
    ],
):
    """A model-serving workload and the governed path by which it may reach production."""

    spec: AIDeploymentSpec
    status: AIDeploymentStatus = Field(default_factory=AIDeploymentStatus)
