"""The operator's record-signing key (Ed25519, `cryptography`) and the published public keys.

The private key lives in a Secret only the operator reads (created by the operator on first
start when absent; a concurrent start that loses the race reads the winner's). The public
keys are published in a ConfigMap beside it as OpenSSH public keys by key id, old ones kept,
so `kubectl aigate verify` and offline readers check records signed before a rotation. The
key id is the SHA256 fingerprint of the OpenSSH key blob, as `ssh-keygen -l` prints it.
The private key is never logged and never leaves this module but into the Secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.kube import _translate
from aigate.adapters.rest import Objects, object_path
from aigate.api.records import AIRecordSpec, RecordSignature
from aigate.core import records

log = logging.getLogger("aigate.signing")

KEY_SECRET = "aigate-record-signing-key"  # noqa: S105 (a name, not a secret)
KEY_FIELD = "ed25519.pem"
PUBLIC_KEYS_CONFIGMAP = "aigate-record-keys"
PUBLIC_KEYS_FIELD = "keys.json"


def key_id(public: Ed25519PublicKey) -> str:
    openssh = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(openssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def openssh_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An OpenSSH (`ssh-ed25519 AAAA...`) or PEM public key; ValueError if neither."""
    data = text.strip().encode()
    loaded = (
        serialization.load_ssh_public_key(data)
        if data.startswith(b"ssh-")
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError(f"expected an Ed25519 public key, found {type(loaded).__name__}")
    return loaded


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, record: AIRecordSpec) -> AIRecordSpec:
        """The record with the signature over its digest (Ed25519 is deterministic: signing
        the same digest again gives the same signature)."""
        value = self.private.sign(records.signed_message(record.digest))
        signature = RecordSignature(key_id=self.key_id, value=base64.b64encode(value).decode())
        return record.model_copy(update={"signature": signature})

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def signature_checker(public_keys: Mapping[str, Ed25519PublicKey]) -> records.SignatureCheck:
    """check_signature for core.records.check_chain: "" or what is wrong, by key id."""

    def check(record: AIRecordSpec) -> str:
        signature = record.signature
        if signature.algorithm != "Ed25519":
            return f"algorithm {signature.algorithm!r} is not Ed25519"
        public = public_keys.get(signature.key_id)
        if public is None:
            known = ", ".join(sorted(public_keys)) or "none"
            return f"key {signature.key_id!r} is not a published operator key (known: {known})"
        try:
            value = base64.b64decode(signature.value, validate=True)
            public.verify(value, records.signed_message(record.digest))
        except (InvalidSignature, binascii.Error, ValueError):
            return f"does not verify with key {signature.key_id} over field digest"
        return ""

    return check


def public_keys_from(data: Mapping[str, str] | None) -> dict[str, Ed25519PublicKey]:
    """The ConfigMap's keys.json ({key id: OpenSSH key}); a key whose id does not match
    its content is left out (a renamed key proves nothing)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for claimed, text in json.loads((data or {}).get(PUBLIC_KEYS_FIELD) or "{}").items():
        try:
            public = parse_public_key(text)
        except ValueError:
            continue
        if key_id(public) == claimed:
            keys[claimed] = public
    return keys


class KeyStore:
    """The Secret and the ConfigMap in the records namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.objects = Objects(api_client)
        self.namespace = namespace

    def load_or_create(self) -> Signer:
        signer = self._read() or self._create()
        self._publish(signer)
        log.info(
            "record signing key %s (Secret %s/%s); public keys in ConfigMap %s/%s",
            signer.key_id,
            self.namespace,
            KEY_SECRET,
            self.namespace,
            PUBLIC_KEYS_CONFIGMAP,
        )
        return signer

    def _read(self) -> Signer | None:
        try:
            secret = self.objects.get(object_path("v1", "secrets", self.namespace, KEY_SECRET))
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"read Secret {self.namespace}/{KEY_SECRET}") from error
        pem = base64.b64decode((secret.get("data") or {}).get(KEY_FIELD, ""))
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"Secret {self.namespace}/{KEY_SECRET}: {KEY_FIELD} is not Ed25519")
        return Signer(private)

    def _create(self) -> Signer:
        signer = generate()
        body = {
            "metadata": {"name": KEY_SECRET, "namespace": self.namespace},
            "type": "Opaque",
            "data": {KEY_FIELD: base64.b64encode(signer.private_pem()).decode()},
        }
        try:
            self.objects.request("POST", object_path("v1", "secrets", self.namespace), body)
        except ApiException as error:
            if error.status == 409:  # another replica made it first: use that one
                read = self._read()
                if read is not None:
                    return read
            raise _translate(error, f"create Secret {self.namespace}/{KEY_SECRET}") from error
        return signer

    def _publish(self, signer: Signer) -> None:
        """Adds the key to the published ones (never removes one: old records stay
        verifiable); 409-safe against a concurrent start."""
        for _ in range(5):
            try:
                current = self.objects.get(
                    object_path("v1", "configmaps", self.namespace, PUBLIC_KEYS_CONFIGMAP)
                )
            except ApiException as error:
                if error.status != 404:
                    raise _translate(error, f"read ConfigMap {PUBLIC_KEYS_CONFIGMAP}") from error
                current = None
            data = (current.get("data") or {}) if current is not None else {}
            keys = json.loads(data.get(PUBLIC_KEYS_FIELD) or "{}")
            if keys.get(signer.key_id) == openssh_text(signer.private.public_key()):
                return
            keys[signer.key_id] = openssh_text(signer.private.public_key())
            body = {
                "metadata": {"name": PUBLIC_KEYS_CONFIGMAP, "namespace": self.namespace},
                "data": {PUBLIC_KEYS_FIELD: json.dumps(keys, indent=1, sort_keys=True)},
            }
            try:
                if current is None:
                    self.objects.request(
                        "POST", object_path("v1", "configmaps", self.namespace), body
                    )
                else:
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    self.objects.request(
                        "PUT",
                        object_path("v1", "configmaps", self.namespace, PUBLIC_KEYS_CONFIGMAP),
                        body,
                    )
                return
            except ApiException as error:
                if error.status != 409:
                    raise _translate(error, f"publish ConfigMap {PUBLIC_KEYS_CONFIGMAP}") from error
        raise RuntimeError(f"ConfigMap {PUBLIC_KEYS_CONFIGMAP} kept changing while publishing")
