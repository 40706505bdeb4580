"""Per-VM SSH keys: a client key to log in with and the guest's host key, both made here.

Generating the host key on the host lets us pin it before the first boot: the guest gets it
through the seed disk, so there is no trust-on-first-use and no keygen at boot.
"""

from __future__ import annotations

import base64
from pathlib import Path

from runtime.fsutil import write_atomic


def generate_ed25519(private_path: Path, comment: str) -> str:
    """Write an OpenSSH private key (0600) and ``.pub``; return the public line. Idempotent."""
    pub_path = private_path.with_name(private_path.name + ".pub")
    if private_path.exists() and pub_path.exists():
        return pub_path.read_text().strip()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    write_atomic(private_path, private, mode=0o600)
    write_atomic(pub_path, (line + "\n").encode())
    return line


def known_hosts_line(host: str, port: int, public_line: str) -> str:
    kind, blob = public_line.split()[:2]
    base64.b64decode(blob)  # validate
    return f"[{host}]:{port} {kind} {blob}\n"
