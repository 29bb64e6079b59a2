"""Real SSH keys and signatures made by OpenSSH's ssh-keygen, for the signed-approval tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

SSH_KEYGEN = "/usr/bin/ssh-keygen"


class Keys:
    """Key pairs in one directory, made on first use: `path(name)` is the private key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str, key_type: str = "ed25519") -> Path:
        key = self.directory / f"{name}_{key_type}"
        if not key.exists():
            extra = ["-b", "2048"] if key_type == "rsa" else []
            subprocess.run(
                [SSH_KEYGEN, "-q", "-t", key_type, *extra, "-N", "", "-C", name, "-f", str(key)],
                check=True,
            )
        return key

    def public(self, name: str, key_type: str = "ed25519") -> str:
        return Path(f"{self.path(name, key_type)}.pub").read_text().strip()

    def sign(
        self, name: str, text: str, namespace: str = "aigate.dev", key_type: str = "ed25519"
    ) -> str:
        """`ssh-keygen -Y sign` over `text` from stdin: the armored signature."""
        result = subprocess.run(
            [SSH_KEYGEN, "-Y", "sign", "-f", str(self.path(name, key_type)), "-n", namespace],
            input=text.encode(),
            capture_output=True,
            check=True,
        )
        return result.stdout.decode()

    def fingerprint(self, name: str, key_type: str = "ed25519") -> str:
        out = subprocess.run(
            [SSH_KEYGEN, "-l", "-E", "sha256", "-f", f"{self.path(name, key_type)}.pub"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def allowed_signers(self, *entries: tuple[str, str] | tuple[str, str, str]) -> str:
        """Lines `<principals> namespaces="aigate.dev" <key of name>` for (principals, name)
        or (principals, name, key_type)."""
        lines = []
        for entry in entries:
            principals, name, *rest = entry
            key_type = rest[0] if rest else "ed25519"
            lines.append(f'{principals} namespaces="aigate.dev" {self.public(name, key_type)}')
        return "\n".join(lines) + "\n"


def ssh_keygen_verify(
    allowed_signers: Path, identity: str, signature: str, statement: str, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """`ssh-keygen -Y verify`, as an auditor would run it offline."""
    sig = tmp / "statement.sig"
    sig.write_text(signature)
    return subprocess.run(
        [
            SSH_KEYGEN,
            "-Y",
            "verify",
            "-f",
            str(allowed_signers),
            "-I",
            identity,
            "-n",
            "aigate.dev",
            "-s",
            str(sig),
        ],
        input=statement,
        capture_output=True,
        text=True,
        check=False,
    )
