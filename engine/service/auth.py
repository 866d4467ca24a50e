"""Who may talk to the engine, and under which key: the ZAP check at the handshake, a signing key
and a replay history per identity.

An identity is who owns jobs: LOCAL_OWNER for this machine's user (the key pair or PLAIN password
of the local connection file), or an allowed client's public key (Z85). Each identity signs with a
key of its own (identity_key): the engine's signing key for the local user, a key derived from it
for each remote client, so that a remote connection file signs for its designer and no one else.
Each identity's Session keeps its own replay history (bridge.protocol): one client's flood of
requests, dated as far ahead as the clock skew allows, fills its own history only, never the
local administrator's or another client's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

import zmq
import zmq.utils.z85

from bridge import protocol
from bridge.errors import EngineError
from engine.service import keys
from engine.service.log import log
from engine.service.store import LOCAL_OWNER


def identity_key(master: str, identity: str) -> str:
    """The signing key of `identity` on an engine whose own signing key is `master` (hex)."""
    if identity == LOCAL_OWNER:
        return master
    label = b"sketch-abstraction identity " + identity.encode()
    return hmac.new(master.encode("ascii"), label, hashlib.sha256).hexdigest()


class Signers:
    """One bridge.protocol.Session per identity: its key and its replay history."""

    def __init__(self, master: str, max_bytes: int):
        self.master, self.max_bytes = master, max_bytes
        self._sessions: dict[str, protocol.Session] = {}

    def session(self, identity: str) -> protocol.Session:
        """The Session of `identity` (made at its first message; identities are admitted ones only)."""
        session = self._sessions.get(identity)
        if session is None:
            session = self._sessions[identity] = protocol.Session(identity_key(self.master, identity), self.max_bytes)
        return session


class Forbidden(EngineError):
    code = protocol.FORBIDDEN


class Admission:
    """The ZAP handler's decisions. A loopback-only engine (`curve` None) speaks PLAIN with the
    key-derived password of `master`; one serving the network speaks CURVE: this machine's key pair
    (identity LOCAL_OWNER) or a key of the allowed folder (identity: the key)."""

    def __init__(self, master: str, curve: keys.ServerKeys | None):
        self.master, self.curve = master, curve
        self.allowed = keys.Allowed(keys.allowed_folder()) if curve is not None else None
        self.local_public, self.local_secret = zmq.curve_keypair() if curve is not None else (b"", b"")

    def local_fields(self) -> dict[str, Any]:  # ConnectionInfo fields
        """The CURVE fields of this machine's connection file (none for a loopback-only engine)."""
        if self.curve is None:
            return {}
        return {
            "server_key": self.curve.public.decode(),
            "public_key": self.local_public.decode(),
            "secret_key": self.local_secret.decode(),
        }

    def admit(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply (RFC 27) for a peer's handshake: 200 with its identity, or 400. NULL and
        anything else is refused."""
        version, request_id = request[:2] if len(request) >= 2 else (b"1.0", b"")
        address, mechanism, credentials = (request[3], request[5], request[6:]) if len(request) >= 6 else (b"", b"", [])
        user = b""
        if mechanism == b"PLAIN" and self.curve is None and _loopback(address):
            expected = [protocol.PLAIN_USER, protocol.plain_password(self.master)]
            if len(credentials) == 2 and all(hmac.compare_digest(a, b) for a, b in zip(credentials, expected)):
                user = LOCAL_OWNER.encode()
        elif mechanism == b"CURVE" and self.allowed is not None and len(credentials) == 1:
            public = zmq.utils.z85.encode(credentials[0])
            if hmac.compare_digest(public, self.local_public):
                user = LOCAL_OWNER.encode()
            elif self.allowed.name(public) is not None:
                user = public
            else:
                log(f"refused a connection from {address.decode(errors='replace')}: its key is not allowed")
        status = [b"200", b"OK"] if user else [b"400", b"not allowed"]
        return [version, request_id, *status, user, b""]

    def check(self, sender: str) -> None:
        """Forbidden when `sender`'s key was revoked after its connection was admitted."""
        if sender != LOCAL_OWNER and (self.allowed is None or self.allowed.name(sender.encode()) is None):
            raise Forbidden(
                "this key is no longer allowed on the engine (revoked)",
                "ask the engine's administrator for a new connection file",
            )


def _loopback(address: bytes) -> bool:
    try:
        return ipaddress.ip_address(address.decode("ascii")).is_loopback
    except ValueError:
        return False
