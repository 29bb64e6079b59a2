"""Is the approval policy enforcing for this resource? (fail closed, docs/decisions/0009)

Who may approve is enforced by a ValidatingAdmissionPolicy (DESIGN.md section 3). Without
it anybody who may annotate can approve, so `aigate run --require-approval-policy=NAME`
keeps every gate closed unless, for the resource's namespace and labels:
- the ValidatingAdmissionPolicy NAME exists, its failurePolicy is Fail (the default) and
  its matchConstraints cover AIDeployment CREATE and UPDATE;
- a ValidatingAdmissionPolicyBinding names it, its validationActions contain Deny, and its
  matchResources (namespaceSelector, objectSelector, resourceRules, excludeResourceRules)
  select this AIDeployment.

Pure: the objects come in as the API server's JSON (camelCase dicts), already read.
Label selectors are evaluated fully (matchLabels and matchExpressions); CEL matchConditions
and parameter resources are not evaluated (the chart's policy uses neither), so a policy
that has matchConditions or paramKind is reported as not verifiable rather than trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GROUP, RESOURCE = "aigate.dev", "aideployments"
OPERATIONS = ("CREATE", "UPDATE")


@dataclass(frozen=True)
class PolicyObjects:
    """What the API server holds: the policy (None: not found) and every binding."""

    name: str
    policy: Mapping[str, Any] | None
    bindings: Sequence[Mapping[str, Any]]
    error: str = ""  # why they could not be read; fails closed like a missing policy


def needs_namespace_labels(objects: PolicyObjects) -> bool:
    """Whether deciding needs the namespace's labels (a non-empty namespaceSelector)."""
    selectors = [_match(objects.policy).get("namespaceSelector")] if objects.policy else []
    selectors += [_match(b).get("namespaceSelector") for b in _bindings_of(objects)]
    return any(s for s in selectors)


def policy_problem(
    objects: PolicyObjects,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    object_labels: Mapping[str, str],
) -> str | None:
    """None when the policy enforces for this resource, else what is missing, naming the
    object and the field. namespace_labels None: the namespace could not be read."""
    name = objects.name
    if objects.error:
        return f"cannot read ValidatingAdmissionPolicy {name} or its bindings: {objects.error}"
    if objects.policy is None:
        return f"ValidatingAdmissionPolicy {name} not found"
    problem = _policy_itself(objects.policy, name)
    if problem:
        return problem
    if _selects(_match(objects.policy), namespace_labels, object_labels) is False:
        return (
            f"ValidatingAdmissionPolicy {name}: spec.matchConstraints does not select {namespace}"
        )
    bindings = list(_bindings_of(objects))
    if not bindings:
        return f"no ValidatingAdmissionPolicyBinding with spec.policyName {name} found"
    found = []
    for binding in bindings:
        why = _binding_problem(binding, namespace, namespace_labels, object_labels)
        if why is None:
            return None
        found.append(why)
    return f"no ValidatingAdmissionPolicyBinding of {name} denies in {namespace}: " + "; ".join(
        found
    )


def _policy_itself(policy: Mapping[str, Any], name: str) -> str | None:
    spec = policy.get("spec") or {}
    failure = spec.get("failurePolicy") or "Fail"
    if failure != "Fail":
        return (
            f"ValidatingAdmissionPolicy {name}: spec.failurePolicy is {failure!r}, expected 'Fail'"
        )
    if spec.get("paramKind") or spec.get("matchConditions"):
        return (
            f"ValidatingAdmissionPolicy {name}: spec.paramKind/matchConditions cannot be "
            f"verified by aigate; expected the chart's policy, which uses neither"
        )
    constraints = spec.get("matchConstraints") or {}
    if not _rules_cover(constraints.get("resourceRules") or []):
        return (
            f"ValidatingAdmissionPolicy {name}: spec.matchConstraints.resourceRules do not "
            f"cover {', '.join(OPERATIONS)} of {RESOURCE}.{GROUP}"
        )
    if _rules_touch(constraints.get("excludeResourceRules") or []):
        return (
            f"ValidatingAdmissionPolicy {name}: spec.matchConstraints.excludeResourceRules "
            f"exclude {RESOURCE}.{GROUP}"
        )
    return None


def _binding_problem(
    binding: Mapping[str, Any],
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    object_labels: Mapping[str, str],
) -> str | None:
    name = (binding.get("metadata") or {}).get("name", "?")
    spec = binding.get("spec") or {}
    actions = list(spec.get("validationActions") or [])
    if "Deny" not in actions:
        return f"binding {name} has spec.validationActions {actions}, expected one with Deny"
    match = _match(binding)
    rules = match.get("resourceRules")
    if rules and not _rules_cover(rules):
        return f"binding {name}: spec.matchResources.resourceRules do not cover {RESOURCE}.{GROUP}"
    if _rules_touch(match.get("excludeResourceRules") or []):
        return f"binding {name}: spec.matchResources.excludeResourceRules exclude {RESOURCE}"
    selected = _selects(match, namespace_labels, object_labels)
    if selected is None:
        return f"binding {name}: cannot read the labels of namespace {namespace}"
    if not selected:
        return f"binding {name}: spec.matchResources selectors do not select {namespace}"
    return None


def _bindings_of(objects: PolicyObjects) -> list[Mapping[str, Any]]:
    return [b for b in objects.bindings if (b.get("spec") or {}).get("policyName") == objects.name]


def _match(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = (obj or {}).get("spec") or {}
    return spec.get("matchConstraints") or spec.get("matchResources") or {}


def _selects(
    match: Mapping[str, Any],
    namespace_labels: Mapping[str, str] | None,
    object_labels: Mapping[str, str],
) -> bool | None:
    """Both selectors match; None when the namespace selector matters but is unknown."""
    if not selector_matches(match.get("objectSelector"), object_labels):
        return False
    namespace_selector = match.get("namespaceSelector")
    if not namespace_selector:
        return True
    if namespace_labels is None:
        return None
    return selector_matches(namespace_selector, namespace_labels)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector; an empty or absent selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = set(expression.get("values") or [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False  # an operator we do not know: never assume it selects


def _rule_matches(rule: Mapping[str, Any], operations: Sequence[str]) -> bool:
    def has(field: str, value: str) -> bool:
        listed = rule.get(field) or []
        return "*" in listed or value in listed

    resources = rule.get("resources") or []
    resource_ok = "*" in resources or "*/*" in resources or RESOURCE in resources
    return (
        has("apiGroups", GROUP)
        and has("apiVersions", "v1alpha1")
        and resource_ok
        and all(has("operations", op) for op in operations)
    )


def _rules_cover(rules: Sequence[Mapping[str, Any]]) -> bool:
    """Every operation that writes approvals is covered (by one rule or several)."""
    return all(any(_rule_matches(r, (op,)) for r in rules) for op in OPERATIONS)


def _rules_touch(rules: Sequence[Mapping[str, Any]]) -> bool:
    return any(_rule_matches(r, (op,)) for r in rules for op in OPERATIONS)
