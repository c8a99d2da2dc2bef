"""API keys: ``ecgl_<key id>_<secret>``, the secret shown once and stored only as its SHA-256.

The secret is 256 random bits (``secrets.token_urlsafe(32)``), so one SHA-256 is as safe as a slow password
hash here (nothing to brute-force) and keeps each request's check cheap. The key id in the clear lets a
request find its row without scanning. A key found valid is remembered for `KEY_CACHE_S` (`KeyCache`), so a
busy client costs one key read every few seconds, not one per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
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
    session.add(
        ApiKey(
            id=key_id,
            name=name[:200],
            role=role,
            secret_hash=hash_secret(secret),
            created_by=created_by,
            created_at=utcnow(),
        )
    )
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


# Seconds a key found valid is trusted without reading its row again. Revoking through this process's API takes
# effect at once (`KeyCache.revoke`); in another process sharing the database, within this many seconds.
KEY_CACHE_S = 2.0


class KeyCache:
    """Keys recently found valid, by SHA-256 of the whole bearer token (never the token itself), for ``ttl_s``.

    Only successes are kept: a wrong, unknown or revoked token is checked against the database every time (and
    counted by `AuthThrottle`). `revoke` drops a key's entries and keeps it from being added again by a check
    that read its row before the revocation committed. Thread-safe; at most ``max_entries`` entries (the
    oldest dropped first). The cached rows are detached `ApiKey` objects, shared by the requests that hit them:
    read them, never attach them to a session.

    Parameters
    ----------
    ttl_s : float
        How long an entry is trusted. Default: `KEY_CACHE_S`; 0 disables the cache.
    max_entries : int
        Default: 10,000.
    """

    def __init__(self, ttl_s: float = KEY_CACHE_S, max_entries: int = 10_000):
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.strip().encode()).hexdigest()

    def get(self, token: str) -> ApiKey | None:
        """The key cached for ``token`` when its entry is younger than ``ttl_s``, else None."""
        if self.ttl_s <= 0:
            return None
        digest = self._digest(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if time.monotonic() - entry[0] >= self.ttl_s or entry[1].id in self._revoked:
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, token: str, key: ApiKey) -> None:
        """Remember ``key`` as valid for ``token`` (not when ``key`` was revoked through `revoke` meanwhile)."""
        if self.ttl_s <= 0:
            return
        digest = self._digest(token)
        with self._lock:
            if key.id in self._revoked:
                return
            if len(self._entries) >= self.max_entries:
                for old in sorted(self._entries, key=lambda d: self._entries[d][0])[: self.max_entries // 10]:
                    del self._entries[old]
            self._entries[digest] = (time.monotonic(), key)

    def revoke(self, key_id: str) -> None:
        """Forget ``key_id`` now and never cache it again in this process."""
        with self._lock:
            self._revoked.add(key_id)
            for digest in [d for d, (_t, k) in self._entries.items() if k.id == key_id]:
                del self._entries[digest]

    def __len__(self) -> int:
        return len(self._entries)


def token_key_id(token: str) -> str | None:
    """The key id of a well-formed bearer token (whether or not it is valid), else None."""
    parts = token.strip().split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == _PREFIX and len(parts[1]) == 16 else None


class AuthThrottle:
    """Failed authentications per key id (from one client address) and per client address in a sliding
    ``window_s``; past the limit the caller gets 429 before its secret is even checked, so guessing a key's
    secret (or trying many key ids from one address) runs at ``per_key`` (``per_client``) tries a minute. In memory, per process: a few thousand
    entries at most, the oldest dropped first.

    Parameters
    ----------
    per_key : int
        Failures allowed per key id in the window.
    per_client : int
        Failures allowed per client address in the window. Default: 5 x ``per_key``.
    window_s : float
        Default: 60.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, per_key: int, per_client: int | None = None, window_s: float = 60.0):
        self.limits = {"key": per_key, "client": per_client or 5 * per_key}
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _subjects(self, key_id: str | None, client: str | None) -> list[tuple[str, str]]:
        # Per key id *from* an address: someone guessing at a key cannot lock its owner out from elsewhere.
        pair = f"{key_id}|{client or '-'}" if key_id else None
        return [(kind, value) for kind, value in (("key", pair), ("client", client)) if value]

    def retry_after(self, key_id: str | None, client: str | None) -> float:
        """Seconds until the caller may try again (0: not throttled)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for subject in self._subjects(key_id, client):
                times = self._failures.get(subject)
                if not times:
                    continue
                while times and now - times[0] > self.window_s:
                    times.popleft()
                if len(times) >= self.limits[subject[0]]:
                    wait = max(wait, self.window_s - (now - times[0]))
        return wait

    def failed(self, key_id: str | None, client: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.MAX_ENTRIES:
                for subject in sorted(
                    self._failures, key=lambda s: self._failures[s][-1] if self._failures[s] else 0.0
                )[: self.MAX_ENTRIES // 10]:
                    del self._failures[subject]
            for subject in self._subjects(key_id, client):
                self._failures.setdefault(subject, deque(maxlen=self.limits[subject[0]] + 1)).append(now)
