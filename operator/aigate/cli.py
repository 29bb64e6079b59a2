"""The `aigate` command.

aigate run [--namespace NS]... [--metrics-port 9090] [--health-port 8081]
           [--require-approval-policy NAME] [--records-namespace NS] [--record-retention 400d]
aigate revision -f manifest.yaml     # the revision an approval must name, offline
aigate verify-approval -f manifest.yaml --allowed-signers FILE
                                     # check signed approvals offline, years later
aigate report --from records.json [NAME] [-n NS] [--since DATE] [-o html|md|json]
                                     # the evidence pack, offline, from exported AIRecords
aigate verify --from records.json [--public-key KEY] [--uid UID] [--last-sequence N]
                                     # check exported AIRecords offline
aigate presets [NAME]... [-o text|json]
                                     # the metric presets a spec can name
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import GROUP, KIND, AIDeploymentSpec
from aigate.core.revision import compute_revision


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf
    from kubernetes import config
    from prometheus_client import start_http_server

    from aigate import handlers, logs, reconciler

    logs.configure(verbose=args.verbose)
    reconciler.POLICY.allow_unpinned_images = args.allow_unpinned_images
    reconciler.POLICY.signed_tiers = frozenset(args.require_signed_approval or ())
    handlers.require_approval_policy(args.require_approval_policy)
    if args.approver_keys:
        from aigate.adapters.approver_keys import parse_reference

        try:
            parse_reference(args.approver_keys)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
    handlers.use_approver_keys(args.approver_keys)
    handlers.configure_records(args.records_namespace, args.record_retention)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind_address)
    namespaces = args.namespace or []
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=(
            f"http://{args.bind_address}:{args.health_port}/healthz" if args.health_port else None
        ),
    )
    return 0


if TYPE_CHECKING:
    from aigate.signatures import Registry


class _StringDatesLoader(yaml.SafeLoader):
    """Reads YAML the way kubectl sends it: an unquoted date stays a string."""


_StringDatesLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_documents(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.load_all(text, Loader=_StringDatesLoader) if isinstance(doc, dict)]


class _InvalidSpecError(Exception):
    """A manifest's AIDeployment whose spec does not validate (already reported)."""


def _aideployments(path: str) -> Iterator[tuple[str, dict[str, Any], AIDeploymentSpec]]:
    """(name, document, spec) of each AIDeployment in the manifest; an invalid spec is
    printed and raises _InvalidSpecError, none at all is printed and yields nothing."""
    found = 0
    for doc in _load_documents(path):
        if doc.get("kind") != KIND or not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
            continue
        found += 1
        name = (doc.get("metadata") or {}).get("name", "?")
        try:
            spec = AIDeploymentSpec.model_validate(doc.get("spec") or {})
        except ValidationError as error:
            print(f"{name}: invalid spec:\n{error}", file=sys.stderr)
            raise _InvalidSpecError from None
        yield name, doc, spec
    if not found:
        print(f"no {KIND} in {path}", file=sys.stderr)


def _cmd_revision(args: argparse.Namespace) -> int:
    found = False
    try:
        for name, _, spec in _aideployments(args.filename):
            found = True
            revision = compute_revision(spec)
            print(revision if args.quiet else f"{name}\t{revision}")
    except _InvalidSpecError:
        return 1
    return 0 if found else 1


def _cmd_verify_approval(args: argparse.Namespace) -> int:
    """Offline, years later: does each AIDeployment's signed approval and risk acceptance
    verify against this allowed_signers file, for the revision the manifest computes to?"""
    from aigate.signatures import parse_allowed_signers

    registry = parse_allowed_signers(Path(args.allowed_signers).read_text(), args.allowed_signers)
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    found, failed = False, False
    try:
        for name, doc, spec in _aideployments(args.filename):
            found = True
            failed = _report_signatures(name, doc, spec, registry) or failed
    except _InvalidSpecError:
        return 1
    return 1 if failed or not found else 0


def _report_signatures(
    name: str, doc: dict[str, Any], spec: AIDeploymentSpec, registry: Registry
) -> bool:
    """Prints what one AIDeployment's approval annotations say; True when they fail."""
    from aigate.core import gate
    from aigate.signatures import check_annotations

    failed = False
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    revision = compute_revision(spec)
    print(f"{name}: revision {revision}")
    named = annotations.get(gate.APPROVED_REVISION, "").strip()
    if named != revision:
        failed = True
        print(f"  approved-revision: NOT this revision (found {named or 'nothing'!r})")
    checks = check_annotations(spec, annotations, registry)
    for what, check in (("approval", checks.approval), ("risk acceptance", checks.risk)):
        if check is None:
            failed = failed or bool(checks.required_by)
            required = f"required by {checks.required_by}" if checks.required_by else "not required"
            print(f"  {what}: not signed ({required})")
        elif check.verified:
            print(f"  {what}: signed by {check.signer} with key {check.key_fingerprint}: verified")
        else:
            failed = True
            print(f"  {what}: signature by {check.signer!r} NOT verified: {check.problem}")
    return failed


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from aigate.report.command import write_report
    from aigate.report.source import subjects

    try:
        data = json.loads(Path(args.source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"--from {args.source}: cannot read it as JSON: {error}", file=sys.stderr)
        return 2
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        print(
            f"--from {args.source}: expected a List with items (kubectl get airecords -o json)",
            file=sys.stderr,
        )
        return 2
    found = subjects(items)
    if not args.name and len(found) != 1:
        names = ", ".join(f"{ns}/{n}" for ns, n in found) or "none"
        print(f"--from {args.source}: name the AIDeployment (found: {names})", file=sys.stderr)
        return 2
    name = args.name or found[0][1]
    namespace = args.namespace or ""
    from aigate import evidence
    from aigate.core.records import End

    # Offline the AIDeployment's status is not at hand: the chain must end with
    # DeploymentDeleted to prove its end (the report says what could not be proven).
    verified = evidence.for_report(items, name, namespace, End())
    return write_report(
        items, name, namespace, None, args.since, args.output_format, args.output, verified=verified
    )


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "aigate-system"
    except OSError:
        return "aigate-system"


def _retention(text: str) -> timedelta:
    """`400d` or a duration (`4380h`, `30s`)."""
    try:
        if text.endswith("d") and text[:-1].isdigit():
            return timedelta(days=int(text[:-1]))
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected e.g. 400d or 4380h: {error}") from None


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from aigate import evidence
    from aigate.adapters import signing
    from aigate.core.records import End

    items = json.loads(Path(args.source).read_text()).get("items") or []
    if args.public_key:
        public = signing.parse_public_key(Path(args.public_key).read_text())
        keys = {signing.key_id(public): public}
    else:
        keys = evidence.keys_of(items)
        print("note: using the public keys in the export; pin one with --public-key")
    uid = args.uid or evidence.the_uid(items)
    result = evidence.verify(items, uid, keys, End(last_sequence=args.last_sequence))
    print(evidence.render(result, args.source))
    return 0 if result.check.intact else 1


def list_presets(names: list[str], output: str) -> int:
    """`aigate presets` and `kubectl aigate presets`: the catalogue, or the presets named."""
    from aigate.api.presets import PRESETS

    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        print(
            f"unknown preset(s) {unknown}; expected: {', '.join(PRESETS)}",
            file=sys.stderr,
        )
        return 2
    chosen = [p for name, p in PRESETS.items() if not names or name in names]
    if output == "json":
        print(json.dumps([p.as_dict() for p in chosen], indent=2))
        return 0
    for preset in chosen:
        deprecated = f"  (deprecated: {preset.deprecated})" if preset.deprecated else ""
        print(
            f"{preset.name}{deprecated}\n  measures:  {preset.measures}\n"
            f"  server:    {preset.server}\n  suggested: {preset.suggested}\n"
            f"  query:     {preset.query}\n"
        )
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    return list_presets(args.name, args.output)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aigate", description="Governed AI model rollouts.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="0 disables")
    run.add_argument("--health-port", type=int, default=8081, help="0 disables")
    run.add_argument(
        "--bind-address",
        default="0.0.0.0",  # noqa: S104 (in-cluster probes)
        help="address for the metrics and health endpoints",
    )
    run.add_argument(
        "--peering",
        default=None,
        help="kopf peering name for several replicas (default: standalone)",
    )
    run.add_argument(
        "--priority", type=int, default=0, help="peering priority; give each replica a distinct one"
    )
    run.add_argument(
        "--allow-unpinned-images",
        action="store_true",
        help="accept image tags for riskTier high (default: high-risk images must be "
        "pinned by digest, <image>@sha256:<digest>)",
    )
    run.add_argument(
        "--require-signed-approval",
        metavar="TIER",
        action="append",
        choices=["minimal", "limited", "high"],
        help="approvals and risk acceptances of this riskTier must carry verified SSH "
        "signatures whatever spec.governance.requireSignedApproval says (repeatable; the "
        "chart sets high)",
    )
    run.add_argument(
        "--require-approval-policy",
        metavar="NAME",
        default=None,
        help="fail closed: every gate stays closed (reason ApprovalPolicyMissing) unless the "
        "ValidatingAdmissionPolicy NAME and a binding of it with validationActions Deny "
        "select the resource (the chart sets it; default: not checked)",
    )
    run.add_argument(
        "--approver-keys",
        metavar="NAMESPACE/NAME",
        default=None,
        help="the approver key registry: a ConfigMap whose data.allowed_signers (OpenSSH "
        "allowed_signers format) holds the keys signed approvals are verified with (the "
        "chart sets it; default: none, so no signature verifies)",
    )
    run.add_argument(
        "--records-namespace",
        default=_own_namespace(),
        help="namespace of the AIRecords, the record-signing key Secret and the public keys "
        "ConfigMap (default: the operator's own namespace, else aigate-system)",
    )
    run.add_argument(
        "--record-retention",
        type=_retention,
        default=timedelta(days=400),
        help="how long AIRecords are kept before the operator deletes them, e.g. 400d, 4380h "
        "(default 400d; EU AI Act Art. 19 asks for at least six months)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    run.set_defaults(func=_cmd_run)

    revision = sub.add_parser(
        "revision", help="print the revision of each AIDeployment in a manifest (offline)"
    )
    revision.add_argument("-f", "--filename", required=True, help="manifest file, or - for stdin")
    revision.add_argument("-q", "--quiet", action="store_true", help="print only the revision")
    revision.set_defaults(func=_cmd_revision)

    presets = sub.add_parser(
        "presets", help="list the metric presets a spec can name (metrics[].preset)"
    )
    presets.add_argument("name", nargs="*", help="only these presets")
    presets.add_argument("-o", "--output", choices=("text", "json"), default="text")
    presets.set_defaults(func=_cmd_presets)

    check = sub.add_parser(
        "verify-approval",
        help="verify the signed approvals of each AIDeployment in a manifest (offline)",
    )
    check.add_argument("-f", "--filename", required=True, help="manifest file, or - for stdin")
    check.add_argument(
        "--allowed-signers",
        required=True,
        metavar="FILE",
        help="the approver keys (OpenSSH allowed_signers; the registry ConfigMap's data)",
    )
    check.set_defaults(func=_cmd_verify_approval)

    report = sub.add_parser(
        "report", help="write the evidence report of an AIDeployment from exported AIRecords"
    )
    report.add_argument(
        "--from",
        dest="source",
        required=True,
        help="records exported with kubectl get airecords -o json (a List)",
    )
    report.add_argument("name", nargs="?", help="the AIDeployment (needed if the file has several)")
    report.add_argument(
        "-n", "--namespace", help="its namespace (if names repeat across namespaces)"
    )
    from aigate.report.command import add_report_arguments

    add_report_arguments(report)
    report.set_defaults(func=_cmd_report)

    verify = sub.add_parser("verify", help="check exported AIRecords (signatures, chain, gaps)")
    verify.add_argument(
        "--from", dest="source", required=True, help="`kubectl aigate records NAME -o json` output"
    )
    verify.add_argument(
        "--public-key",
        help="the operator's public key (OpenSSH or PEM); default: the keys in the export",
    )
    verify.add_argument("--uid", help="the AIDeployment's UID (default: the one in the export)")
    verify.add_argument(
        "--last-sequence",
        type=int,
        default=None,
        help="the last sequence the AIDeployment's status names (default: the chain must "
        "end with DeploymentDeleted)",
    )
    verify.set_defaults(func=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
