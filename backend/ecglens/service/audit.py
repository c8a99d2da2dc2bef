"""The audit log: append-only events, each chained to the one before by a keyed hash (HMAC-SHA256).

``hash = HMAC-SHA256(key, prev_hash + "\\n" + canonical JSON of the event)``, with ``prev_hash`` of the first event
``genesis(key)``. The ``audit_head`` row holds the newest seq and hash, so deleting the newest events is noticed
as well as editing or deleting any other. The key (`Runtime.audit_key`: ``ECGLENS_AUDIT_KEY``, else
``DATA_DIR/audit-key``) is what a plain hash chain lacks: whoever can rewrite the audit table could recompute
every SHA-256 from the first event on and leave an "intact" forged chain; without the key they cannot. Keep the
key where the database's administrators cannot read it (the API's environment, from a secret store), or it
protects nothing. Events carry who (key id, name, role), what (action, object type and id, record), when (UTC),
from where (client address) and the outcome (HTTP status), never signal values or record header fields.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ecglens.service.db import AuditEvent, AuditHead, utcnow

# The columns the hash covers, in canonical order.
HASHED_FIELDS = ("seq", "at", "actor_key_id", "actor_name", "role", "action", "object_type", "object_id",
                 "record_id", "client", "status")
_append_lock = threading.Lock()


def canonical(event: dict[str, Any]) -> str:
    """The canonical JSON of an event's hashed fields (sorted keys, no spaces)."""
    return json.dumps({k: event.get(k) for k in HASHED_FIELDS}, sort_keys=True, separators=(",", ":"))


def chain_hash(prev_hash: str, event: dict[str, Any], key: bytes) -> str:
    """The event's link: HMAC-SHA256 under the audit key of the previous hash and the event's canonical JSON."""
    return hmac.new(key, (prev_hash + "\n" + canonical(event)).encode(), hashlib.sha256).hexdigest()


def genesis(key: bytes) -> str:
    """The first event's ``prev_hash``: it differs per key, so a chain started under another key is named as such."""
    return hmac.new(key, b"ecglens audit genesis", hashlib.sha256).hexdigest()


def append(sessions: sessionmaker[Session], key: bytes, *, action: str, status: int, actor_key_id: str | None = None,
           actor_name: str | None = None, role: str | None = None, object_type: str | None = None,
           object_id: str | None = None, record_id: str | None = None, client: str | None = None) -> int:
    """Append one event in its own transaction; return its seq.

    Concurrent writers (threads, or processes sharing the database) are serialised by a lock in-process and,
    across processes, by the unique ``seq``: a writer that lost the race retries on the new head.
    """
    fields = {"action": action[:60], "status": int(status), "actor_key_id": actor_key_id,
              "actor_name": actor_name[:200] if actor_name else actor_name, "role": role,
              "object_type": object_type, "object_id": object_id[:200] if object_id else object_id,
              "record_id": record_id, "client": client[:100] if client else client}
    with _append_lock:
        for _attempt in range(20):
            with sessions() as session:
                head = session.get(AuditHead, 1)
                prev_seq, prev_hash = (head.seq, head.hash) if head else (0, genesis(key))
                event = {**fields, "seq": prev_seq + 1, "at": utcnow()}
                digest = chain_hash(prev_hash, event, key)
                session.add(AuditEvent(**event, prev_hash=prev_hash, hash=digest))
                if head is None:
                    session.add(AuditHead(id=1, seq=event["seq"], hash=digest))
                else:
                    head.seq, head.hash = event["seq"], digest
                try:
                    session.commit()
                    return event["seq"]
                except IntegrityError:
                    session.rollback()
        raise RuntimeError("audit log: could not append after 20 attempts")


@dataclass(frozen=True)
class ChainStatus:
    """Result of `verify`: ``ok``, events checked, and the first bad seq with the reason when not ok."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


def verify(session: Session, key: bytes, batch: int = 5000) -> ChainStatus:
    """Walk the whole chain in seq order and check every link, hash and the head under the audit ``key``.

    Detects an edited row (its hash no longer matches its content), a deleted row (a gap in seq or a broken
    ``prev_hash`` link), a deleted tail (the head names a later event than the last row), and a chain written
    (or rewritten) without this key.
    """
    prev_seq, prev_hash, n = 0, genesis(key), 0
    last = 0
    while True:
        rows: Iterable[AuditEvent] = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)).all()
        rows = list(rows)
        if not rows:
            break
        for row in rows:
            n += 1
            if row.seq != prev_seq + 1:
                return ChainStatus(False, n, prev_seq + 1, f"event {prev_seq + 1} is missing (next is {row.seq})")
            if row.prev_hash != prev_hash:
                if row.seq == 1:
                    return ChainStatus(False, n, 1, "event 1: the chain was not started under this audit key "
                                                    "(ECGLENS_AUDIT_KEY or DATA_DIR/audit-key)")
                return ChainStatus(False, n, row.seq, f"event {row.seq}: prev_hash does not match event {prev_seq}")
            event = {k: getattr(row, k) for k in HASHED_FIELDS}
            if not hmac.compare_digest(chain_hash(prev_hash, event, key), row.hash):
                return ChainStatus(False, n, row.seq, f"event {row.seq}: content does not match its hash")
            prev_seq, prev_hash = row.seq, row.hash
        last = rows[-1].seq
    head = session.get(AuditHead, 1)
    if head is None and prev_seq:
        return ChainStatus(False, n, prev_seq, "audit head is missing")
    if head is not None and (head.seq != prev_seq or head.hash != prev_hash):
        bad = prev_seq + 1 if head.seq > prev_seq else head.seq
        return ChainStatus(False, n, bad, f"audit head names event {head.seq} but the chain ends at {prev_seq}")
    return ChainStatus(True, n)


def event_dict(row: AuditEvent) -> dict[str, Any]:
    """The public JSON of an event (all columns)."""
    return {**{k: getattr(row, k) for k in HASHED_FIELDS}, "prev_hash": row.prev_hash, "hash": row.hash}
