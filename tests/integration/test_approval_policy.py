"""The chart's ValidatingAdmissionPolicies on the real API server: who may write what is
enforced by the cluster (docs/decisions/0008-who-may-write-what.md).

Identities: the harness's token users (approver in aigate:approvers, risk-officer in
aigate:risk-acceptors, developer in aigate:developers, sre in aigate:operators, admin in
system:masters), a GitOps ServiceAccount and the operator's ServiceAccount (the chart's
default operator identity). The policies are bound only in a labelled namespace, so other
tests' admin-written approvals and admin-run operators are unaffected."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from aigate.api.v1alpha1 import ApprovalRecord, RevisionSnapshot, RollbackState, RollbackTrigger
from aigate.core.revision import compute_revision
from support.chart import bare_deployment, render_chart
from support.factories import spec_dict, spec_model
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "aigate.dev", "v1alpha1", "aideployments"
P = "aigate.dev/"
APPROVED_BY, APPROVED_AT = P + "approved-by", P + "approved-at"
APPROVED_REVISION, CONDITIONS = P + "approved-revision", P + "approval-conditions"
RISK, RISK_BY = P + "risk-acceptance", P + "risk-accepted-by"
SOURCE = P + "approval-source"
PROMOTE, ABORT, RETRY = P + "promote", P + "abort", P + "retry"
RELEASE = "policytest"  # its own release name: cluster-scoped names never meet other tests'
FULLNAME = f"{RELEASE}-aigate"
REVISION = compute_revision(spec_model())
OWNER_LABEL = "aigate.dev/aideployment"

RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aigate-policy-test-editor}
rules:
  - apiGroups: [aigate.dev]
    resources: [aideployments, aideployments/status]
    verbs: [get, list, create, patch, update]
  - apiGroups: [apps]
    resources: [deployments, replicasets]
    verbs: [get, list, create, patch, update]
  - {apiGroups: [""], resources: [pods], verbs: [get, list, create, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: aigate-policy-test-editors, namespace: NAMESPACE}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aigate-policy-test-editor}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"""


class Actor:
    """One identity; every write returns '' when allowed, else the API server's message."""

    def __init__(self, kubeconfig: str, name: str, username: str) -> None:
        self.name = name
        self.username = username  # as the API server knows it (request.userInfo.username)
        api = config.new_client_from_config(config_file=kubeconfig)
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, namespace: str, name: str, annotations: dict[str, str] | None = None) -> str:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIDeployment",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec_dict(),
        }
        return self._call(
            lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body
            )
        )

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> str:
        return self.patch(namespace, name, {"metadata": {"annotations": annotations}})

    def patch(self, namespace: str, name: str, patch: dict) -> str:
        return self._call(
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch
            )
        )

    def patch_spec(self, namespace: str, name: str, spec: dict) -> str:
        return self.patch(namespace, name, {"spec": spec})

    def patch_status(self, namespace: str, name: str, status: dict) -> str:
        return self._call(
            lambda: self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        )

    def create_deployment(self, namespace: str, name: str, labels: dict[str, str]) -> str:
        body = bare_deployment(name, labels)
        return self._call(lambda: self.apps.create_namespaced_deployment(namespace, body))

    def patch_deployment(self, namespace: str, name: str, patch: dict) -> str:
        return self._call(lambda: self.apps.patch_namespaced_deployment(name, namespace, patch))

    def create_pod(self, namespace: str, name: str, labels: dict[str, str]) -> str:
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "server", "image": "evil:1"}]},
        }
        return self._call(lambda: self.core.create_namespaced_pod(namespace, body))

    @staticmethod
    def _call(call: Callable[[], object]) -> str:
        try:
            call()
        except ApiException as error:
            assert error.status in (403, 422), error.body
            return yaml.safe_load(error.body)["message"]
        return ""


def dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True)


def render_policies(cluster, namespace: str) -> list[dict]:
    """The chart's policy documents, released into `namespace` (so the operator's default
    identity is system:serviceaccount:<namespace>:policytest-aigate)."""
    docs = render_chart(
        cluster.bin,
        "approvals.separationOfDuties=true",
        f"approvals.gitOpsUsers={{system:serviceaccount:{namespace}:gitops}}",
        f"approvals.namespaceSelector.matchLabels.aigate-policy-test={namespace}",
        release=RELEASE,
        namespace=namespace,
    )
    return [
        d
        for d in docs
        if "ValidatingAdmissionPolicy" in d["kind"]
        # the key registry's and the records' policies have tests of their own
        and not d["metadata"]["name"].endswith(("-approver-keys", "-records"))
    ]


def assert_type_checks(cluster, policy: str) -> None:
    """A CEL mistake would otherwise only show as a warning in the policy's status."""
    status = wait_for(
        lambda: yaml.safe_load(
            cluster.kubectl("get", "validatingadmissionpolicy", policy, "-o", "yaml")
        ).get("status"),
        timeout=60,
        what=f"{policy}'s status",
    )
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status


def sa_actor(cluster, namespace: str, name: str, label: str) -> Actor:
    path = cluster.service_account_kubeconfig(
        namespace, name, Path(cluster.info.state_dir) / f"kubeconfig-{name}-{namespace}"
    )
    return Actor(str(path), label, f"system:serviceaccount:{namespace}:{name}")


@pytest.fixture(scope="module")
def policy_namespace(cluster, api_client, crd_installed, tmp_path_factory) -> Iterator[str]:
    """A namespace where the chart's policies apply, with RBAC letting everyone try."""
    namespace = f"policy-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("policy")
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, f"aigate-policy-test={namespace}")
    for account in ("gitops", FULLNAME):
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    rbac = tmp / "rbac.yaml"
    rbac.write_text(RBAC.replace("NAMESPACE", namespace))
    cluster.kubectl("apply", "-f", str(rbac))
    docs = render_policies(cluster, namespace)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        (kind, f"{FULLNAME}-{policy}")
        for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
        for policy in ("approvals", "status", "children")
    )
    manifest = tmp / "policy.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(manifest))
    for policy in ("approvals", "status", "children"):
        assert_type_checks(cluster, f"{FULLNAME}-{policy}")
    wait_enforced(cluster, namespace)
    yield namespace
    cluster.kubectl("delete", "-f", str(manifest), "--ignore-not-found")
    cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found")
    # Gone before the next module: an operator started later must not meet its objects
    # while the namespace terminates.
    cluster.kubectl("delete", "namespace", namespace, "--timeout=180s")


def wait_enforced(cluster, namespace: str) -> None:
    """The API server picks bindings up asynchronously: probe each policy until it refuses
    (a new name per attempt: an attempt made before enforcement succeeds)."""
    developer = Actor(cluster.info.user_kubeconfigs["developer"], "developer", "developer")
    admin = Actor(cluster.info.kubeconfig, "admin", "admin")
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    assert admin.create(namespace, probe) == ""
    wait_for(
        lambda: developer.create(namespace, f"probe-{uuid.uuid4().hex[:8]}", {APPROVED_BY: "x"}),
        timeout=60,
        what="the approvals policy to be enforced",
    )
    wait_for(
        lambda: admin.patch_status(namespace, probe, {"phase": "Stable"}),
        timeout=60,
        what="the status policy to be enforced",
    )
    wait_for(
        lambda: admin.create_deployment(
            namespace, f"probe-{uuid.uuid4().hex[:8]}", {OWNER_LABEL: probe}
        ),
        timeout=60,
        what="the children policy to be enforced",
    )


@pytest.fixture(scope="module")
def actors(cluster, policy_namespace) -> dict[str, Actor]:
    users = {
        name: Actor(cluster.info.user_kubeconfigs[name], name, name)
        for name in ("approver", "risk-officer", "developer", "sre")
    }
    users["admin"] = Actor(cluster.info.kubeconfig, "admin", "admin")
    users["gitops"] = sa_actor(cluster, policy_namespace, "gitops", "gitops")
    users["operator"] = sa_actor(cluster, policy_namespace, FULLNAME, "operator")
    return users


def fresh(actors, namespace, annotations: dict[str, str] | None = None) -> str:
    """A new AIDeployment (by the GitOps identity when it must carry approvals from Git)."""
    name = f"m-{uuid.uuid4().hex[:6]}"
    creator = actors["gitops"] if annotations else actors["developer"]
    assert creator.create(namespace, name, annotations) == ""
    return name


def signed(user: str, at: str = "2026-11-23T10:00:00Z") -> dict[str, str]:
    return {APPROVED_BY: user, APPROVED_AT: at, APPROVED_REVISION: REVISION}


def accepted(user: str, reference: str = "RISK-1") -> dict[str, str]:
    return {RISK: reference, RISK_BY: user}


def from_git(**extra: str) -> dict[str, str]:
    """Approval and risk acceptance as Argo CD would sync them from Git."""
    return {
        **signed("jane@example.com"),
        **accepted("ciso@example.com", "RISK-CISO-7"),
        SOURCE: "git",
        **extra,
    }


# ---- the matrix: identity x write -> allowed ('') or the message's essence --------------

ONLY_APPROVERS = (
    "only members of aigate:approvers may add, change or remove the aigate.dev/approved-*"
)
ONLY_ACCEPTORS = "only members of aigate:risk-acceptors may add, change or remove"
ONLY_GIT_MARKS = "may set aigate.dev/approval-source; user {user} may not"
GIT_NEEDS_MARK = "must carry aigate.dev/approval-source: git"
ONLY_PROMOTERS = "only members of aigate:approvers may set or remove aigate.dev/promote"
ONLY_RETRIERS = "only members of aigate:approvers may set or remove aigate.dev/retry"
ONLY_ABORTERS = (
    "only members of aigate:approvers, aigate:operators may set or remove aigate.dev/abort"
)
ONLY_OPERATOR_STATUS = "aideployments/status is written only by the aigate operator"
ONLY_OPERATOR_CHILDREN = "and the built-in controllers create or change deployments labelled"
ONLY_OPERATOR_PODS = "and the built-in controllers create or change pods labelled"


def write_spec(actor: Actor, ns: str, name: str) -> str:
    return actor.patch_spec(ns, name, {"replicas": 3})


def write_approval(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, signed(actor.username))


def write_approval_marked(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, {**signed(actor.username), SOURCE: "git"})


def write_risk(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, accepted(actor.username))


def write_marker(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, {SOURCE: "git"})


def write_promote(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, {PROMOTE: f"canary-50@{REVISION} by={actor.username} ok"})


def write_abort(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, {ABORT: f"@{REVISION} by={actor.username} latency"})


def write_retry(actor: Actor, ns: str, name: str) -> str:
    return actor.annotate(ns, name, {RETRY: f"@{REVISION} by={actor.username} fixed"})


def write_status(actor: Actor, ns: str, name: str) -> str:
    return actor.patch_status(ns, name, {"phase": "Stable"})


def write_child_deployment(actor: Actor, ns: str, name: str) -> str:
    return actor.create_deployment(ns, f"{name}-stable", {OWNER_LABEL: name})


def write_child_pod(actor: Actor, ns: str, name: str) -> str:
    return actor.create_pod(ns, f"{name}-pod", {OWNER_LABEL: name, "aigate.dev/track": "stable"})


WRITES: dict[str, Callable[[Actor, str, str], str]] = {
    "spec": write_spec,
    "approval": write_approval,
    "approval-from-git": write_approval_marked,
    "risk": write_risk,
    "marker": write_marker,
    "promote": write_promote,
    "abort": write_abort,
    "retry": write_retry,
    "status": write_status,
    "child-deployment": write_child_deployment,
    "child-pod": write_child_pod,
}
IDENTITIES = ("approver", "risk-officer", "developer", "sre", "gitops", "admin", "operator")
ALLOWED = ""

# Rows of docs/decisions/0008-who-may-write-what.md. Everything not listed is refused with
# the write's default message below.
MATRIX: dict[tuple[str, str], str] = {
    **{(who, "spec"): ALLOWED for who in IDENTITIES},
    ("approver", "approval"): ALLOWED,
    ("gitops", "approval"): GIT_NEEDS_MARK,
    ("gitops", "approval-from-git"): ALLOWED,
    ("approver", "approval-from-git"): ONLY_GIT_MARKS,
    ("risk-officer", "risk"): ALLOWED,
    ("gitops", "risk"): GIT_NEEDS_MARK,
    ("gitops", "marker"): ALLOWED,
    ("approver", "promote"): ALLOWED,
    ("approver", "abort"): ALLOWED,
    ("sre", "abort"): ALLOWED,
    ("approver", "retry"): ALLOWED,
    ("operator", "status"): ALLOWED,
    ("operator", "child-deployment"): ALLOWED,
    ("operator", "child-pod"): ALLOWED,
}
REFUSED: dict[str, str] = {
    "approval": ONLY_APPROVERS,
    "approval-from-git": ONLY_APPROVERS,
    "risk": ONLY_ACCEPTORS,
    "marker": ONLY_GIT_MARKS,
    "promote": ONLY_PROMOTERS,
    "abort": ONLY_ABORTERS,
    "retry": ONLY_RETRIERS,
    "status": ONLY_OPERATOR_STATUS,
    "child-deployment": ONLY_OPERATOR_CHILDREN,
    "child-pod": ONLY_OPERATOR_PODS,
}


def expected(who: str, write: str) -> str:
    return MATRIX.get((who, write), REFUSED.get(write, ALLOWED))


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("who", IDENTITIES)
def test_who_may_write_what(actors, policy_namespace, who, write):
    actor, ns = actors[who], policy_namespace
    name = fresh(actors, ns)
    outcome = WRITES[write](actor, ns, name)
    want = expected(who, write).replace("{user}", actor.username)
    if want == ALLOWED:
        assert outcome == "", f"{who} {write}: refused: {outcome}"
    else:
        assert want in outcome, f"{who} {write}: expected {want!r}, got {outcome or 'allowed'!r}"
        assert actor.username in outcome, outcome  # the message names who


# ---- the attacks of issue 8, one by one ------------------------------------------------


def test_approver_b_cannot_approve_a_new_revision_still_recorded_as_approver_a(
    actors, policy_namespace
):
    ns, approver = policy_namespace, actors["approver"]
    name = fresh(actors, ns, from_git())  # approved by jane@example.com through Git
    other = "f" * 64
    denied = approver.annotate(ns, name, {APPROVED_REVISION: other, SOURCE: None})
    assert (
        "aigate.dev/approved-by must be the requesting user approver whenever an approval "
        "annotation is added or changed, found jane@example.com" in denied
    )
    denied = approver.annotate(ns, name, {CONDITIONS: "only weekdays", SOURCE: None})
    assert "found jane@example.com" in denied
    # re-signing as themselves is the way, and it drops Git's marker in the same request
    assert approver.annotate(ns, name, {**signed("approver"), SOURCE: None}) == ""


def test_a_risk_acceptor_cannot_swap_the_cisos_risk_reference(actors, policy_namespace):
    ns, officer = policy_namespace, actors["risk-officer"]
    name = fresh(actors, ns, from_git())
    denied = officer.annotate(ns, name, {RISK: "RISK-LOW-1", SOURCE: None})
    assert (
        "aigate.dev/risk-accepted-by must be the requesting user risk-officer whenever a risk "
        "annotation is added or changed, found ciso@example.com" in denied
    )


def test_a_person_changing_git_approvals_must_drop_the_marker(actors, policy_namespace):
    ns, approver = policy_namespace, actors["approver"]
    name = fresh(actors, ns, from_git())
    stale = approver.annotate(ns, name, signed("approver"))
    assert "aigate.dev/approval-source: git says these approvals came from Git" in stale
    assert "user approver changing approval or risk annotations must remove it" in stale
    alone = approver.annotate(ns, name, {SOURCE: None})
    assert "aigate.dev/approval-source may be removed only together with a change" in alone


def test_asserted_through_git_cannot_be_claimed_with_a_field_manager_name(
    cluster, actors, policy_namespace
):
    """managedFields name the client, which the client chooses: the marker is what counts,
    and only the GitOps identity may set it."""
    ns = policy_namespace
    name = fresh(actors, ns)
    result = subprocess.run(
        [
            str(cluster.bin / "kubectl"),
            f"--kubeconfig={cluster.info.user_kubeconfigs['approver']}",
            "annotate",
            "-n",
            ns,
            f"aid/{name}",
            "--field-manager=argocd-controller",
            *[f"{k}={v}" for k, v in {**signed("approver"), SOURCE: "git"}.items()],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "may set aigate.dev/approval-source; user approver may not" in result.stderr


def test_gitops_approvals_bind_separation_of_duties_too(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns, from_git())
    same_person = actors["gitops"].annotate(ns, name, {RISK_BY: "jane@example.com"})
    assert "separation of duties" in same_person and "both are jane@example.com" in same_person


def test_one_request_may_not_change_the_spec_and_approve_it(actors, policy_namespace):
    ns, approver = policy_namespace, actors["approver"]
    name = fresh(actors, ns)
    both = approver.patch(
        ns, name, {"spec": {"replicas": 5}, "metadata": {"annotations": signed("approver")}}
    )
    assert "separation of duties: user approver may not change spec and add or change" in both
    created = approver.create(ns, f"pre-{name}", signed("approver"))
    assert "separation of duties" in created
    # withdrawing while changing the spec stays possible (the safe direction)
    assert approver.annotate(ns, name, signed("approver")) == ""
    withdraw = {k: None for k in signed("approver")}
    assert (
        approver.patch(ns, name, {"spec": {"replicas": 6}, "metadata": {"annotations": withdraw}})
        == ""
    )


def test_approvers_may_withdraw_their_approval(actors, policy_namespace):
    ns, approver = policy_namespace, actors["approver"]
    name = fresh(actors, ns, from_git())
    everything = {k: None for k in (*signed("x"), SOURCE)}
    assert "only members" in actors["developer"].annotate(ns, name, everything)
    assert approver.annotate(ns, name, everything) == ""


def test_anyone_who_can_annotate_cannot_promote_past_a_manual_stage(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    for who in ("developer", "sre", "admin"):
        assert ONLY_PROMOTERS in write_promote(actors[who], ns, name), who


def test_promote_in_advance_from_git_is_refused(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    value = f"canary-50@{REVISION} by=jane@example.com from git"
    assert ONLY_PROMOTERS in actors["gitops"].annotate(ns, name, {PROMOTE: value})


def test_retry_after_the_approver_withdrew_needs_an_approver(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    for who in ("developer", "sre", "admin", "gitops"):
        assert ONLY_RETRIERS in write_retry(actors[who], ns, name), who


def test_requests_name_the_full_revision_and_the_requesting_user(actors, policy_namespace):
    ns, approver = policy_namespace, actors["approver"]
    name = fresh(actors, ns)
    short = approver.annotate(ns, name, {PROMOTE: f"canary-50@{REVISION[:12]} by=approver"})
    assert (
        'aigate.dev/promote must be "<stage>@<full 64-hex revision> by=approver [text]", '
        f'found "canary-50@{REVISION[:12]} by=approver"' in short
    )
    assert "must be" in approver.annotate(ns, name, {PROMOTE: "canary-50 by=approver"})
    forged = approver.annotate(ns, name, {PROMOTE: f"canary-50@{REVISION} by=jane ok"})
    assert "by=approver [text]" in forged and "by=jane ok" in forged
    assert "aigate.dev/retry must be" in approver.annotate(ns, name, {RETRY: "again by=approver"})
    # abort is lenient about the revision (stopping is the safe direction), not about who
    assert actors["sre"].annotate(ns, name, {ABORT: "by=sre p99 too high"}) == ""
    forged = actors["sre"].annotate(ns, name, {ABORT: "by=approver p99 too high"})
    assert 'aigate.dev/abort must be "[@<full 64-hex revision>] by=sre [text]"' in forged


def test_a_cluster_admin_cannot_write_status_approval_or_rollback(actors, policy_namespace):
    ns, admin = policy_namespace, actors["admin"]
    name = fresh(actors, ns)
    approval = ApprovalRecord(
        approved_by="jane@example.com",
        approved_at="2026-11-23T10:00:00Z",
        revision=REVISION,
        risk_acceptance="RISK-1",
        risk_accepted_by="ciso@example.com",
    )
    evil = RevisionSnapshot(revision=REVISION, version="6.6.6", content={"template": {}})
    rollback = RollbackState(
        reason="AbortRequested",
        message="forged",
        revision="e" * 64,
        target=evil,
        trigger=RollbackTrigger(kind="Request", detail="forged"),
        started_at="2026-11-23T10:00:00Z",
    )
    denied = admin.patch_status(ns, name, {"approval": dump(approval)})
    assert (
        f"aideployments/status is written only by the aigate operator "
        f"(system:serviceaccount:{ns}:{FULLNAME}); user admin may not write it" in denied
    )
    assert ONLY_OPERATOR_STATUS in admin.patch_status(ns, name, {"rollback": dump(rollback)})
    assert actors["operator"].patch_status(ns, name, {"phase": "Pending"}) == ""


def test_direct_edits_of_the_stable_deployment_are_refused(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    assert write_child_deployment(actors["operator"], ns, name) == ""
    set_image = {
        "spec": {"template": {"spec": {"containers": [{"name": "server", "image": "evil:2"}]}}}
    }
    denied = actors["admin"].patch_deployment(ns, f"{name}-stable", set_image)
    assert f"user admin may not (UPDATE {name}-stable)" in denied
    # removing the label to escape the policy is a change of a labelled object, refused too
    unlabel = {"metadata": {"labels": {OWNER_LABEL: None}}}
    assert ONLY_OPERATOR_CHILDREN in actors["admin"].patch_deployment(ns, f"{name}-stable", unlabel)


def test_a_deployment_with_a_hand_written_owner_reference_is_refused(actors, policy_namespace):
    ns, admin = policy_namespace, actors["admin"]
    name = fresh(actors, ns)
    aid = admin.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIDeployment",
        "name": name,
        "uid": aid["metadata"]["uid"],
        "controller": True,
    }
    body = bare_deployment(f"{name}-stable", {OWNER_LABEL: name}, owner)
    denied = admin._call(lambda: admin.apps.create_namespaced_deployment(ns, body))
    assert ONLY_OPERATOR_CHILDREN in denied


def test_pods_carrying_aigate_labels_cannot_be_made_by_hand(actors, policy_namespace):
    """Neither directly nor through an unlabelled Deployment whose pod template carries the
    label (its pods would be created by the ReplicaSet controller, which is trusted)."""
    ns, admin = policy_namespace, actors["admin"]
    name = fresh(actors, ns)
    assert ONLY_OPERATOR_PODS in write_child_pod(admin, ns, name)
    sneaky = bare_deployment(f"{name}-sidecar", {"app": "sidecar"})
    sneaky["spec"]["template"]["metadata"]["labels"][OWNER_LABEL] = name
    sneaky["spec"]["selector"] = {"matchLabels": {"app": "sidecar"}}
    denied = admin._call(lambda: admin.apps.create_namespaced_deployment(ns, sneaky))
    assert ONLY_OPERATOR_CHILDREN in denied


def test_the_operators_deployment_gets_ready_pods_through_the_builtin_controllers(
    actors, policy_namespace
):
    """The Deployment and ReplicaSet controllers act as their own ServiceAccounts
    (--use-service-account-credentials), which the children policy trusts."""
    ns, operator = policy_namespace, actors["operator"]
    name = fresh(actors, ns)
    assert write_child_deployment(operator, ns, name) == ""
    assert operator.patch_deployment(ns, f"{name}-stable", {"spec": {"replicas": 2}}) == ""

    def ready() -> bool:
        status = operator.apps.read_namespaced_deployment(f"{name}-stable", ns).status
        return (status.ready_replicas or 0) == 2

    wait_for(ready, timeout=90, what="2 Ready pods of the operator's Deployment")


def test_the_kubectl_plugin_approves_and_accepts_risk_as_two_people_under_the_policy(
    cluster, actors, policy_namespace
):
    """`kubectl aigate approve` by the approver and `kubectl aigate accept-risk` by the risk
    officer are admitted by the chart's default policy; the developer's approve is not."""
    from aigate import kubectl_plugin

    ns = policy_namespace
    name = fresh(actors, ns)

    def plugin(user: str, *command: str) -> int:
        kubeconfig = cluster.info.user_kubeconfigs[user]
        return kubectl_plugin.main(["--kubeconfig", kubeconfig, *command, name, "-n", ns, "--yes"])

    with pytest.raises(ApiException) as refused:
        plugin("developer", "approve")
    assert refused.value.status == 403
    assert "only members of" in refused.value.body
    assert plugin("approver", "approve") == 0
    assert plugin("risk-officer", "accept-risk", "--reference", "RISK-42") == 0
    annotations = actors["admin"].custom.get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name
    )["metadata"]["annotations"]
    assert (annotations[APPROVED_BY], annotations[RISK_BY]) == ("approver", "risk-officer")
    assert annotations[RISK] == "RISK-42"
