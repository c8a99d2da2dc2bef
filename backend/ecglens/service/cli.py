"""Service commands: ``ecglens serve``, ``ecglens create-key``, ``ecglens audit verify``, ``ecglens db upgrade``.

Registered by `ecglens.cli` through ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ecglens.service.app import create_app
from ecglens.service.audit import verify
from ecglens.service.auth import ADMIN, ROLES, create_key
from ecglens.service.config import Settings
from ecglens.service.db import active_keys, init_db
from ecglens.service.runtime import Runtime


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the REST API (and the in-process job pool)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on. Default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="TCP port. Default: 8000")
    serve.add_argument("--log-level", default="info", help="uvicorn log level. Default: info")
    serve.set_defaults(func=cmd_serve)

    key = subparsers.add_parser("create-key", help="create an API key; prints it alone on the last line")
    key.add_argument("--role", required=True, choices=ROLES)
    key.add_argument("--name", default=None, help="who or what the key is for. Default: '<role> key'")
    key.set_defaults(func=cmd_create_key)

    audit = subparsers.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    verify = audit_sub.add_parser(
        "verify",
        help="check the audit hash chain and its end against the keyed checkpoints; exit 1 naming the first bad event",
    )
    verify.add_argument(
        "--checkpoint",
        default=None,
        metavar="SEQ:HASH",
        help="also check against a checkpoint kept outside the data directory (from the log's "
        "'audit checkpoint seq=... hash=...' lines)",
    )
    verify.set_defaults(func=cmd_audit_verify)

    db = subparsers.add_parser("db", help="database tools")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    upgrade = db_sub.add_parser("upgrade", help="apply the database migrations (alembic upgrade head)")
    upgrade.set_defaults(func=cmd_db_upgrade)


def _runtime():
    return Runtime(Settings())


def ensure_admin_key(runtime) -> Path | None:
    """On a database with no active key, create an admin key and write it to ``DATA_DIR/admin-key.txt`` (mode
    0600); return that path. Returns the existing file's path when there are keys and the file is still there,
    else None."""
    path = runtime.settings.admin_key_file
    with runtime.sessions() as session:
        if active_keys(session):
            return path if path.exists() else None
        new = create_key(session, ADMIN, "first admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(new.token + "\n")
    os.chmod(path, 0o600)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    os.umask(0o077)  # whatever this process creates (database, blobs, cache, models) is this user's only
    limit_malloc_arenas()
    settings = Settings()
    key_file = ensure_admin_key(Runtime(settings))
    if key_file is not None:
        print(f"ecglens: the first admin API key is in {key_file} (readable by this user only)", flush=True)
    print(
        f"ecglens: data in {settings.data_dir}; executor: "
        f"{'celery ' + settings.broker_url if settings.broker_url else 'in-process'}; "
        f"API docs at http://{args.host}:{args.port}/docs",
        flush=True,
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_timeout_s)),
    )
    _Server(config, app.state.runtime).run()
    return 0


# glibc gives each thread that allocates under contention an arena of its own (up to 8 per core), and memory
# freed in one is not reused by another: with 40 request threads and the job threads, the server's RSS after a
# few analyses was about 50 MB higher than with 2 arenas (benchmarks/service_load.py). The GIL serialises most
# allocations anyway.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for the arenas made from now on, unless ``MALLOC_ARENA_MAX`` is
    set (glibc reads it itself). Returns whether the cap was applied (False off glibc)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return False


class _Server:
    """uvicorn's server, told about the signal too: on SIGTERM / SIGINT progress streams end and running jobs
    stop at once (back to the queue), while in-flight requests get ``shutdown_timeout_s`` before uvicorn
    cancels them; then the app's shutdown anchors the audit chain and the process exits."""

    def __new__(cls, config, runtime):
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame):  # noqa: ANN001 - uvicorn's signature
                runtime.stopping.set()
                super().handle_exit(sig, frame)

        return Server(config)


def cmd_create_key(args: argparse.Namespace) -> int:
    runtime = _runtime()
    with runtime.sessions() as session:
        new = create_key(session, args.role, args.name or f"{args.role} key")
    runtime.audit.append(action="key.create", status=201, actor_name="cli", object_type="key", object_id=new.id)
    runtime.audit.checkpoint()  # this process is done appending: anchor the head
    print(f"created {new.role} key {new.id} ({new.name}); it is shown once:")
    print(new.token)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    runtime = _runtime()
    expect = None
    if args.checkpoint:
        seq, _, digest = args.checkpoint.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            print(
                "ecglens audit verify: --checkpoint takes SEQ:HASH (a number and a 64-hex-digit hash)", file=sys.stderr
            )
            return 2
        expect = (int(seq), digest.lower())
    try:
        key = runtime.load_audit_key(create=False)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"ecglens audit verify: {exc}", file=sys.stderr)
        return 2
    with runtime.sessions() as session:
        status = verify(session, key, checkpoint_file=runtime.settings.audit_checkpoint_file, expect=expect)
    if status.ok:
        print(
            f"audit log ok: {status.events} events, chain intact"
            + ("" if runtime.settings.audit_checkpoint_file.exists() else " (no checkpoints yet)")
        )
        return 0
    where = f"at event {status.first_bad_seq}" if status.first_bad_seq is not None else ""
    print(f"audit log BROKEN {where}: {status.reason}".replace("  ", " "), file=sys.stderr)
    return 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        init_db(settings.db_url)
    except SQLAlchemyError as exc:
        # A compose `migrate` log should say what is wrong in one line, not a traceback.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"ecglens db upgrade: cannot reach {_safe_url(settings.db_url)}: {reason}", file=sys.stderr)
        return 2
    print(f"database at head: {_safe_url(settings.db_url)}")
    return 0


def _safe_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparseable URL)"
