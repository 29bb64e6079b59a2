"""`kubectl aigate`: the SRE's and approver's view of AIDeployments.

    kubectl aigate status  NAME [-n NS]        phase, stage, approval, latest metrics, recent history
    kubectl aigate history NAME [-n NS] [--uid UID] [--records-namespace NS] [--measurements]
                                               every recorded decision with its evidence,
                                               from the AIRecords (status keeps the latest);
                                               --measurements: every measurement too
    kubectl aigate verify  NAME [-n NS] [--uid UID] [--records-namespace NS]
                                               check every AIRecord's signature against the
                                               operator's published key, the chain, and that
                                               no sequence is missing (start, middle, end);
                                               --uid for a deleted AIDeployment
    kubectl aigate records NAME [-n NS] [--uid UID] -o json
                                               export the records and the public keys (a
                                               List), for `aigate verify --from` offline
    kubectl aigate presets [PRESET]... [-o json]
                                               the metric presets a spec can name (offline)
    kubectl aigate approve NAME [--conditions TEXT] [--sign [--key PATH]]
                                               shows model, images, plan, thresholds and the
                                               change against what serves; asks (or --yes);
                                               signs as you, for exactly the revision shown;
                                               --sign adds an SSH signature of the approval
                                               statement (ssh-keygen -Y sign: a key file, or
                                               a .pub whose key is in your ssh-agent)
    kubectl aigate accept-risk NAME --reference RISK-1 [--sign [--key PATH]]
                                               the same review, then the risk acceptance,
                                               signed as you (risk acceptors are a separate
                                               group from approvers by default)
    kubectl aigate keys [--key PATH] [--registry NS/NAME]
                                               your key's allowed_signers line, how a platform
                                               admin registers it, and the registered keys
    kubectl aigate promote NAME [--stage S]    continue a stage waiting for promotion
    kubectl aigate abort   NAME --reason TEXT  roll back now
    kubectl aigate retry   NAME                run a rolled-back revision again
    kubectl aigate report  NAME [--since DATE] [-o html|md|json] [--output FILE]
                                               the evidence pack from the AIDeployment's
                                               AIRecords (also after it was deleted)

Installed as the `kubectl-aigate` console script, so kubectl finds it on PATH. It uses the
current kubeconfig (or --kubeconfig/--context). Requests only write annotations, exactly as
`kubectl annotate` would: the operator and the cluster's admission policy do the rest.
promote, abort and retry name the full revision in flight (from status) and you, as the
cluster knows you: `<stage>@<revision> by=<you> <time>`, `@<revision> by=<you> <time>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from aigate import evidence
from aigate.adapters import signing
from aigate.adapters.kube import RejectedError
from aigate.adapters.records import RecordStore
from aigate.api.records import MeasurementsRecorded
from aigate.api.v1alpha1 import GROUP, PLURAL, VERSION, AIDeploymentSpec
from aigate.cli import list_presets
from aigate.core import gate
from aigate.core.records import End
from aigate.core.revision import compute_revision, vouched_content
from aigate.core.statements import SSHSIG_NAMESPACE, statements_of
from aigate.report.command import add_report_arguments, write_report

# ---- rendering (pure) ---------------------------------------------------------------------


def _row(label: str, value: object) -> str:
    return f"{label + ':':<16}{value}"


def render_status(obj: dict[str, Any], history_lines: int = 8) -> str:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    model = spec.get("model") or {}
    lines = [
        _row("AIDeployment", f"{meta.get('namespace')}/{meta['name']}"),
        _row(
            "Model",
            f"{model.get('name')} {model.get('version')} (risk tier {model.get('riskTier')}, "
            f"owner {model.get('owner')})",
        ),
        _row("Phase", status.get("phase", "Pending")),
        _row(
            "Revision",
            f"{status.get('revision', '?')} (spec generation {meta.get('generation')}, "
            f"observed {status.get('observedGeneration', 0)})",
        ),
        _row(
            "Serving",
            f"{status.get('stableVersion') or '-'} (revision {status.get('stableRevision') or '-'}), "
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', '?')} Ready",
        ),
    ]
    if status.get("canaryRevision"):
        lines.append(
            _row(
                "Canary",
                f"{status.get('canaryVersion')} (revision {status['canaryRevision']}), "
                f"{status.get('canaryReadyReplicas', 0)} Ready, stage "
                f"{status.get('stage')} at weight {status.get('canaryWeight')}%",
            )
        )
    elif status.get("stage"):
        lines.append(_row("Stage", status["stage"]))
    watch = status.get("watch") or {}
    if status.get("phase") == "Verifying" and watch.get("until"):
        lines.append(_row("Watching until", watch["until"]))
    approval = status.get("approval")
    if approval:
        text = (
            f"revision {approval['revision']} by {approval['approvedBy']} at {approval['approvedAt']}; "
            f"risk {approval['riskAcceptance']} accepted by {approval['riskAcceptedBy']}"
        )
        if approval.get("conditions"):
            text += f"; conditions: {approval['conditions']}"
        lines.append(_row("Approval", text))
    last = status.get("lastRollback") or {}
    if last:
        trigger = (last.get("trigger") or {}).get("detail", "")
        lines.append(
            _row(
                "Rolled back",
                f"revision {last.get('revision')} to {last.get('toRevision')} at "
                f"{last.get('completedAt')} ({last.get('reason')}: {trigger})",
            )
        )
    refused = status.get("rolledBackRevisions") or []
    if refused:
        lines.append(
            _row(
                "Refused",
                f"{len(refused)} rolled-back revision(s), not retried until the spec changes "
                f"or aigate.dev/retry",
            )
        )
    lines.append("Conditions:")
    for condition in status.get("conditions") or []:
        reason = f" {condition['reason']}" if condition.get("reason") else ""
        lines.append(f"  {condition['type']:<12} {condition['status']:<6}{reason}")
        shown = condition["status"] == "True" or condition["type"] == "Authorized"
        if shown and condition.get("message"):
            lines.append(f"    {condition['message']}")
    analysis = _running_analysis(status)
    metrics = analysis.get("metrics") or {}
    if metrics:
        lines.append(f"Analysis ({analysis.get('track')} track):")
        for name, counters in metrics.items():
            last = counters.get("last") or {}
            lines.append(
                f"  {name:<22} {last.get('verdict', '-'):<13} value {last.get('value') or '-':<10} "
                f"{last.get('threshold', ''):<10} fails {counters.get('failures', 0)}, "
                f"inconclusive in a row {counters.get('consecutiveInconclusive', 0)}"
            )
    history = status.get("history") or []
    if history:
        lines.append(f"History (last {min(history_lines, len(history))} of {len(history)}):")
        lines.extend(render_history(history[-history_lines:], evidence=False).splitlines())
    return "\n".join(lines)


def _running_analysis(status: dict[str, Any]) -> dict[str, Any]:
    """The analysis that runs now: the canary stage's, or the post-promotion watch's."""
    phase = status.get("phase")
    if phase in ("Progressing", "Paused"):
        return (status.get("rollout") or {}).get("analysis") or {}
    if phase == "Verifying":
        return (status.get("watch") or {}).get("analysis") or {}
    return {}


def render_history(history: list[dict[str, Any]], evidence: bool = True) -> str:
    lines = []
    for entry in history:
        lines.append(
            f"  {entry.get('time', '')}  {entry.get('toPhase', ''):<16} {entry.get('reason', ''):<24} "
            f"{entry.get('version', '')} {entry.get('message', '')}"
        )
        if evidence:
            for record in entry.get("evidence") or []:
                lines.append(
                    f"      {record['metric']}: {record['verdict']} value {record.get('value') or '-'} "
                    f"({record.get('threshold', '')}) at {record.get('time', '')}: {record.get('reason', '')}"
                )
    return "\n".join(lines)


def history_entries(
    records: list[dict[str, Any]], summary: list[dict[str, Any]], measurements: bool = False
) -> list[dict[str, Any]]:
    """The decisions from the record specs (in sequence order; measurement batches only if
    asked), then those status names whose records are not written yet, marked so."""
    shown = [r for r in records if measurements or r.get("reason") != MeasurementsRecorded]
    last = max((int(r.get("sequence", 0)) for r in records), default=0)
    pending = [
        {**entry, "message": f"{entry.get('message', '')} (record not written yet)".strip()}
        for entry in summary
        if int(entry.get("sequence", 0)) > last
    ]
    return shown + pending


# ---- approve: what is being approved (pure) -------------------------------------------------


def render_approval(
    name: str, spec: AIDeploymentSpec, revision: str, serving: dict[str, Any] | None
) -> str:
    """Everything an approval vouches for, and what changed against the serving revision."""
    model, plan = spec.model, spec.rollout
    content = vouched_content(spec)
    lines = [
        _row("AIDeployment", name),
        _row(
            "Model",
            f"{model.name} {model.version} (risk tier {model.risk_tier}, owner {model.owner})",
        ),
        _row("Revision", revision),
        "Images:",
        *[f"  {kind} {c.get('name')}: {c.get('image')}" for kind, c in _containers(content)],
        f"Plan (progressDeadline {plan.progress_deadline}, approvalTTL "
        f"{spec.governance.approval_ttl}, post-promotion watch {plan.post_promotion.monitor_for}):",
    ]
    for stage in plan.stages:
        manual = ", manual promotion" if stage.manual_promotion else ""
        lines.append(f"  {stage.name}: weight {stage.weight}%, {stage.duration}{manual}")
    analysis = plan.analysis
    consecutive = analysis.consecutive_failure_limit
    lines.append(
        f"Thresholds (every {analysis.interval}, failureLimit {analysis.failure_limit}"
        + (f", consecutiveFailureLimit {consecutive}" if consecutive is not None else "")
        + f", inconclusiveLimit {analysis.inconclusive_limit}; Prometheus {analysis.prometheus.url}):"
    )
    for metric in analysis.metrics:
        bounds = [f"min {metric.min:g}" if metric.min is not None else ""]
        bounds.append(f"max {metric.max:g}" if metric.max is not None else "")
        bounds.append(
            f"onNoData {metric.on_no_data}" if metric.on_no_data != "Inconclusive" else ""
        )
        bounds.append(f"onError {metric.on_error}" if metric.on_error != "Inconclusive" else "")
        lines.append(f"  {metric.name}: {', '.join(b for b in bounds if b)}")
        if metric.preset is not None:
            lines.append(f"    preset: {metric.preset}")
        lines.append(f"    query: {metric.query_template()}")
        if metric.traffic_guard is not None:
            guard = metric.traffic_guard.model_dump(mode="json", by_alias=True)
            lines.append(f"    traffic guard: {_shown(guard)}")
    lines.extend(_changes(content, serving))
    return "\n".join(lines)


def _containers(content: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    pod = (content.get("template") or {}).get("spec") or {}
    return [("init", c) for c in pod.get("initContainers") or []] + [
        ("container", c) for c in pod.get("containers") or []
    ]


def _changes(content: dict[str, Any], serving: dict[str, Any] | None) -> list[str]:
    if not serving or not serving.get("content"):
        return ["Changes: nothing serves yet; this is the first version"]
    header = f"Changes against the serving version {serving.get('version')} (revision {serving.get('revision')}):"
    diff = content_diff(serving["content"], content)
    return [header, *(f"  {line}" for line in diff)] if diff else [header, "  none"]


def content_diff(old: Any, new: Any, path: str = "spec") -> list[str]:
    """Field by field, down to the leaves: `~ path: old -> new`, `+ path: new`, `- path: old`.
    List items that have a name are matched by name (containers[server].image), others by
    position. Values are shown whole: an approver must see the whole changed query."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _mapping_diff(old, new, lambda key: f"{path}.{key}")
    if isinstance(old, list) and isinstance(new, list):
        return _list_diff(old, new, path)
    if old == new:
        return []
    if isinstance(old, dict | list) or isinstance(new, dict | list):
        return _leaves("-", path, old) + _leaves("+", path, new)
    return [f"~ {path}: {_shown(old)} -> {_shown(new)}"]


def _mapping_diff(
    old: dict[str, Any], new: dict[str, Any], child_path: Callable[[str], str]
) -> list[str]:
    lines: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        child = child_path(key)
        if key not in new:
            lines += _leaves("-", child, old[key])
        elif key not in old:
            lines += _leaves("+", child, new[key])
        else:
            lines += content_diff(old[key], new[key], child)
    return lines


def _list_diff(old: list[Any], new: list[Any], path: str) -> list[str]:
    old_keyed, new_keyed = _by_name(old), _by_name(new)
    if old_keyed is not None and new_keyed is not None:
        lines = []
        if list(old_keyed) != list(new_keyed) and set(old_keyed) == set(new_keyed):
            lines.append(f"~ {path}: order {list(old_keyed)} -> {list(new_keyed)}")
        return lines + _mapping_diff(old_keyed, new_keyed, lambda key: f"{path}[{key}]")
    common = min(len(old), len(new))
    lines = [line for i in range(common) for line in content_diff(old[i], new[i], f"{path}[{i}]")]
    lines += [
        line for i in range(common, len(old)) for line in _leaves("-", f"{path}[{i}]", old[i])
    ]
    lines += [
        line for i in range(common, len(new)) for line in _leaves("+", f"{path}[{i}]", new[i])
    ]
    return lines


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """Items keyed by their unique `name` (containers, env, stages, metrics), else None."""
    names = [i.get("name") if isinstance(i, dict) else None for i in items]
    if names and all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
        return dict(zip(names, items, strict=True))
    return None


def _leaves(sign: str, path: str, value: Any) -> list[str]:
    """An added or removed value, one line per leaf."""
    if isinstance(value, dict) and value:
        return [line for k in sorted(value) for line in _leaves(sign, f"{path}.{k}", value[k])]
    if isinstance(value, list) and value:
        keyed = _by_name(value)
        if keyed is not None:
            return [line for k, v in keyed.items() for line in _leaves(sign, f"{path}[{k}]", v)]
        return [line for i, v in enumerate(value) for line in _leaves(sign, f"{path}[{i}]", v)]
    return [f"{sign} {path}: {_shown(value)}"]


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def approval_patch(
    revision: str,
    by: str,
    risk_acceptance: str,
    risk_accepted_by: str,
    conditions: str,
    now: datetime,
) -> dict[str, Any]:
    """The approval of `revision` by `by`; the risk acceptance too when given (where one
    person may do both: the chart's default policy keeps them apart, see accept-risk)."""
    annotations = {
        gate.APPROVED_BY: by,
        gate.APPROVED_AT: gate.format_rfc3339(now),
        gate.APPROVED_REVISION: revision,
    }
    if risk_acceptance or risk_accepted_by:
        annotations[gate.RISK_ACCEPTANCE] = risk_acceptance
        annotations[gate.RISK_ACCEPTED_BY] = risk_accepted_by
    if conditions:
        annotations[gate.APPROVAL_CONDITIONS] = conditions
    return {"metadata": {"annotations": annotations}}


def risk_patch(reference: str, by: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {gate.RISK_ACCEPTANCE: reference, gate.RISK_ACCEPTED_BY: by}}
    }


def request_value(
    kind: str, now_value: str, by: str, revision: str, stage: str = "", reason: str = ""
) -> str:
    """A new value for a request annotation (the operator acts once per value), bound to the
    full revision (and stage) it is for and to the requesting user, in the shape the chart's
    policy admits: `<stage>@<revision> by=<user> <time>` for promote, `@<revision> by=<user>
    <time> [reason]` for retry and abort (an abort with no revision in flight names none)."""
    target = f"{stage}@{revision}" if kind == "promote" else (f"@{revision}" if revision else "")
    return " ".join(part for part in (target, f"by={by}", now_value, reason) if part)


def request_target(kind: str, status: dict[str, Any]) -> tuple[str, str]:
    """(revision, stage) a request is for, from status: a promote is for the rollout in
    flight at its current stage, an abort for the rollout or watch in flight, a retry for
    the spec's revision (the one rolled back)."""
    rollout = status.get("rollout") or {}
    in_flight = (rollout.get("candidate") or {}).get("revision", "")
    if kind == "promote":
        return in_flight, rollout.get("stage") or status.get("stage", "")
    if kind == "abort":
        return in_flight or (status.get("watch") or {}).get("revision", ""), ""
    return status.get("revision", ""), ""


# ---- I/O ------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    return client.CustomObjectsApi(api), api


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return args.namespace
    try:
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        if args.context:
            active = next(c for c in contexts if c["name"] == args.context)
        return active["context"].get("namespace") or "default"
    except (config.ConfigException, StopIteration, KeyError, TypeError):
        return "default"


def _get(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _annotate(custom: Any, namespace: str, name: str, patch: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)


def _whoami(api: Any) -> str:
    review = client.AuthenticationV1Api(api).create_self_subject_review({})
    return review.status.user_info.username


def _now_value() -> str:
    return gate.format_rfc3339(datetime.now(UTC))


# ---- report ------------------------------------------------------------------------------


def _report(args: argparse.Namespace, custom: Any, api: Any, namespace: str) -> int:
    """Records of NAME in `namespace` (listed from --records-namespace), the AIDeployment as
    it is now if it still exists, and the report written from them."""
    try:
        current = _get(custom, namespace, args.name)
    except ApiException as error:
        if error.status != 404:
            raise
        current = None
    # By name, not UID: the AIDeployment may be gone (write_report keeps NAME's records).
    items = RecordStore(api, args.records_namespace).list()
    items += _public_keys(api, args.records_namespace)
    last = ((current or {}).get("status") or {}).get("records", {}).get("lastSequence")
    end = End(last_sequence=int(last) if last is not None else None)
    return write_report(
        items,
        args.name,
        namespace,
        current,
        args.since,
        args.output_format,
        args.output,
        looked_up=True,
        verified=evidence.for_report(items, args.name, namespace, end),
    )


# ---- approve -----------------------------------------------------------------------------

MAX_WRITE_ATTEMPTS = 5  # status writes by the operator also move resourceVersion


def _spec_of(obj: dict[str, Any]) -> tuple[AIDeploymentSpec | None, str]:
    try:
        return AIDeploymentSpec.model_validate(obj.get("spec") or {}), ""
    except ValidationError as error:
        first = error.errors()[0]
        return None, f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _confirm(question: str) -> bool:
    print(question, flush=True)  # a line of its own: scripts and tests can wait for it
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _approve(
    args: argparse.Namespace, custom: Any, api: Any, namespace: str, obj: dict[str, Any]
) -> int:
    """Shows what the spec's revision is, asks, and writes an approval of exactly that
    revision, only while the spec still has it (re-read, written with its resourceVersion)."""
    where = f"{namespace}/{args.name}"
    spec, problem = _spec_of(obj)
    if spec is None:
        print(f"{where}: the spec cannot be approved: {problem}", file=sys.stderr)
        return 1
    revision = compute_revision(spec)
    if args.revision and args.revision != revision:
        print(
            f"refused: --revision {args.revision} is not the spec's revision {revision}",
            file=sys.stderr,
        )
        return 1
    status = obj.get("status") or {}
    print(render_approval(where, spec, revision, status.get("serving")))
    if status.get("revision") and status["revision"] != revision:
        print(
            f"note: status.revision is {status['revision']} (the operator has not caught up "
            f"with the spec yet); this approves the spec's revision {revision}"
        )
    verb = "Accept the risk of" if args.command == "accept-risk" else "Approve"
    if not args.yes and not _confirm(f"{verb} revision {revision} of {where}? [y/N]"):
        print("nothing written", file=sys.stderr)
        return 1
    by = args.by or _whoami(api)
    for _ in range(MAX_WRITE_ATTEMPTS):
        written = _write_approval(args, custom, namespace, revision, by)
        if written is not None:
            return written
    print(f"refused: {where} kept changing while writing; nothing written", file=sys.stderr)
    return 1


def _write_approval(
    args: argparse.Namespace, custom: Any, namespace: str, revision: str, by: str
) -> int | None:
    """0 written, 1 refused, None: the object moved meanwhile (409), read it again."""
    fresh = _get(custom, namespace, args.name)
    fresh_spec, problem = _spec_of(fresh)
    now = compute_revision(fresh_spec) if fresh_spec is not None else f"none ({problem})"
    if now != revision:
        print(
            f"refused: the spec of {namespace}/{args.name} changed after it was shown: you "
            f"reviewed revision {revision}, the spec now has revision {now}; nothing written, "
            f"run approve again to review it",
            file=sys.stderr,
        )
        return 1
    if args.command == "accept-risk":
        patch = risk_patch(args.reference, by)
    else:
        patch = approval_patch(
            revision,
            by,
            args.risk_acceptance,
            args.risk_accepted_by,
            args.conditions,
            datetime.now(UTC),
        )
    annotations = patch["metadata"]["annotations"]
    annotations.update(_signature(args, fresh, fresh_spec, revision, annotations))
    patch["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
    try:
        _annotate(custom, namespace, args.name, patch)
    except ApiException as error:
        if error.status == 409:
            return None
        raise
    what = "accepted the risk of" if args.command == "accept-risk" else "approved"
    print(f"{what} revision {revision} of {namespace}/{args.name} as {by}")
    return 0


# ---- signing ---------------------------------------------------------------------------------


class SigningError(Exception):
    """Nothing was written: the statement could not be signed."""


def default_key() -> Path:
    """The user's SSH key, as ssh would pick it (Ed25519 first)."""
    for name in ("id_ed25519", "id_rsa"):
        path = Path.home() / ".ssh" / name
        if path.exists() or path.with_suffix(".pub").exists():
            return path if path.exists() else path.with_suffix(".pub")
    raise SigningError("no SSH key in ~/.ssh (id_ed25519, id_rsa): name one with --key PATH")


def ssh_sign(statement: str, key: Path) -> str:
    """`ssh-keygen -Y sign` over the statement on stdin; with a .pub key file the private
    key comes from the ssh-agent (SSH_AUTH_SOCK). A passphrase is asked on the terminal."""
    result = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", SSHSIG_NAMESPACE],
        input=statement.encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or b"BEGIN SSH SIGNATURE" not in result.stdout:
        raise SigningError(
            f"ssh-keygen -Y sign -f {key} failed: {result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout.decode()


def _signature(
    args: argparse.Namespace,
    fresh: dict[str, Any],
    spec: AIDeploymentSpec,
    revision: str,
    written: dict[str, Any],
) -> dict[str, str | None]:
    """The signature annotation for what this command writes: the SSH signature of its
    statement with --sign, else removed (a signature of an earlier approval would only be
    reported as not verifying)."""
    risk = args.command == "accept-risk"
    annotation = gate.RISK_SIGNATURE if risk else gate.APPROVAL_SIGNATURE
    if not args.sign:
        return {annotation: None}
    annotations = {**((fresh.get("metadata") or {}).get("annotations") or {}), **written}
    if not risk and not annotations.get(gate.RISK_ACCEPTANCE, "").strip():
        raise SigningError(
            "the approval statement names the risk reference (aigate.dev/risk-acceptance), "
            "which is not set yet: sign after the risk acceptance, or pass --risk-acceptance"
        )
    approval, risk_text = statements_of(annotations, revision, spec.model.name, spec.model.version)
    statement = risk_text if risk else approval
    print(f"signing with {args.key or default_key()}:\n{statement}", end="", flush=True)
    return {annotation: ssh_sign(statement, Path(args.key) if args.key else default_key())}


def _keys(args: argparse.Namespace, api: Any) -> int:
    """Your key's allowed_signers line, how it is registered, and what is registered."""
    key = Path(args.key) if args.key else default_key()
    public = key if key.suffix == ".pub" else Path(f"{key}.pub")
    parts = public.read_text().split()
    identity = args.identity or _whoami(api)
    principal = f'"{identity}"' if any(c.isspace() for c in identity) else identity
    namespace, _, name = args.registry.partition("/")
    print(f"Your key ({public}), as allowed_signers line for {identity}:\n")
    print(f'  {principal} namespaces="{SSHSIG_NAMESPACE}" {parts[0]} {parts[1]}\n')
    print(
        f"A platform admin registers it by adding that line to data.allowed_signers of "
        f"ConfigMap {namespace}/{name} (the chart's approverKeys.allowedSigners value), e.g.\n"
        f"  kubectl -n {namespace} edit configmap {name}\n"
        f"Only members of the chart's approverKeys.adminGroups may change it."
    )
    try:
        config_map = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as error:
        print(f"\nRegistered keys: cannot read {args.registry}: HTTP {error.status} {error.reason}")
        return 0
    lines = [
        line
        for line in ((config_map.data or {}).get("allowed_signers") or "").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    print(f"\nRegistered keys in {args.registry} ({len(lines)}):")
    for line in lines:
        print(f"  {line}")
    return 0


# ---- records: verify and export --------------------------------------------------------------

RECORDS_NAMESPACE = "aigate-system"


def _records_in_order(args: argparse.Namespace, api: Any, uid: str) -> list[dict[str, Any]]:
    items = RecordStore(api, args.records_namespace).list(uid)
    return sorted(items, key=lambda i: (i.get("spec") or {}).get("sequence", 0))


def _export(args: argparse.Namespace, api: Any, uid: str) -> dict[str, Any]:
    """The records of `uid` and the public keys ConfigMap, as a kind: List."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": _records_in_order(args, api, uid) + _public_keys(api, args.records_namespace),
    }


def _history(args: argparse.Namespace, custom: Any, api: Any, namespace: str) -> int:
    current = None if args.uid else _get(custom, namespace, args.name)
    uid = args.uid or current["metadata"]["uid"]
    summary = ((current or {}).get("status") or {}).get("history") or []
    try:
        records = _record_specs(args, api, uid)
    except RejectedError as error:  # e.g. 403: AIRecords are for the records reader group
        print(
            f"AIRecords in {args.records_namespace} not readable ({error}); status' summary "
            "follows: the latest decisions, without their evidence",
            file=sys.stderr,
        )
        print(render_history(summary, evidence=False))
        return 0 if summary else 1
    print(render_history(history_entries(records, summary, args.measurements)))
    return 0


def _record_specs(args: argparse.Namespace, api: Any, uid: str) -> list[dict[str, Any]]:
    """The specs of `uid`'s AIRecords in sequence order: every decision and measurement."""
    return [i.get("spec") or {} for i in _records_in_order(args, api, uid)]


def _public_keys(api: Any, records_namespace: str) -> list[dict[str, Any]]:
    """The operator's published public keys ConfigMap, as a list item (none if absent)."""
    try:
        keys = client.CoreV1Api(api).read_namespaced_config_map(
            signing.PUBLIC_KEYS_CONFIGMAP, records_namespace
        )
    except ApiException as error:
        if error.status != 404:
            raise
        return []
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": keys.metadata.name, "namespace": keys.metadata.namespace},
            "data": keys.data or {},
        }
    ]


def _subject(args: argparse.Namespace, custom: Any, namespace: str) -> tuple[str, End]:
    """The UID whose records to read, and what status says of the chain's end."""
    if args.uid:
        return args.uid, End()
    obj = _get(custom, namespace, args.name)
    last = ((obj.get("status") or {}).get("records") or {}).get("lastSequence")
    return obj["metadata"]["uid"], End(last_sequence=int(last) if last is not None else None)


def _verify(args: argparse.Namespace, custom: Any, api: Any, namespace: str) -> int:
    uid, end = _subject(args, custom, namespace)
    export = _export(args, api, uid)
    result = evidence.verify(export["items"], uid, evidence.keys_of(export["items"]), end)
    print(evidence.render(result, f"{namespace}/{args.name}"))
    return 0 if result.check.intact else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl aigate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--namespace")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (
        "status",
        "history",
        "verify",
        "records",
        "promote",
        "abort",
        "retry",
        "approve",
        "accept-risk",
        "report",
    ):
        command = sub.add_parser(name)
        command.add_argument("name", help="the AIDeployment")
        command.add_argument("-n", "--namespace", dest="sub_namespace")
        if name in ("verify", "records", "history"):
            command.add_argument("--uid", help="the AIDeployment's UID (for a deleted one)")
            command.add_argument(
                "--records-namespace",
                default=RECORDS_NAMESPACE,
                help=f"where the operator keeps AIRecords (default {RECORDS_NAMESPACE})",
            )
        if name == "records":
            command.add_argument("-o", "--output", choices=["json"], default="json")
        if name == "history":
            command.add_argument(
                "--measurements",
                action="store_true",
                help="also every batch of measurements (MeasurementsRecorded records)",
            )
        if name == "promote":
            command.add_argument(
                "--stage", help="the stage to promote past (default: the waiting one)"
            )
        if name == "abort":
            command.add_argument("--reason", required=True, help="recorded with the request")
        if name == "accept-risk":
            command.add_argument("--reference", required=True, help="the accepted risk record")
        if name == "report":
            add_report_arguments(command)
            command.add_argument(
                "--records-namespace",
                default="aigate-system",
                help="where the operator writes AIRecords (default aigate-system)",
            )
        if name in ("approve", "accept-risk"):
            command.add_argument(
                "--by", help="your identity (default: who the cluster says you are)"
            )
            command.add_argument("--conditions", default="")
            command.add_argument(
                "--risk-acceptance", default="", help="approve only: also accept this risk"
            )
            command.add_argument("--risk-accepted-by", default="")
            command.add_argument(
                "--revision",
                help="refuse unless the spec's revision is this one (default: the spec's, shown)",
            )
            command.add_argument(
                "--yes", "-y", action="store_true", help="approve what is shown without asking"
            )
            command.add_argument(
                "--sign",
                action="store_true",
                help="add an SSH signature of the statement (ssh-keygen -Y sign -n aigate.dev)",
            )
            command.add_argument(
                "--key", help="SSH key (or .pub with ssh-agent); default ~/.ssh/id_ed25519"
            )
    presets = sub.add_parser("presets", help="the metric presets a spec can name (offline)")
    presets.add_argument("preset", nargs="*", help="only these presets")
    presets.add_argument("-o", "--output", choices=("text", "json"), default="text")
    keys = sub.add_parser("keys", help="your key's allowed_signers line and the registry")
    keys.add_argument("--key", help="SSH key or .pub (default ~/.ssh/id_ed25519)")
    keys.add_argument("--identity", help="the identity it signs for (default: who you are)")
    keys.add_argument(
        "--registry",
        default="aigate-system/aigate-approver-keys",
        help="the registry ConfigMap NAMESPACE/NAME (aigate run --approver-keys)",
    )
    args = parser.parse_args(argv)
    if args.command == "presets":  # the catalogue compiled into this aigate: no cluster
        return list_presets(args.preset, args.output)
    if args.command == "keys":
        return _keys(args, _client(args)[1])
    args.namespace = args.sub_namespace or args.namespace
    custom, api = _client(args)
    namespace = _namespace(args)
    if args.command == "report":  # records outlive the AIDeployment: it may be gone
        return _report(args, custom, api, namespace)
    if args.command == "verify":
        return _verify(args, custom, api, namespace)
    if args.command == "history":
        return _history(args, custom, api, namespace)
    if args.command == "records":
        uid, _ = _subject(args, custom, namespace)
        print(json.dumps(_export(args, api, uid), indent=1))
        return 0
    obj = _get(custom, namespace, args.name)
    status = obj.get("status") or {}

    if args.command == "status":
        print(render_status(obj))
    elif args.command in ("approve", "accept-risk"):
        try:
            return _approve(args, custom, api, namespace, obj)
        except SigningError as error:
            print(f"refused: {error}; nothing written", file=sys.stderr)
            return 1
    else:
        revision, stage = request_target(args.command, status)
        if args.command != "abort" and not revision:
            print(f"nothing to {args.command}: no revision in status", file=sys.stderr)
            return 1
        value = request_value(
            args.command,
            _now_value(),
            _whoami(api),
            revision,
            stage=getattr(args, "stage", None) or stage,
            reason=getattr(args, "reason", ""),
        )
        _annotate(
            custom,
            namespace,
            args.name,
            {"metadata": {"annotations": {f"aigate.dev/{args.command}": value}}},
        )
        print(f"aigate.dev/{args.command}={value!r} set on {namespace}/{args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
