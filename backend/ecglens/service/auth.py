"""API keys: ``ecgl_<key id>_<secret>``, the secret shown once and stored only as its SHA-256.

The secret is 256 random bits (``secrets.token_urlsafe(32)``), so one SHA-256 is as safe as a slow password
hash here (nothing to brute-force) and keeps each request's check cheap. The key id in the clear lets a
request find its row without scanning.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ecglens.service.db import ApiKey, utcnow

CLINICIAN, AUDITOR, ADMIN, SERVICE = "clinician", "auditor", "admin", "service"
ROLES = (CLINICIAN, AUDITOR, ADMIN, SERVICE)
_PREFIX = "ecgl"


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``token`` is the full bearer token, shown once."""

    id: str
    name: str
    role: str
    token: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, role: str, name: str, created_by: str | None = None) -> NewKey:
    """Add a key with ``role`` and ``name`` (committed); return it with its one-time token.

    Raises ValueError for an unknown role or an empty name.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    name = name.strip()
    if not name:
        raise ValueError("a key needs a name")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, name=name[:200], role=role, secret_hash=hash_secret(secret),
                       created_by=created_by, created_at=utcnow()))
    session.commit()
    return NewKey(id=key_id, name=name, role=role, token=f"{_PREFIX}_{key_id}_{secret}")


def authenticate(session: Session, token: str) -> ApiKey | None:
    """The active key row for a bearer ``token``, or None when it is malformed, unknown, wrong or revoked."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or len(parts[1]) != 16:
        return None
    row = session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, hash_secret(parts[2])):
        return None
    return row
