"""engine.service.auth on its own: a signing key and a replay history per identity, and the ZAP
decisions. The real engine under attack is in tests/test_hostile_peers.py."""

from __future__ import annotations

import json
import time

from bridge import protocol
from bridge.protocol import DELIMITER, REQUESTS, Session
from engine.service.auth import Admission, Signers, identity_key
from engine.service.store import LOCAL_OWNER

MASTER = "c" * 64
ALICE, BOB = "A" * 40, "B" * 40  # identities: Z85 public keys


def status(session: Session, date: float, n: int) -> list[bytes]:
    header = {"msg_id": f"m{n}", "msg_type": "status_request", "version": protocol.VERSION}
    header["date"] = protocol.timestamp(date)
    parts = [json.dumps(header).encode(), b"{}", b"{}", b"{}"]
    return [DELIMITER, session.sign(parts), *parts]


def test_each_identity_has_its_own_key_and_the_local_user_the_engine_s():
    keys = {identity_key(MASTER, who) for who in (ALICE, BOB, LOCAL_OWNER)}
    assert len(keys) == 3 and identity_key(MASTER, LOCAL_OWNER) == MASTER
    assert identity_key(MASTER, ALICE) == identity_key(MASTER, ALICE) != identity_key("d" * 64, ALICE)
    signers = Signers(MASTER, protocol.MAX_MESSAGE_BYTES)
    alice = Session(identity_key(MASTER, ALICE))
    assert signers.session(ALICE).deserialize(status(alice, time.time(), 0), REQUESTS)
    refused = signers.session(BOB)
    try:
        refused.deserialize(status(alice, time.time(), 1), REQUESTS)
    except protocol.ProtocolError as err:
        assert "signature" in err.message
    else:
        raise AssertionError("bob's session accepted alice's signature")


def test_one_identity_overflowing_its_history_moves_only_its_own_horizon(monkeypatch):
    """Issue 22: alice's flood (more requests than the history holds, dated as far ahead as the
    skew allows) used to move the one horizon past everyone's clock."""
    monkeypatch.setattr(protocol, "DIGEST_HISTORY", 3)
    signers = Signers(MASTER, protocol.MAX_MESSAGE_BYTES)
    alice = Session(identity_key(MASTER, ALICE))
    ahead = time.time() + protocol.CLOCK_SKEW_S - 1
    for n in range(10):
        signers.session(ALICE).deserialize(status(alice, ahead + n / 1000, n), REQUESTS)
    try:  # her own: older than what she made the engine forget
        signers.session(ALICE).deserialize(status(alice, time.time(), 99), REQUESTS)
    except protocol.ProtocolError as err:
        assert "too old" in err.message
    else:
        raise AssertionError("alice's horizon did not move")
    for who in (BOB, LOCAL_OWNER):  # everyone else: untouched
        session = Session(identity_key(MASTER, who))
        assert signers.session(who).deserialize(status(session, time.time(), 0), REQUESTS).msg_type == "status_request"


def test_the_loopback_engine_admits_the_key_s_password_from_loopback_only():
    admission = Admission(MASTER, None)
    password = protocol.plain_password(MASTER)

    def zap(address: bytes, mechanism: bytes, *credentials: bytes) -> list[bytes]:
        return admission.admit([b"1.0", b"7", b"", address, b"", mechanism, *credentials])

    assert zap(b"127.0.0.1", b"PLAIN", protocol.PLAIN_USER, password)[2:5] == [b"200", b"OK", LOCAL_OWNER.encode()]
    assert zap(b"::1", b"PLAIN", protocol.PLAIN_USER, password)[2] == b"200"
    assert zap(b"192.0.2.7", b"PLAIN", protocol.PLAIN_USER, password)[2] == b"400"
    assert zap(b"127.0.0.1", b"PLAIN", protocol.PLAIN_USER, b"guess")[2] == b"400"
    assert zap(b"127.0.0.1", b"NULL")[2] == b"400"
    assert zap(b"127.0.0.1", b"CURVE", b"\0" * 32)[2] == b"400"  # a loopback-only engine speaks PLAIN only
