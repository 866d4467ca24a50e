"""The keys of an engine that serves the network (`serve --listen`): CurveZMQ certificates on disk.

    <data dir>/keys/            0700
        server.key              the engine's public key (designers' connection files carry it)
        server.key_secret       its secret key (0600)
        signing.key             the HMAC key messages are signed with (0600), the same across restarts
        clients/NAME.key[_secret]   key pairs made by `keys new NAME`, kept for `keys export`
        allowed/NAME.key        the public keys the engine accepts; `keys revoke NAME` deletes one

Files are pyzmq's certificate format (zmq.auth.certs), so a key pair made with pyzmq's own tools
or another ZeroMQ program can be allowed too. The engine reads `allowed/` at every handshake and
rechecks it at every message, so that a revoked key is refused at once, also on a connection
opened before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from bridge import connection, protocol
from bridge.atomic import write_atomic
from bridge.errors import EngineError, InputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SERVER = "server"


def keys_dir() -> Path:
    return connection.private_folder(connection.data_dir() / "keys")


def check_name(name: str) -> str:
    """A key's NAME: letters, digits, '_', '.', '-' (it names files)."""
    if not _NAME.fullmatch(name) or name == SERVER:
        raise InputError(
            f"{name!r} is not a usable key name",
            "use letters, digits, '_', '.' and '-' (at most 64), not 'server', e.g. alice-laptop",
        )
    return name


@dataclass(frozen=True)
class ServerKeys:
    public: bytes  # Z85
    secret: bytes  # Z85
    signing: str  # hex HMAC key


def server_keys(folder: Path | None = None) -> ServerKeys:
    """The engine's certificate and signing key, made on first use."""
    folder = folder or keys_dir()
    if not (folder / f"{SERVER}.key_secret").exists():
        if not zmq.has("curve"):
            raise EngineError(
                "this pyzmq's libzmq has no CURVE support, so the engine cannot serve the network securely",
                "install pyzmq from its wheels (pip install --force-reinstall pyzmq), which include it",
            )
        zmq.auth.create_certificates(str(folder), SERVER)
        os.chmod(folder / f"{SERVER}.key_secret", 0o600)
    signing = folder / "signing.key"
    if not signing.exists():
        write_atomic(signing, protocol.new_key().encode("ascii"), mode=0o600)
    public, secret = zmq.auth.load_certificate(str(folder / f"{SERVER}.key_secret"))
    assert secret is not None
    return ServerKeys(public, secret, signing.read_text(encoding="ascii").strip())


def allowed_folder(folder: Path | None = None) -> Path:
    return connection.private_folder((folder or keys_dir()) / "allowed")


def clients_folder(folder: Path | None = None) -> Path:
    return connection.private_folder((folder or keys_dir()) / "clients")


class Allowed:
    """The allowed public keys (Z85) and their names, reread whenever the folder changes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._stamp: int | None = None
        self._names: dict[bytes, str] = {}

    def name(self, public: bytes) -> str | None:
        """The NAME the key was allowed under, or None when it is not (or no longer) allowed."""
        try:
            stamp = os.stat(self.folder).st_mtime_ns
        except OSError:
            return None
        if stamp != self._stamp:
            self._names, self._stamp = _read_allowed(self.folder), stamp
        return self._names.get(public)


def _read_allowed(folder: Path) -> dict[bytes, str]:
    names = {}
    for path in sorted(folder.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError):
            continue  # a damaged file allows no one
        names[public] = path.stem
    return names


def new_client(name: str, folder: Path | None = None) -> Path:
    """Make NAME's key pair in clients/ and allow it; the public key file's path."""
    check_name(name)
    clients = clients_folder(folder)
    if (clients / f"{name}.key").exists():
        raise InputError(f"a key named {name} exists already", "pick another name, or revoke and reuse that one")
    public_file, secret_file = zmq.auth.create_certificates(str(clients), name)
    os.chmod(secret_file, 0o600)
    allow(Path(public_file), folder)
    return Path(public_file)


def allow(path: Path, folder: Path | None = None) -> str:
    """Allow the public key in certificate file `path` under its file name; the NAME."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path} is not a public key file: {err}", "pass a NAME.key file made by `keys new` or pyzmq"
        ) from None
    name = check_name(Path(path).name.removesuffix("_secret").removesuffix(".key"))
    target = allowed_folder(folder) / f"{name}.key"
    if target.exists() and _read_allowed(target.parent).get(public) != name:
        raise InputError(f"another key is allowed as {name}", f"revoke it first (`keys revoke {name}`)")
    fd = os.open(target.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f'# {name}, allowed to use this engine\nmetadata\ncurve\n    public-key = "{public.decode()}"\n')
    os.replace(target.with_suffix(".tmp"), target)
    return name


def revoke(name: str, folder: Path | None = None) -> None:
    """Refuse NAME's key from now on (its connections too; its stored jobs stay until pruned)."""
    target = allowed_folder(folder) / f"{check_name(name)}.key"
    if not target.exists():
        raise InputError(f"no allowed key named {name}", "list them with `sketch-abstraction keys list`")
    target.unlink()


def client_pair(name: str, folder: Path | None = None) -> tuple[bytes, bytes]:
    """NAME's key pair from clients/ (for export)."""
    path = clients_folder(folder) / f"{check_name(name)}.key_secret"
    if not path.exists():
        raise InputError(
            f"no key pair named {name} on this machine", f"make one with `sketch-abstraction keys new {name}`"
        )
    public, secret = zmq.auth.load_certificate(str(path))
    assert secret is not None
    return public, secret


def listing(folder: Path | None = None) -> list[tuple[str, bool, bool]]:
    """(NAME, allowed, key pair kept here) for every known key."""
    allowed = {p.stem for p in allowed_folder(folder).glob("*.key")}
    kept = {p.name.removesuffix(".key_secret") for p in clients_folder(folder).glob("*.key_secret")}
    return [(name, name in allowed, name in kept) for name in sorted(allowed | kept)]
