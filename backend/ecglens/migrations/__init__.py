"""Alembic migrations for the service database, configured in code so they run from an installed package.

``upgrade(url)`` is what `ecglens db upgrade` and the service start-up call.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic `Config` for ``url`` with this folder as the script location (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["url"] = url  # passed as an attribute: a URL's '%' would upset configparser
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``. Default: "head"."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
