"""AIDeployment (aigate.dev/v1alpha1): spec and status models, and thereby the CRD schema.

"Model" in field names means the machine-learning model being served; the pydantic classes
are the resource types. Field names are snake_case here and camelCase in the API
(kube-custom-resource's alias generator). Every constraint written here ends up in the CRD,
so the API server rejects bad input before the operator sees it; what JSON schema cannot say
is written as CEL (``x-kubernetes-validations``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from kube_custom_resource import CustomResource, schema
from pydantic import ConfigDict, Field, field_validator, model_validator

from aigate.api.durations import DURATION_PATTERN, cel_bounds, check_bounds, parse_duration
from aigate.api.presets import PRESET_NAMES, PRESETS, unknown_preset_message

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
# The rollout's phases; the transitions between them are declared in one table
# (aigate.core.rollout.table) and rendered in docs/state-machine.md.
Phase = Literal[
    "Pending",
    "AwaitingApproval",
    "Deploying",
    "Progressing",
    "Paused",
    "Promoting",
    "Verifying",
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


class _BoundedDurations(schema.BaseModel):
    """A model whose duration fields have a minimum and a maximum (DURATION_BOUNDS, by API
    name): refused at admission by CEL and, for a spec that reached the operator anyway, by
    the same check in Python. Zero or absurd durations never reach a reconcile."""

    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {}
    CEL_RULES: ClassVar[list[dict[str, str]]] = []  # further rules on the whole object
    model_config = ConfigDict(
        json_schema_extra=lambda schema_, model: schema_.setdefault(
            "x-kubernetes-validations", []
        ).extend([*model.duration_rules(), *model.CEL_RULES])
    )

    @model_validator(mode="after")
    def _durations_within_bounds(self) -> _BoundedDurations:
        for api_name, (low, high) in self.DURATION_BOUNDS.items():
            field = next(
                n for n, f in type(self).model_fields.items() if (f.alias or n) == api_name
            )
            value = getattr(self, field)
            if value is not None:
                try:
                    check_bounds(value, low, high)
                except ValueError as error:
                    raise ValueError(f"{api_name}: {error}") from None
        return self

    @classmethod
    def duration_rules(cls) -> list[dict[str, str]]:
        return [cel_bounds(name, low, high) for name, (low, high) in cls.DURATION_BOUNDS.items()]


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


class GovernanceSpec(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {"approvalTTL": ("1m", "2160h")}

    approval_ttl: Duration = Field(
        "168h",
        alias="approvalTTL",
        description="How long an approval may wait before it is used (approved-at + TTL).",
    )
    require_signed_approval: schema.Optional[bool] = Field(
        None,
        description="Unsigned approvals are insufficient: the approval and the risk "
        "acceptance must each carry an SSH signature (aigate.dev/approval-signature, "
        "aigate.dev/risk-acceptance-signature) by a registered key of approved-by / "
        "risk-accepted-by. Unset: on for riskTier high, off otherwise.",
    )


class Stage(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {"duration": ("0s", "720h")}

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


class PrometheusSpec(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {"timeout": ("100ms", "5m")}

    url: str = Field(..., pattern=r"^https?://[^\s]+$", max_length=2048)
    timeout: Duration = Field("10s", description="Timeout of one query.")
    bearer_token_secret: schema.Optional[SecretKeyRef] = Field(
        None, description="Secret key holding a bearer token (never logged)."
    )
    ca_secret: schema.Optional[SecretKeyRef] = Field(
        None, description="Secret key holding a PEM CA bundle for https."
    )
    insecure_skip_verify: bool = False
    allow_insecure_bearer_token: bool = Field(
        False,
        description="Send bearerTokenSecret's token over plain http:// too (refused unless set: "
        "anyone on the path could read it).",
    )


class TrafficGuard(schema.BaseModel):
    """Below this much traffic a measurement is inconclusive, so an idle canary cannot pass."""

    query: str = Field(..., min_length=1, max_length=4096)
    min_samples: float = Field(..., ge=0)


class MetricSpec(schema.BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.query) != has(self.preset)",
                    "a metric needs exactly one of query or preset",
                ),
                _cel(
                    "has(self.min) || has(self.max) || has(self.compareTo)",
                    "a metric needs min, max or compareTo",
                ),
                _cel(
                    "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "min must not exceed max",
                ),
                _cel(
                    "!has(self.compareTo) || has(self.maxRatio) || has(self.maxDifference) "
                    "|| has(self.minRatio) || has(self.minDifference)",
                    "compareTo needs maxRatio, maxDifference, minRatio or minDifference",
                ),
                _cel(
                    "has(self.compareTo) || !(has(self.maxRatio) || has(self.maxDifference) "
                    "|| has(self.minRatio) || has(self.minDifference))",
                    "maxRatio, maxDifference, minRatio and minDifference need compareTo: stable",
                ),
            ]
        }
    )

    name: str = Field(..., pattern=METRIC_NAME_PATTERN, max_length=63)
    query: schema.Optional[str] = Field(
        None,
        min_length=1,
        max_length=4096,
        description="PromQL returning exactly one sample. Placeholders: {{name}}, "
        "{{namespace}}, {{revision}} (its 12-character prefix, as the pods' aigate.dev/revision "
        "label carries it), {{version}}, {{track}} (values are escaped). Exactly one of query "
        "and preset.",
    )
    preset: schema.Optional[str] = Field(
        None,
        description="A named, versioned query template for a model server instead of query "
        "(`aigate presets` lists them; the revision covers the query it stands for).",
        json_schema_extra={"enum": list(PRESET_NAMES)},
    )
    min: schema.Optional[float] = Field(None, description="Pass when value >= min.")
    max: schema.Optional[float] = Field(None, description="Pass when value <= max.")
    on_no_data: Literal["Inconclusive", "Fail"] = Field(
        "Inconclusive", description="Verdict for an empty result or NaN. Never a pass."
    )
    on_error: Literal["Inconclusive", "Fail"] = Field(
        "Inconclusive",
        description="Verdict when Prometheus is unreachable or errors, or the query returns several series or ±Inf. Never a pass.",
    )
    traffic_guard: schema.Optional[TrafficGuard] = None
    compare_to: schema.Optional[Literal["stable"]] = Field(
        None,
        description="Baseline-relative: during canary stages the same query is also run for "
        "the stable track at the same instant and the canary is compared with it "
        "(inconclusive when either side has no data). Not applied in the post-promotion "
        "watch, where there is no other track; a metric with only relative bounds is not "
        "measured there.",
    )
    max_ratio: schema.Optional[float] = Field(
        None, ge=0, description="Pass when canary <= maxRatio x stable."
    )
    max_difference: schema.Optional[float] = Field(
        None, description="Pass when canary - stable <= maxDifference."
    )
    min_ratio: schema.Optional[float] = Field(
        None, ge=0, description="Pass when canary >= minRatio x stable."
    )
    min_difference: schema.Optional[float] = Field(
        None, description="Pass when canary - stable >= minDifference (may be negative)."
    )

    @field_validator("preset")
    @classmethod
    def _preset_is_known(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS:
            raise ValueError(unknown_preset_message(name))
        return name

    @model_validator(mode="after")
    def _bounds_make_sense(self) -> MetricSpec:
        """The CEL rules above, for a spec that reached the operator without the CRD's
        validation: a metric without any bound would pass whatever it measured."""
        if (self.query is None) == (self.preset is None):
            raise ValueError(
                "a metric needs exactly one of query or preset; found "
                + ("both" if self.query is not None else "neither")
            )
        relative = (self.max_ratio, self.max_difference, self.min_ratio, self.min_difference)
        has_relative = any(bound is not None for bound in relative)
        if has_relative and not self.compare_to:
            raise ValueError(
                "maxRatio, maxDifference, minRatio and minDifference need compareTo: stable"
            )
        if not (self.has_absolute_bounds() or self.compare_to):
            raise ValueError("a metric needs min, max or compareTo")
        if self.compare_to and not has_relative:
            raise ValueError("compareTo needs maxRatio, maxDifference, minRatio or minDifference")
        return self

    def is_relative(self) -> bool:
        return self.compare_to is not None

    def query_template(self) -> str:
        """The query to render: the one written, or the one its preset stands for."""
        if self.preset is not None:
            return PRESETS[self.preset].query
        return self.query or ""

    def has_absolute_bounds(self) -> bool:
        return self.min is not None or self.max is not None


class AnalysisSpec(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {
        "interval": ("1s", "1h"),
        "pauseTimeout": ("1s", "720h"),
    }

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
    min_passing_measurements: schema.Optional[int] = Field(
        None,
        ge=1,
        le=10000,
        description="Passing measurements each metric needs in a stage (and in the "
        "post-promotion watch) before it can pass. Default: half of the intervals that fit in "
        "the stage's duration, at least 1, so a stage inconclusive for most of its duration "
        "cannot pass on one lucky sample.",
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


class PostPromotionSpec(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {"monitorFor": ("0s", "720h")}

    monitor_for: Duration = Field(
        "0s", description="Bake period after promotion; a breach rolls back to the previous stable."
    )


WATCH_NEEDS_ABSOLUTE = (
    "postPromotion.monitorFor needs at least one metric with min or max: compareTo bounds "
    "have no stable track to compare with after promotion"
)


class EndpointPickerRef(schema.BaseModel):
    """The Endpoint Picker (Inference Extension) Service of one track's InferencePool."""

    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=63)
    port: int = Field(..., ge=1, le=65535, description="The Endpoint Picker Service's port.")


class EndpointPickers(schema.BaseModel):
    stable: EndpointPickerRef
    canary: EndpointPickerRef


class InferencePoolSettings(schema.BaseModel):
    """What aigate writes into each track's InferencePool (inference.networking.k8s.io/v1):
    the pool selects the track's pods on spec.service's target port; each track has its own
    Endpoint Picker, since an Endpoint Picker serves one pool."""

    endpoint_pickers: EndpointPickers
    failure_mode: Literal["FailOpen", "FailClose"] = Field(
        "FailClose", description="What the gateway does when the Endpoint Picker is down."
    )


class GatewayAPIRoute(schema.BaseModel):
    """An HTTPRoute the user owns, in the AIDeployment's namespace. aigate sets the weights
    of its two backendRefs in one rule (stable 100-W, canary W) and touches nothing else."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.backend) || self.backend != 'InferencePool' || "
                    "has(self.inferencePool)",
                    "backend InferencePool needs inferencePool.endpointPickers",
                )
            ]
        }
    )

    http_route: str = Field(
        ..., pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="The HTTPRoute's name."
    )
    rule: str = Field(
        "0",
        pattern=r"^([0-9]{1,2}|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$",
        max_length=63,
        description="The rule: its name (rules[].name), or its index as digits. Default: 0.",
    )
    backend: Literal["Service", "InferencePool"] = Field(
        "Service",
        description="Per-track backends aigate manages: Services <name>-stable and "
        "<name>-canary, or InferencePools of those names.",
    )
    inference_pool: schema.Optional[InferencePoolSettings] = None

    @model_validator(mode="after")
    def _pool_settings(self) -> GatewayAPIRoute:
        if self.backend == "InferencePool" and self.inference_pool is None:
            raise ValueError("backend InferencePool needs inferencePool.endpointPickers")
        return self


class TrafficSpec(schema.BaseModel):
    """How the canary gets its share. Without gatewayAPI: the replica ratio behind the one
    Service (the canary's share is canary pods / all pods). With gatewayAPI: exact weights."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.canaryReplicas) || has(self.gatewayAPI)",
                    "canaryReplicas needs gatewayAPI: with the replica router the canary's "
                    "size is its share",
                )
            ]
        }
    )

    gateway_api: schema.Optional[GatewayAPIRoute] = Field(
        None, alias="gatewayAPI", description="Exact weights through a Gateway API HTTPRoute."
    )
    canary_replicas: schema.Optional[int] = Field(
        None,
        ge=1,
        le=1000,
        description="A fixed canary size for every stage (a budget, e.g. scarce "
        "accelerators). Default: the stage weight's share of spec.replicas, rounded up.",
    )

    @model_validator(mode="after")
    def _budget_needs_gateway(self) -> TrafficSpec:
        if self.canary_replicas is not None and self.gateway_api is None:
            raise ValueError("canaryReplicas needs gatewayAPI")
        return self


class RolloutSpec(_BoundedDurations):
    DURATION_BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {"progressDeadline": ("1s", "24h")}
    CEL_RULES: ClassVar[list[dict[str, str]]] = [
        _cel(
            "!has(self.postPromotion) || !has(self.postPromotion.monitorFor) || "
            "duration(self.postPromotion.monitorFor) == duration('0s') || "
            "self.analysis.metrics.exists(m, has(m.min) || has(m.max))",
            WATCH_NEEDS_ABSOLUTE,
        )
    ]

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
    traffic: schema.Optional[TrafficSpec] = Field(
        None, description="The traffic router: replica ratio (default) or Gateway API."
    )

    @model_validator(mode="after")
    def _watch_has_absolute_metric(self) -> RolloutSpec:
        watching = parse_duration(self.post_promotion.monitor_for).total_seconds() > 0
        if watching and not any(m.has_absolute_bounds() for m in self.analysis.metrics):
            raise ValueError(WATCH_NEEDS_ABSOLUTE)
        return self


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


class SignatureCheck(schema.BaseModel):
    """An SSH (SSHSIG) signature on an approval or a risk acceptance, and what the operator
    found when it checked it against the registered approver keys."""

    signer: str = Field(..., description="The identity the signature claims (approved-by...).")
    signature: str = Field("", description="The armored SSHSIG as written in the annotation.")
    key_fingerprint: str = Field("", description="SHA256 fingerprint of the key that signed.")
    verified: bool = False
    problem: str = Field("", description="Why it did not verify; empty when verified.")


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
    approval_signature: schema.Optional[SignatureCheck] = Field(
        None, description="The check of aigate.dev/approval-signature, when present."
    )
    risk_signature: schema.Optional[SignatureCheck] = Field(
        None, description="The check of aigate.dev/risk-acceptance-signature, when present."
    )


class ChildRecord(schema.BaseModel):
    """A child aigate created, known by the UID the API server gave it (an ownerReference
    is a field anyone with edit rights can write) and by the digest of its content as
    stored after aigate's last write (any other difference is drift, reverted)."""

    uid: str = Field("", description="UID of the child aigate created.")
    digest: str = Field("", description="SHA-256 of its content after aigate's last write.")
    creating: str = Field(
        "",
        description="Set just before a create (the revision being created), so that a "
        "crash between the create and this record is recovered from.",
    )
    drift_noted: str = Field("", description="Digest of the drifted content last recorded.")


class ChildRecords(schema.BaseModel):
    legacy: bool = Field(
        False,
        description="Started from a status written before child records: children of "
        "the revisions it names are taken over until each is recorded.",
    )
    stable: schema.Optional[ChildRecord] = None
    canary: schema.Optional[ChildRecord] = None
    service: schema.Optional[ChildRecord] = None


class ApplyError(schema.BaseModel):
    """The API server refused a child object the operator built."""

    generation: int
    phase: str = Field("", description="The phase whose action was refused.")
    track: str = Field("", description="stable, canary or service.")
    message: str
    attempts: int = 1
    since: str = ""
    last_at: str = Field(
        "", description="When the last refusal happened (backoff counts from here)."
    )


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
    baseline_query: str = Field(
        "", description="compareTo: the stable track's query as sent, at the same instant."
    )
    baseline_value: str = Field("", description="compareTo: the stable track's value read.")
    lag_seconds: float = Field(
        0.0,
        description="How long after its due time the measurement was taken (0 for the first "
        "of an analysis).",
    )


class MetricCounters(schema.BaseModel):
    measurements: int = 0
    passes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    last: schema.Optional[MeasurementRecord] = None


class AnalysisState(schema.BaseModel):
    """Counters of one running analysis (a canary stage or the post-promotion watch)."""

    track: str = ""
    revision: str = Field("", description="The revision whose pods are measured.")
    stage_index: int = Field(-1, description="The canary stage measured; -1 for the watch.")
    started_at: str = ""
    last_measured_at: str = ""
    next_measurement_at: str = Field(
        "",
        description="When the next measurement is due: one interval after the last was due "
        "(a late measurement does not push the rest back).",
    )
    inconclusive_since: str = Field(
        "",
        description="Since when the analysis could not conclude (pauseTimeout counts from here).",
    )
    metrics: dict[str, MetricCounters] = Field(default_factory=dict)


class RevisionSnapshot(schema.BaseModel):
    """The content an approval vouched for (spec.model, template, service, rollout), kept so
    the operator can deploy, watch or restore that revision after the spec has moved on."""

    revision: str
    version: str
    content: schema.Dict[str, schema.Any] = Field(default_factory=dict)


class RolloutState(schema.BaseModel):
    """The rollout attempt in flight: a candidate revision on its way to stable."""

    attempt: int = Field(..., description="Sequence number of this attempt (status.attempts).")
    candidate: RevisionSnapshot
    started_at: str
    stage_index: int = Field(0, ge=0)
    stage: str = Field("", description="The name of stage stageIndex (for display).")
    weight: int = Field(0, description="The weight of stage stageIndex (for display).")
    canary_replicas: int = Field(0, description="The canary size last asked for.")
    waiting_since: str = Field(
        "",
        description="Since when the workload this phase waits for has not been rolled out: "
        "asked for its current size, or lost readiness. progressDeadline counts from here.",
    )
    ready_since: str = Field("", description="Since when the canary has been rolled out.")
    elapsed_seconds: float = Field(
        0, description="Time the stage ran with a rolled-out canary before readySince."
    )
    analysis: schema.Optional[AnalysisState] = None


class WatchState(schema.BaseModel):
    """The post-promotion watch of the serving revision."""

    revision: str
    started_at: str
    until: str
    analysis: AnalysisState
    warned: bool = Field(False, description="A Warning was posted that the watch cannot see.")


class RollbackTrigger(schema.BaseModel):
    """Why a rollback started: the metric with its value and threshold, the deadline, or the
    request."""

    kind: Literal["Metric", "Deadline", "Request", "PauseTimeout"]
    detail: str
    metric: str = ""
    value: str = ""
    threshold: str = ""
    baseline_value: str = Field("", description="compareTo: the stable track's value then.")
    request: str = ""


class RollbackState(schema.BaseModel):
    reason: str
    message: str
    revision: str = Field(..., description="The revision being rolled back.")
    version: str = ""
    target: RevisionSnapshot = Field(..., description="The version restored.")
    trigger: RollbackTrigger
    started_at: str


class RollbackSummary(schema.BaseModel):
    """The last completed rollback, for `kubectl describe`."""

    revision: str
    version: str = ""
    to_revision: str
    reason: str
    trigger: RollbackTrigger
    completed_at: str


class HandledRequest(schema.BaseModel):
    value: str
    handled_at: str
    by: str = ""
    outcome: str = ""


class Requests(schema.BaseModel):
    """The last value of each request annotation the operator handled (for display)."""

    promote: schema.Optional[HandledRequest] = None
    abort: schema.Optional[HandledRequest] = None
    retry: schema.Optional[HandledRequest] = None


class Transition(schema.BaseModel):
    from_phase: str
    to_phase: str
    reason: str
    message: str = ""
    time: str


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
    evidence: list[MeasurementRecord] = Field(
        default_factory=list,
        description="Empty in status: the AIRecord holds the evidence (`kubectl aigate history`).",
    )
    sequence: int = Field(0, description="The sequence of the AIRecord that holds this entry.")
    previous_digest: str = Field("", description="Empty in status: the AIRecord's chain link.")
    digest: str = Field("", description="digest of that AIRecord")


class RecordsState(schema.BaseModel):
    """Where the AIDeployment's chain of AIRecords stands (aigate.api.records). A
    decision's records are sealed into `outbox` with the decision's own status write, then
    created as AIRecord objects and removed from it: a crash in between loses nothing."""

    last_sequence: int = Field(0, description="Sequence of the last record sealed.")
    last_digest: str = Field("", description="Its digest (the next record's previousDigest).")
    last_approval_sequence: int = Field(0, description="The last ApprovalRecorded record.")
    last_breach_sequence: int = Field(0, description="The last rollback's record.")
    closed: bool = Field(False, description="DeploymentDeleted was sealed: the chain ends.")
    outbox: list[schema.Dict[str, schema.Any]] = Field(
        default_factory=list, description="Sealed AIRecord specs not yet created."
    )
    pending_measurements: list[MeasurementRecord] = Field(
        default_factory=list,
        description="Measurements not yet in a record (flushed at each transition and by size).",
    )


class RouteWeights(schema.BaseModel):
    """Backend weights aigate last wrote into a rule of an HTTPRoute."""

    route: str = Field(..., description="namespace/name of the HTTPRoute.")
    rule: str
    stable: int
    canary: int


class TrafficStatus(schema.BaseModel):
    """The traffic the canary gets. stageWeight is what the plan asks for; canaryPercent is
    the share it really gets: the ratio of Ready pods (replica router) or the weights read
    back from the HTTPRoute (Gateway API router)."""

    router: Literal["Replicas", "GatewayAPI"] = "Replicas"
    stage_weight: int = Field(0, description="The weight of the stage in flight (0: none).")
    canary_weight: int = Field(0, description="The canary weight aigate sets (Gateway API).")
    canary_percent: float = Field(0.0, description="The canary's real share, percent.")
    route: str = Field("", description="HTTPRoute namespace/name and rule (Gateway API).")
    found: str = Field("", description="The rule's weights as read back (Gateway API).")
    problem: str = Field("", description="Why the route cannot be used, if it cannot.")
    written: schema.Optional[RouteWeights] = Field(
        None, description="What aigate last wrote into the route (to tell others' edits)."
    )
    drift_noted: str = Field("", description="The foreign weights last recorded.")
    problem_noted: str = Field("", description="The route problem last recorded.")


class AIDeploymentStatus(schema.BaseModel):
    """Written by the operator only. Control state lives in explicit fields (serving,
    previous, rollout, watch, rollback, rolledBackRevisions, handledRequests); the display
    fields and the history are output and never read back to decide."""

    # kopf keeps its own bookkeeping under status.kopf; future fields must survive too.
    model_config = ConfigDict(extra="allow")

    observed_generation: int = 0
    revision: str = Field("", description="The full revision (SHA-256) an approval must name.")
    short_revision: str = Field("", description="Its first 12 characters, for display only.")
    phase: Phase = "Pending"
    # display: derived from the control state at the end of every decision
    stage: str = ""
    canary_weight: int = 0
    stable_revision: str = ""
    stable_version: str = ""
    canary_revision: str = ""
    canary_version: str = ""
    ready_replicas: int = 0
    canary_ready_replicas: int = 0
    # control state
    replicas: int = Field(
        0,
        description="The last spec.replicas the operator could read: what a vanished stable "
        "Deployment is recreated with while the spec cannot be used.",
    )
    serving: schema.Optional[RevisionSnapshot] = None
    previous: schema.Optional[RevisionSnapshot] = None
    rollout: schema.Optional[RolloutState] = None
    watch: schema.Optional[WatchState] = None
    rollback: schema.Optional[RollbackState] = None
    last_rollback: schema.Optional[RollbackSummary] = None
    attempts: int = 0
    recreating_stable: str = Field(
        "", description="Revision being recreated on a vanished stable Deployment (recorded once)."
    )
    rolled_back_revisions: list[str] = Field(default_factory=list)
    handled_requests: list[str] = Field(
        default_factory=list, description="Digests of every request value acted on (bounded)."
    )
    last_transition: schema.Optional[Transition] = None
    approval: schema.Optional[ApprovalRecord] = None
    apply_error: schema.Optional[ApplyError] = None
    children: schema.Optional[ChildRecords] = Field(
        None,
        description="The children aigate created; absent only in a status written by an "
        "aigate before child records.",
    )
    requests: Requests = Field(default_factory=Requests)
    traffic: TrafficStatus = Field(default_factory=TrafficStatus)
    recent_measurements: list[MeasurementRecord] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    records: RecordsState = Field(default_factory=RecordsState)
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description="The latest decisions (bounded in bytes); the AIRecords hold them all.",
    )


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
        {"name": "Revision", "type": "string", "jsonPath": ".status.shortRevision"},
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
