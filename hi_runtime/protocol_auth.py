"""Pre-shared-key challenge-response of the HI offload protocol (docs/protocol.md, "Authentication").

Both nonces enter both proofs, so neither side can replay an old conversation: the client proves it holds
the key over the server's fresh nonce, and the server answers with its own proof over the client's nonce,
which keeps devices from offloading to an impostor. The key itself never crosses the wire. This
authenticates the connection only; frames after it are not integrity-protected (use TLS for that).
"""
from __future__ import annotations

import hashlib
import hmac
import os

from hi_runtime.protocol_codec import NONCE_SIZE

CLIENT_LABEL = b"HI-AUTH-CLIENT"
SERVER_LABEL = b"HI-AUTH-SERVER"


def new_nonce() -> bytes:
    """A fresh random nonce from the OS CSPRNG."""
    return os.urandom(NONCE_SIZE)


def _transcript(label: bytes, server_nonce: bytes, client_nonce: bytes, version: int, client_name: str) -> bytes:
    if len(server_nonce) != NONCE_SIZE or len(client_nonce) != NONCE_SIZE:
        raise ValueError(f"nonces must be {NONCE_SIZE} bytes each")
    name = client_name.encode("ascii")
    return label + server_nonce + client_nonce + bytes([version, len(name)]) + name


def client_proof(key: bytes, server_nonce: bytes, client_nonce: bytes, version: int, client_name: str) -> bytes:
    """HMAC-SHA256(key, "HI-AUTH-CLIENT" || server_nonce || client_nonce || version || len(name) || name)."""
    return hmac.new(key, _transcript(CLIENT_LABEL, server_nonce, client_nonce, version, client_name),
                    hashlib.sha256).digest()


def server_proof(key: bytes, server_nonce: bytes, client_nonce: bytes, version: int, client_name: str) -> bytes:
    """HMAC-SHA256(key, "HI-AUTH-SERVER" || server_nonce || client_nonce || version || len(name) || name)."""
    return hmac.new(key, _transcript(SERVER_LABEL, server_nonce, client_nonce, version, client_name),
                    hashlib.sha256).digest()


def verify(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison, so timing does not leak how many MAC bytes matched."""
    return hmac.compare_digest(expected, received)
