"""One-shot start-up step after the migrations: the first admin API key, printed once.

On a database with no active API key this creates an admin key (``ecglens.service.cli.ensure_admin_key``, which
also keeps it in ``$ECGLENS_DATA_DIR/admin-key.txt``, mode 0600) and prints it to stdout, where
``docker compose logs migrate`` shows it. When a key exists already it prints nothing secret: later start-ups
never show a key again. Exit status 0 either way; 2 with a one-line message when the database cannot be reached.
"""
from __future__ import annotations

import sys


def main() -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from ecglens.service.cli import ensure_admin_key
    from ecglens.service.config import Settings
    from ecglens.service.db import active_keys
    from ecglens.service.runtime import Runtime

    runtime = Runtime(Settings(), migrate=False)  # `ecglens db upgrade` ran just before
    try:
        with runtime.sessions() as session:
            existing = active_keys(session)
        if existing:
            print(f"ecglens: {existing} active API key(s) already; none printed "
                  "(make more with `ecglens create-key --role ROLE`)", flush=True)
            return 0
        path = ensure_admin_key(runtime)
    except SQLAlchemyError as exc:
        print(f"ecglens migrate: error: database unreachable ({type(exc).__name__})", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    token = path.read_text().strip() if path else ""
    rule = "=" * 78
    print(f"{rule}\nFirst admin API key (shown once; store it now, e.g. in a password manager):\n\n"
          f"    {token}\n\nUse it as `Authorization: Bearer <key>`. It is also kept in {path} (mode 0600):\n"
          f"delete that file once stored. More keys: `ecglens create-key --role ROLE`.\n{rule}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
