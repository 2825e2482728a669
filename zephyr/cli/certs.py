"""`zephyr certs init DIR` and `zephyr certs issue`: a CA and the certificates a cluster needs.

`init` makes, under DIR, only what is missing (run it at every start; the compose file does):

    ca/ca.crt, ca/ca.key        the CA; only `zephyr certs` reads its key: keep it private
    public/ca.crt               the CA certificate alone, for clients (CLI, curl, Prometheus)
    scheduler/                  tls.crt, tls.key (HTTPS; names: scheduler, localhost, 127.0.0.1, ::1)
    coordinator/                tls.crt, tls.key (gRPC and /metrics; names: coordinator, localhost, 127.0.0.1)
    worker/                     tls.crt, tls.key (the worker fleet's: names `worker` and `*.worker`)

and a copy of ca.crt in each service's directory (the ZEPHYR_TLS_CA of its service), so that each
service can be given its own directory and nothing else. A part is issued again when a file of it is
missing or its ca.crt is not the CA's; without ca/ a new CA is made and every part issued. The
worker certificate is a fleet's: with mutual TLS a worker may register as `LABEL.worker` (say
ZEPHYR_WORKER_ID={hostname}.worker), see SECURITY.md.

`issue CA_DIR OUT NAME...` writes OUT/tls.crt, tls.key and ca.crt for more names from an existing
CA: a worker on another host (its id as the name), or the Kubernetes Secret `zephyr-tls` (the same
three keys).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zephyr.certs import CA_DAYS, LEAF_DAYS, Authority, Pem

CERT, KEY, CA = "tls.crt", "tls.key", "ca.crt"


@dataclass(frozen=True)
class Part:
    """One service's certificate: its directory under DIR, its names and what it may be used for."""

    directory: str
    names: tuple[str, ...]
    client: bool


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("certs", help="make a CA and the cluster's TLS certificates")
    commands = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = commands.add_parser(
        "init", help="a CA and the scheduler's, coordinators' and workers' certificates"
    )
    init.add_argument("dir", type=Path, help="directory to fill (made if absent)")
    init.add_argument("--scheduler-name", action="append", default=[], help="another name of the scheduler")
    init.add_argument(
        "--coordinator-name", action="append", default=[], help="another name of the coordinators"
    )
    init.add_argument("--worker-fleet", default="worker", help="workers' certificate names FLEET and *.FLEET")
    init.add_argument("--ca-name", default="zephyr-ca", help="the CA's subject CN")
    add_common(init)
    init.set_defaults(func=run_init)
    issue = commands.add_parser("issue", help="one more certificate from an existing CA directory")
    issue.add_argument("ca_dir", type=Path, help="the CA's directory (DIR/ca of `init`)")
    issue.add_argument("out", type=Path, help="directory for tls.crt, tls.key and ca.crt")
    issue.add_argument("names", nargs="+", help="DNS names or IP addresses (the first is the CN)")
    issue.add_argument("--usage", choices=("server", "client", "both"), default="both")
    add_common(issue)
    issue.set_defaults(func=run_issue)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=LEAF_DAYS, help="validity of each certificate")
    parser.add_argument("--owner", help="UID[:GID] to own what is written (when run as root for others)")


def parts(args: argparse.Namespace) -> tuple[Part, ...]:
    fleet = args.worker_fleet
    return (
        Part("scheduler", ("scheduler", "localhost", "127.0.0.1", "::1", *args.scheduler_name), False),
        Part("coordinator", ("coordinator", "localhost", "127.0.0.1", *args.coordinator_name), True),
        Part("worker", (fleet, f"*.{fleet}"), True),
    )


class Writer:
    """Writes files whole (a temporary name, then renamed), keys readable by their owner only."""

    def __init__(self, owner: str | None) -> None:
        uid, _, gid = (owner or "").partition(":")
        if owner and not (uid.isdigit() and (gid or uid).isdigit()):
            raise ValueError(f"--owner: {owner!r} is not UID or UID:GID (numbers)")
        self.ids = (int(uid), int(gid or uid)) if owner else None

    def directory(self, path: Path, mode: int = 0o755) -> None:
        """`path`, made with `mode` when absent (an existing directory keeps its mode)."""
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        if self.ids:
            os.chown(path, *self.ids)

    def file(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        if self.ids:
            os.chown(temporary, *self.ids)
        os.replace(temporary, path)

    def issued(self, directory: Path, pem: Pem, ca_pem: bytes) -> None:
        """ca.crt, tls.key, then tls.crt: a part is whole once its certificate is there."""
        self.directory(directory)
        self.file(directory / CA, ca_pem)
        self.file(directory / KEY, pem.key, 0o600)
        self.file(directory / CERT, pem.cert)


def whole(directory: Path, ca_pem: bytes) -> bool:
    """The part in `directory` has its three files and the CA's certificate."""
    files = [directory / name for name in (CERT, KEY, CA)]
    return all(f.is_file() for f in files) and (directory / CA).read_bytes() == ca_pem


def whole_public(root: Path, ca_pem: bytes) -> bool:
    path = root / "public" / CA
    return path.is_file() and path.read_bytes() == ca_pem


def load_or_create(root: Path, args: argparse.Namespace, writer: Writer) -> tuple[Authority, bool]:
    """The CA of root/ca, made (and written) when absent; True when it is new."""
    cert, key = root / "ca" / CA, root / "ca" / "ca.key"
    if cert.is_file() and key.is_file():
        return Authority.load(cert.read_bytes(), key.read_bytes()), False
    authority = Authority.create(args.ca_name, days=max(CA_DAYS, args.days))
    writer.directory(root / "ca", 0o700)
    writer.file(key, authority.key_pem, 0o600)
    writer.file(cert, authority.cert_pem)
    return authority, True


def run_init(args: argparse.Namespace) -> int:
    try:
        writer = Writer(args.owner)
        root: Path = args.dir
        writer.directory(root)
        authority, new = load_or_create(root, args, writer)
        print(f"zephyr certs: {'made' if new else 'kept'} the CA {root / 'ca' / CA}")
        ca_pem = authority.cert_pem
        if not whole_public(root, ca_pem):
            writer.directory(root / "public")
            writer.file(root / "public" / CA, ca_pem)
        for part in parts(args):
            directory = root / part.directory
            if whole(directory, ca_pem):
                print(f"zephyr certs: kept {directory / CERT}")
                continue
            pem = authority.issue(part.names, server=True, client=part.client, days=args.days)
            writer.issued(directory, pem, ca_pem)
            print(f"zephyr certs: issued {directory / CERT} for {', '.join(part.names)}")
    except (OSError, ValueError) as exc:
        print(f"zephyr certs: {exc}", file=sys.stderr)
        return 1
    return 0


def run_issue(args: argparse.Namespace) -> int:
    try:
        ca_dir: Path = args.ca_dir
        authority = Authority.load((ca_dir / CA).read_bytes(), (ca_dir / "ca.key").read_bytes())
        usage: str = args.usage
        pem = authority.issue(args.names, server=usage != "client", client=usage != "server", days=args.days)
        Writer(args.owner).issued(args.out, pem, authority.cert_pem)
    except (OSError, ValueError) as exc:
        print(f"zephyr certs: {exc}", file=sys.stderr)
        return 1
    print(f"zephyr certs: issued {args.out / CERT} for {', '.join(args.names)}")
    return 0
