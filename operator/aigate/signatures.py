"""Verifies SSH signatures (SSHSIG, `ssh-keygen -Y sign`) of approval statements against
an OpenSSH allowed_signers registry, as `ssh-keygen -Y verify` would.

`sshsig` (PyPI, on `cryptography`) does the cryptography: the armored format, the signed
wrapper, Ed25519 and RSA (rsa-sha2-256/512) keys. What it leaves to its caller is done
here: the identity check (the signer identity must be a principal of an allowed_signers
line holding the signing key), the line options (`namespaces=`, `valid-after=`,
`valid-before=`; `cert-authority` lines are refused), and the words of every refusal.
ECDSA and security-key (sk-*) signatures are refused with a clear message: sshsig 0.3
does not verify them. See docs/decisions/0011-signed-approvals.md.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sshsig import InvalidSignature, PublicKey, check_signature
from sshsig.allowed_signers import AllowedSigner
from sshsig.sshsig import SshsigSignature

from aigate.api.v1alpha1 import AIDeploymentSpec, SignatureCheck
from aigate.core import gate
from aigate.core.revision import compute_revision
from aigate.core.statements import SSHSIG_NAMESPACE, statements_of

_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
_HASHES = (b"sha256", b"sha512")  # what PROTOCOL.sshsig allows
_MAX_SIGNATURE = 16384  # an RSA-8192 signature is ~2.5 KiB armored


@dataclass(frozen=True)
class Signer:
    """One usable allowed_signers line."""

    principals: str
    key: PublicKey
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None


@dataclass(frozen=True)
class Registry:
    """The allowed_signers lines that could be used, and why the others could not."""

    signers: tuple[Signer, ...]
    problems: tuple[str, ...] = ()
    source: str = "the approver key registry"


def parse_allowed_signers(text: str, source: str = "the approver key registry") -> Registry:
    """Each line on its own: a line that cannot be read grants nothing and is reported;
    it never disables the others."""
    signers, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            signers.append(_signer(AllowedSigner.parse(line)))
        except (ValueError, NotImplementedError) as error:
            problems.append(f"{source} line {number}: {error}")
    return Registry(tuple(signers), tuple(problems), source)


def _signer(line: AllowedSigner) -> Signer:
    options = line.options or {}
    if "cert-authority" in options:
        raise ValueError("cert-authority lines are not supported (certificates are refused)")
    key = PublicKey.from_openssh_str(f"{line.key_type} {line.base64_key}")
    return Signer(
        principals=line.principals,
        key=key,
        namespaces=options.get("namespaces"),
        valid_after=_ssh_time(options["valid-after"]) if "valid-after" in options else None,
        valid_before=_ssh_time(options["valid-before"]) if "valid-before" in options else None,
    )


def _ssh_time(text: str) -> datetime:
    """YYYYMMDD[HHMM[SS]][Z], as ssh-keygen reads it (local time without Z: taken as UTC
    here, which the decision record says)."""
    match = re.fullmatch(r"(\d{8})(\d{4}(\d{2})?)?Z?", text)
    if not match:
        raise ValueError(f"valid-after/valid-before {text!r}: expected YYYYMMDD[HHMM[SS]][Z]")
    digits = (match.group(1) + (match.group(2) or "0000")).ljust(14, "0")
    return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def fingerprint(key_blob: bytes) -> str:
    """`ssh-keygen -l` style: SHA256:<unpadded base64>."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def verify(
    statement: str,
    armored: str,
    identity: str,
    registry: Registry,
    now: datetime | None = None,
    namespace: str = SSHSIG_NAMESPACE,
) -> SignatureCheck:
    """Does `armored` sign `statement` with a key registered for `identity`? The answer
    names the key that signed and, when it does not verify, exactly why."""
    check = SignatureCheck(signer=identity, signature=armored)
    outer, problem = _parse(armored)
    if outer is None:
        return check.model_copy(update={"problem": problem})
    check.key_fingerprint = fingerprint(outer.public_key)
    problem = _check_crypto(outer, statement, armored, namespace, check.key_fingerprint)
    if problem:
        return check.model_copy(update={"problem": problem})
    key = PublicKey.from_ssh_encoding(outer.public_key)
    problem = _check_registered(key, identity, registry, now or datetime.now(UTC), namespace)
    if problem:
        return check.model_copy(update={"problem": f"key {check.key_fingerprint} {problem}"})
    check.verified = True
    return check


def check_annotations(
    spec: AIDeploymentSpec,
    annotations: Mapping[str, str],
    registry: Registry | None,
    unavailable: str = "",
    now: datetime | None = None,
) -> gate.Signatures:
    """Checks each signature annotation present against the statement of the spec's
    revision and these annotations, with a key registered for approved-by (resp.
    risk-accepted-by); `unavailable` says why there is no registry to check with."""
    approval, risk = statements_of(
        annotations, compute_revision(spec), spec.model.name, spec.model.version
    )
    checks: dict[str, SignatureCheck] = {}
    for annotation, statement, signer in (
        (gate.APPROVAL_SIGNATURE, approval, gate.APPROVED_BY),
        (gate.RISK_SIGNATURE, risk, gate.RISK_ACCEPTED_BY),
    ):
        if annotation not in annotations:
            continue
        identity, armored = annotations.get(signer, "").strip(), annotations[annotation]
        if registry is None:
            checks[annotation] = SignatureCheck(
                signer=identity, signature=armored, problem=unavailable or "no key registry"
            )
        else:
            checks[annotation] = verify(statement, armored, identity, registry, now)
    return gate.Signatures(
        approval=checks.get(gate.APPROVAL_SIGNATURE),
        risk=checks.get(gate.RISK_SIGNATURE),
        required_by=gate.signatures_required_by(spec),
    )


def _parse(armored: str) -> tuple[SshsigSignature | None, str]:
    text = armored.strip()
    if len(text) > _MAX_SIGNATURE:
        return None, f"longer than {_MAX_SIGNATURE} characters: not an SSH signature"
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        return None, f"not an armored SSH signature ({_BEGIN} ... {_END})"
    try:
        return SshsigSignature.from_armored(text), ""
    except (ValueError, NotImplementedError, IndexError) as error:
        return None, f"not a readable SSH signature: {error}"


def _check_crypto(
    outer: SshsigSignature, statement: str, armored: str, namespace: str, key_fp: str
) -> str:
    if outer.namespace != namespace.encode():
        found = outer.namespace.decode(errors="replace")
        return f"signed for the SSHSIG namespace {found!r}, expected {namespace!r} (ssh-keygen -Y sign -n {namespace})"
    if outer.hash_algo not in _HASHES:
        return f"hash {outer.hash_algo.decode(errors='replace')!r} is not sha256 or sha512"
    key_type = _key_type(outer.public_key)
    if key_type not in ("ssh-ed25519", "ssh-rsa"):
        return (
            f"key {key_fp} is of type {key_type}, which aigate does not verify (use Ed25519 or RSA)"
        )
    try:
        check_signature(io.BytesIO(statement.encode()), armored.strip(), namespace)
    except (InvalidSignature, ValueError, NotImplementedError):
        return (
            f"signature by key {key_fp} does not match the statement: it was made over other "
            f"text (another revision, model, version, signer, time, risk reference or "
            f"conditions than these annotations say)"
        )
    return ""


def _key_type(blob: bytes) -> str:
    if len(blob) < 4:
        return "(none)"
    length = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + length].decode(errors="replace") or "(none)"


def _check_registered(
    key: PublicKey, identity: str, registry: Registry, now: datetime, namespace: str
) -> str:
    lines = [s for s in registry.signers if s.key == key]
    if not lines:
        return f"is not registered in {registry.source}"
    mine = [s for s in lines if principal_matches(s.principals, identity)]
    if not mine:
        others = ", ".join(sorted({s.principals for s in lines}))
        return f"is registered in {registry.source} for {others}, not for {identity}"
    for signer in mine:
        if signer.namespaces is not None and not principal_matches(signer.namespaces, namespace):
            continue
        if signer.valid_after is not None and now < signer.valid_after:
            continue
        if signer.valid_before is not None and now > signer.valid_before:
            continue
        return ""
    return (
        f"is registered for {identity} in {registry.source}, but its line's namespaces= or "
        f"valid-after/valid-before options do not allow namespace {namespace} at {now:%Y-%m-%dT%H:%M:%SZ}"
    )


def principal_matches(patterns: str, name: str) -> bool:
    """OpenSSH's match_pattern_list: comma-separated patterns with `*` and `?`; a matching
    `!pattern` refuses whatever else matches."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        glob = pattern[1:] if negated else pattern
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
        if re.fullmatch(regex, name, flags=re.DOTALL):
            if negated:
                return False
            matched = True
    return matched
