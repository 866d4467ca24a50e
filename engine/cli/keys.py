"""`sketch-abstraction keys`: who may use an engine that serves the network (`serve --listen`).

On the engine's machine: `keys new NAME` makes a designer's key pair and allows it, `keys export
NAME --address HOST:PORT` writes the remote connection file that designer uses (`--remote FILE`,
or the Inkscape extension's Run tab), `keys revoke NAME` refuses the key at once, `keys allow FILE`
allows a public key again (or one made elsewhere), `keys list` lists them. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge import protocol
from bridge.atomic import write_atomic
from bridge.errors import InputError
from engine.cli.options import parse_address
from engine.cli.outputs import writable_file, writing


def register(commands) -> None:
    keys = commands.add_parser(
        "keys",
        help="client keys of an engine serving the network (serve --listen)",
        description="Make, allow, revoke and export the CurveZMQ keys designers connect to this engine with. "
        "Run these on the engine's machine; they take effect at once, also on a running engine.",
    )
    actions = keys.add_subparsers(dest="action", required=True)
    new = actions.add_parser("new", help="make NAME's key pair and allow it")
    new.add_argument("name", metavar="NAME", help="who it is for, e.g. alice-laptop")
    allow = actions.add_parser("allow", help="allow a public key file (NAME.key)")
    allow.add_argument("file", metavar="FILE")
    revoke = actions.add_parser("revoke", help="refuse NAME's key from now on, also on open connections")
    revoke.add_argument("name", metavar="NAME")
    export = actions.add_parser("export", help="write NAME's remote connection file (0600) to give them")
    export.add_argument("name", metavar="NAME")
    export.add_argument(
        "--address", required=True, metavar="HOST:PORT", help="where designers reach the engine (serve --listen's port)"
    )
    export.add_argument("-o", "--output", help="file to write (default: NAME.json, here)")
    actions.add_parser("list", help="the keys this engine knows")
    keys.set_defaults(run=_keys)


def _keys(args) -> int:
    from engine.service import keys
    from engine.service.auth import identity_key

    if args.action == "new":
        key_file = keys.new_client(args.name)
        print(
            f"made and allowed {args.name}'s key ({key_file}); give them `sketch-abstraction keys export {args.name}`"
        )
    elif args.action == "allow":
        print(f"allowed {keys.allow(Path(args.file))}")
    elif args.action == "revoke":
        keys.revoke(args.name)
        print(f"revoked {args.name}: the engine refuses that key from now on")
    elif args.action == "export":
        host, port = parse_address(args.address, "--address")
        public, secret = keys.client_pair(args.name)
        if not (keys.allowed_folder() / f"{args.name}.key").exists():
            pair = keys.clients_folder() / f"{args.name}.key"
            raise InputError(f"{args.name}'s key is not allowed (revoked)", f"allow it again first: keys allow {pair}")
        server = keys.server_keys()
        out = writable_file(args.output or f"{args.name}.json", "-o")
        remote = {
            "transport": "tcp",
            "ip": host,
            "port": port,
            "key": identity_key(server.signing, public.decode()),  # signs for this designer only
            "version": protocol.VERSION,
            "server_key": server.public.decode(),
            "public_key": public.decode(),
            "secret_key": secret.decode(),
        }
        with writing(out, "-o"):
            write_atomic(out, json.dumps(remote, indent=1).encode(), mode=0o600)
        print(f"wrote {out} (0600; it holds {args.name}'s secret key: send it privately)")
    else:
        for name, allowed, kept in keys.listing():
            print(f"{name:<24} {'allowed' if allowed else 'revoked':<8} {'(key pair here)' if kept else ''}".rstrip())
    return 0
