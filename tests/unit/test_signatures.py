"""Signed approvals: the canonical statements and SSHSIG verification against an
allowed_signers registry, with real keys and signatures made by /usr/bin/ssh-keygen
(docs/decisions/0011-signed-approvals.md)."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from aigate import cli
from aigate.core import gate
from aigate.core.revision import compute_revision
from aigate.core.statements import (
    StatementError,
    approval_statement,
    escape,
    risk_statement,
    statements_of,
)
from aigate.kubectl_plugin import SigningError, ssh_sign
from aigate.signatures import check_annotations, parse_allowed_signers, principal_matches, verify
from support.factories import approval_annotations, spec_dict, spec_model
from support.sshkeys import Keys, ssh_keygen_verify

REVISION = "a" * 64
OTHER_REVISION = "b" * 64
JANE, CISO, BOB = "jane@example.com", "ciso@example.com", "bob@example.com"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def registry(keys):
    return parse_allowed_signers(keys.allowed_signers((JANE, "jane"), (BOB, "bob")))


def statement(**overrides: str) -> str:
    fields = {
        "revision": REVISION,
        "model": "fraud-scorer",
        "version": "2.4.0",
        "approved_by": JANE,
        "approved_at": "2026-11-20T10:00:00Z",
        "risk_acceptance": "RISK-1234",
        "conditions": "EU traffic only",
    }
    return approval_statement(**{**fields, **overrides})


# ---- the statements ------------------------------------------------------------------------


def test_the_approval_statement_is_exactly_this_text():
    assert statement() == (
        "aigate.dev approval v1\n"
        f"revision: {REVISION}\n"
        "model: fraud-scorer\n"
        "version: 2.4.0\n"
        "approved-by: jane@example.com\n"
        "approved-at: 2026-11-20T10:00:00Z\n"
        "risk-acceptance: RISK-1234\n"
        "conditions: EU traffic only\n"
    )


def test_the_risk_statement_is_exactly_this_text():
    text = risk_statement(
        revision=REVISION,
        model="fraud-scorer",
        version="2.4.0",
        risk_accepted_by=CISO,
        risk_acceptance="RISK-1234",
    )
    assert text == (
        "aigate.dev risk-acceptance v1\n"
        f"revision: {REVISION}\n"
        "model: fraud-scorer\n"
        "version: 2.4.0\n"
        "risk-accepted-by: ciso@example.com\n"
        "risk-acceptance: RISK-1234\n"
    )


def test_no_value_can_smuggle_a_field_into_the_statement():
    smuggled = statement(conditions="none\nrevision: " + OTHER_REVISION)
    assert smuggled.count("\n") == statement().count("\n")
    assert f"conditions: none\\nrevision: {OTHER_REVISION}\n" in smuggled
    assert escape("a\\nb") == "a\\\\nb"  # a literal backslash-n differs from a newline
    assert escape("a\nb") != escape("a\\nb")
    assert escape("x\r\u2028\x00") == "x\\r\\u{2028}\\u{0000}"


def test_a_statement_names_the_full_revision_or_none_is_made():
    with pytest.raises(StatementError, match="full 64-hex revision"):
        statement(revision=REVISION[:12])


def test_statements_use_the_values_as_the_gate_reads_them():
    annotations = approval_annotations(REVISION, datetime(2026, 11, 20, 10, tzinfo=UTC))
    annotations[gate.APPROVED_BY] = f"  {JANE} "
    approval, _ = statements_of(annotations, REVISION, "fraud-scorer", "2.4.0")
    assert f"approved-by: {JANE}\n" in approval


# ---- verification ----------------------------------------------------------------------------


def test_a_signature_by_the_approvers_registered_key_verifies(keys, registry):
    check = verify(statement(), keys.sign("jane", statement()), JANE, registry)
    assert check.verified, check.problem
    assert check.key_fingerprint == keys.fingerprint("jane")
    assert (check.signer, check.problem) == (JANE, "")


@pytest.mark.parametrize(
    ("signed_text", "problem"),
    [
        (statement(revision=OTHER_REVISION), "does not match the statement"),
        (statement(conditions="none"), "does not match the statement"),
        (statement(approved_at="2026-11-21T10:00:00Z"), "does not match the statement"),
        (statement(risk_acceptance="RISK-LOW"), "does not match the statement"),
        (statement(version="2.4.1"), "does not match the statement"),
    ],
    ids=["other-revision", "tampered-conditions", "other-time", "other-risk", "other-version"],
)
def test_a_signature_over_other_text_does_not_verify(keys, registry, signed_text, problem):
    check = verify(statement(), keys.sign("jane", signed_text), JANE, registry)
    assert not check.verified
    assert problem in check.problem
    assert check.key_fingerprint == keys.fingerprint("jane")


def test_a_signature_claimed_for_another_signer_identity_does_not_verify(keys, registry):
    """Bob signs a statement naming Jane as approver: his key is not Jane's."""
    check = verify(statement(), keys.sign("bob", statement()), JANE, registry)
    assert not check.verified
    assert check.problem == (
        f"key {keys.fingerprint('bob')} is registered in the approver key registry for "
        f"{BOB}, not for {JANE}"
    )


def test_a_statement_naming_another_approver_does_not_verify_janes_signature(keys, registry):
    """Jane's signature over her own statement, with approved-by changed to Bob."""
    check = verify(statement(approved_by=BOB), keys.sign("jane", statement()), BOB, registry)
    assert not check.verified
    assert "does not match the statement" in check.problem


def test_an_unknown_key_does_not_verify(keys, registry):
    check = verify(statement(), keys.sign("mallory", statement()), JANE, registry)
    assert not check.verified
    assert check.problem == (
        f"key {keys.fingerprint('mallory')} is not registered in the approver key registry"
    )


def test_a_signature_for_another_sshsig_namespace_does_not_verify(keys, registry):
    check = verify(statement(), keys.sign("jane", statement(), namespace="git"), JANE, registry)
    assert not check.verified
    assert "signed for the SSHSIG namespace 'git', expected 'aigate.dev'" in check.problem


def test_garbage_is_refused_with_what_was_expected(registry):
    check = verify(statement(), "hello", JANE, registry)
    assert not check.verified
    assert "not an armored SSH signature (-----BEGIN SSH SIGNATURE-----" in check.problem
    broken = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----"
    assert "not a readable SSH signature" in verify(statement(), broken, JANE, registry).problem


def test_rsa_keys_verify_and_ecdsa_keys_are_refused_clearly(keys):
    registry = parse_allowed_signers(
        keys.allowed_signers((JANE, "jane", "rsa"), (CISO, "ciso", "ecdsa"))
    )
    rsa = verify(statement(), keys.sign("jane", statement(), key_type="rsa"), JANE, registry)
    assert rsa.verified, rsa.problem
    assert rsa.key_fingerprint == keys.fingerprint("jane", "rsa")
    ecdsa = verify(statement(), keys.sign("ciso", statement(), key_type="ecdsa"), CISO, registry)
    assert not ecdsa.verified
    assert ecdsa.problem == (
        f"key {keys.fingerprint('ciso', 'ecdsa')} is of type ecdsa-sha2-nistp256, which aigate "
        f"does not verify (use Ed25519 or RSA)"
    )


def test_line_options_restrict_what_a_key_may_sign(keys):
    public = keys.public("jane")
    now = datetime(2026, 11, 23, tzinfo=UTC)
    signature = keys.sign("jane", statement())
    for line in (
        f'{JANE} namespaces="git" {public}',
        f'{JANE} valid-before="20260101" {public}',
        f'{JANE} valid-after="20270101Z" {public}',
    ):
        check = verify(statement(), signature, JANE, parse_allowed_signers(line), now)
        assert "options do not allow namespace aigate.dev" in check.problem, line
    good = f'{JANE} valid-after="20260101",valid-before="20270101" {public}'
    assert verify(statement(), signature, JANE, parse_allowed_signers(good), now).verified


def test_a_bad_registry_line_grants_nothing_and_disables_no_other_line(keys):
    text = f"{JANE} ssh-ed25519 AAAAnotakey\n{BOB} cert-authority {keys.public('bob')}\n"
    text += keys.allowed_signers((JANE, "jane"))
    registry = parse_allowed_signers(text, "registry")
    assert len(registry.signers) == 1
    assert registry.problems[0].startswith("registry line 1:")
    assert "cert-authority lines are not supported" in registry.problems[1]
    assert verify(statement(), keys.sign("jane", statement()), JANE, registry).verified


def test_principal_patterns_follow_openssh():
    assert principal_matches("*@example.com", JANE)
    assert principal_matches("bob@example.com,jane@example.com", JANE)
    assert not principal_matches("*@example.com,!jane@example.com", JANE)
    assert not principal_matches("jane@example.co?x", JANE)
    assert not principal_matches("jane@example.com.evil", JANE)


def test_check_annotations_checks_each_signature_against_its_own_statement(keys, registry):
    spec = spec_model(spec_dict(governance={"approvalTTL": "168h"}))
    revision = compute_revision(spec)
    annotations = approval_annotations(revision, datetime.now(UTC) - timedelta(minutes=5))
    approval, risk = statements_of(annotations, revision, "fraud-scorer", "2.4.0")
    annotations[gate.APPROVAL_SIGNATURE] = keys.sign("jane", approval)
    annotations[gate.RISK_SIGNATURE] = keys.sign("jane", risk)  # not the CISO's key
    found = check_annotations(spec, annotations, registry)
    assert found.approval is not None and found.approval.verified
    assert found.risk is not None and not found.risk.verified
    assert f"for {JANE}, not for {CISO}" in found.risk.problem
    assert found.required_by == "riskTier high (spec.governance.requireSignedApproval unset)"
    unavailable = check_annotations(spec, annotations, None, "no registry configured")
    assert unavailable.approval is not None and unavailable.approval.problem == (
        "no registry configured"
    )


# ---- interop: ssh-keygen -Y verify agrees -----------------------------------------------------


def test_ssh_keygen_verify_accepts_what_aigate_accepts_and_refuses_what_it_refuses(keys, tmp_path):
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(keys.allowed_signers((JANE, "jane"), (BOB, "bob")))
    registry = parse_allowed_signers(allowed.read_text())
    text = statement()
    cases = [
        (keys.sign("jane", text), JANE, True),
        (keys.sign("bob", text), JANE, False),
        (keys.sign("jane", statement(revision=OTHER_REVISION)), JANE, False),
        (keys.sign("mallory", text), JANE, False),
        (keys.sign("jane", text, namespace="git"), JANE, False),
    ]
    for signature, identity, expected in cases:
        ours = verify(text, signature, identity, registry).verified
        openssh = ssh_keygen_verify(allowed, identity, signature, text, tmp_path)
        assert ours is expected
        assert (openssh.returncode == 0) is expected, openssh.stdout + openssh.stderr


# ---- the CLI: signing with ssh-keygen, verifying a manifest offline ---------------------------


def signed_manifest(keys: Keys, approver: str = "jane", acceptor: str = "ciso") -> dict:
    raw = spec_dict(governance={"approvalTTL": "168h"})  # riskTier high: signatures required
    spec = spec_model(raw)
    revision = compute_revision(spec)
    annotations = approval_annotations(revision, datetime(2026, 11, 20, 10, tzinfo=UTC))
    approval, risk = statements_of(annotations, revision, "fraud-scorer", "2.4.0")
    annotations[gate.APPROVAL_SIGNATURE] = ssh_sign(approval, keys.path(approver))
    annotations[gate.RISK_SIGNATURE] = ssh_sign(risk, keys.path(acceptor))
    return {
        "apiVersion": "aigate.dev/v1alpha1",
        "kind": "AIDeployment",
        "metadata": {"name": "fraud-scorer", "annotations": annotations},
        "spec": raw,
    }


def test_aigate_verify_approval_checks_a_manifest_offline(keys, tmp_path, capsys):
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(keys.allowed_signers((JANE, "jane"), (CISO, "ciso")))
    manifest = tmp_path / "aid.yaml"
    manifest.write_text(yaml.safe_dump(signed_manifest(keys)))
    assert (
        cli.main(["verify-approval", "-f", str(manifest), "--allowed-signers", str(allowed)]) == 0
    )
    out = capsys.readouterr().out
    assert f"approval: signed by {JANE} with key {keys.fingerprint('jane')}: verified" in out
    assert f"risk acceptance: signed by {CISO} with key {keys.fingerprint('ciso')}: verified" in out

    forged = signed_manifest(keys, acceptor="jane")  # the approver signs the CISO's part
    manifest.write_text(yaml.safe_dump(forged))
    assert (
        cli.main(["verify-approval", "-f", str(manifest), "--allowed-signers", str(allowed)]) == 1
    )
    assert f"is registered in {allowed} for {JANE}, not for {CISO}" in capsys.readouterr().out

    unsigned = signed_manifest(keys)
    del unsigned["metadata"]["annotations"][gate.APPROVAL_SIGNATURE]
    unsigned["spec"]["replicas"] = 9  # scaling keeps the revision and the signatures
    manifest.write_text(yaml.safe_dump(unsigned))
    assert (
        cli.main(["verify-approval", "-f", str(manifest), "--allowed-signers", str(allowed)]) == 1
    )
    out = capsys.readouterr().out
    assert "approval: not signed (required by riskTier high" in out
    assert "risk acceptance: signed by ciso@example.com" in out


def test_the_plugin_signs_with_a_public_key_through_the_ssh_agent(keys, tmp_path, registry):
    """Given a .pub and SSH_AUTH_SOCK, ssh-keygen signs with the agent's key."""
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket)}
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(keys.path("jane"))], env=env, check=True)
        os.environ["SSH_AUTH_SOCK"] = str(socket)
        try:
            signature = ssh_sign(statement(), Path(f"{keys.path('jane')}.pub"))
        finally:
            del os.environ["SSH_AUTH_SOCK"]
    finally:
        agent.terminate()
        agent.wait(10)
    assert verify(statement(), signature, JANE, registry).verified


def test_the_plugin_refuses_to_sign_with_a_key_that_is_not_there(tmp_path):
    with pytest.raises(SigningError, match=r"ssh-keygen -Y sign -f .*missing failed"):
        ssh_sign(statement(), tmp_path / "missing")
