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
import logging
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ecglens.service.db import AuditEvent, AuditHead, utcnow

# The columns the hash covers, in canonical order.
HASHED_FIELDS = (
    "seq",
    "at",
    "actor_key_id",
    "actor_name",
    "role",
    "action",
    "object_type",
    "object_id",
    "record_id",
    "client",
    "status",
)
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


def _event_fields(
    *,
    action: str,
    status: int,
    actor_key_id: str | None = None,
    actor_name: str | None = None,
    role: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    record_id: str | None = None,
    client: str | None = None,
) -> dict[str, Any]:
    return {
        "action": action[:60],
        "status": int(status),
        "actor_key_id": actor_key_id,
        "actor_name": actor_name[:200] if actor_name else actor_name,
        "role": role,
        "object_type": object_type,
        "object_id": object_id[:200] if object_id else object_id,
        "record_id": record_id,
        "client": client[:100] if client else client,
    }


def append(
    sessions: sessionmaker[Session],
    key: bytes,
    *,
    action: str,
    status: int,
    actor_key_id: str | None = None,
    actor_name: str | None = None,
    role: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    record_id: str | None = None,
    client: str | None = None,
) -> int:
    """Append one event in its own transaction; return its seq (`append_many` with one event)."""
    fields = dict(
        action=action,
        status=status,
        actor_key_id=actor_key_id,
        actor_name=actor_name,
        role=role,
        object_type=object_type,
        object_id=object_id,
        record_id=record_id,
        client=client,
    )
    return append_many(sessions, key, [fields])[0]


def append_many(sessions: sessionmaker[Session], key: bytes, events: list[dict[str, Any]]) -> list[int]:
    """Append ``events`` (each the keyword arguments of `append`), in order, in one transaction; return their seqs.

    Concurrent writers (threads, or processes sharing the database) are serialised by a lock in-process and,
    across processes, by the unique ``seq``: a writer that lost the race retries on the new head. Core
    statements (one head read, one multi-row insert, one head update), no ORM unit of work.
    """
    if not events:
        return []
    rows = [_event_fields(**e) for e in events]
    events_table, head_table = AuditEvent.__table__, AuditHead.__table__
    with _append_lock:
        for _attempt in range(20):
            with sessions() as session:
                head = session.execute(select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)).first()
                prev_seq, prev_hash = (head.seq, head.hash) if head is not None else (0, genesis(key))
                values = []
                for offset, fields in enumerate(rows, start=1):
                    event = {**fields, "seq": prev_seq + offset, "at": utcnow()}
                    digest = chain_hash(prev_hash, event, key)
                    values.append({**event, "prev_hash": prev_hash, "hash": digest})
                    prev_hash = digest
                last = values[-1]
                try:
                    session.execute(insert(events_table), values)
                    if head is None:
                        session.execute(insert(head_table).values(id=1, seq=last["seq"], hash=last["hash"]))
                    else:
                        session.execute(
                            update(head_table).where(head_table.c.id == 1).values(seq=last["seq"], hash=last["hash"])
                        )
                    session.commit()
                    return [v["seq"] for v in values]
                except IntegrityError:  # another process appended after our head read: retry on the new head
                    session.rollback()
        raise RuntimeError("audit log: could not append after 20 attempts")


CHECKPOINT_CONTEXT = b"ecglens audit checkpoint"
log = logging.getLogger("ecglens.audit")


def checkpoint_mac(key: bytes, seq: int, digest: str, at: str) -> str:
    """The checkpoint's signature: HMAC-SHA256 under the audit key of its seq, head hash and time."""
    return hmac.new(key, CHECKPOINT_CONTEXT + f"\n{seq}\n{digest}\n{at}".encode(), hashlib.sha256).hexdigest()


def write_checkpoint(path: Path, key: bytes, seq: int, digest: str) -> dict[str, Any]:
    """Append a keyed checkpoint of the chain's head ``(seq, hash)`` to ``path`` (one JSON line, mode 0600) and
    to the log, so the chain's end is anchored outside the database: cutting or wiping the newest events then
    leaves a checkpoint naming an event the chain no longer has. One ``write`` per line on an ``O_APPEND``
    file, so processes sharing the data directory do not interleave lines."""
    at = utcnow()
    entry = {"seq": int(seq), "hash": digest, "at": at, "mac": checkpoint_mac(key, int(seq), digest, at)}
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("audit checkpoint seq=%d hash=%s at=%s", entry["seq"], digest, at)
    return entry


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    line: int


def read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], str | None]:
    """The checkpoints in ``path`` whose signatures hold, and the first problem found (a line that is not a
    checkpoint, or one not signed under ``key``), or None."""
    if not path.exists():
        return [], None
    out: list[Checkpoint] = []
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
            seq, digest, at, mac = int(entry["seq"]), str(entry["hash"]), str(entry["at"]), str(entry["mac"])
        except (ValueError, KeyError, TypeError):
            return out, f"checkpoint line {number} of {path.name} is not a checkpoint"
        if not hmac.compare_digest(checkpoint_mac(key, seq, digest, at), mac):
            return out, f"checkpoint line {number} of {path.name} is not signed by this audit key (edited?)"
        out.append(Checkpoint(seq, digest, at, number))
    return out, None


class AuditLog:
    """The audit log of one process: appends on their own sessions (``sessions``: a pool requests cannot
    exhaust), a checkpoint every ``every`` events and on `checkpoint`.

    Appends from several threads are committed together (group commit): a thread whose event is not written yet
    takes the writer's turn and writes every event waiting then, in one transaction; each `append` returns once
    its own event is committed, so an event is never later than its caller believes. A batch that fails is
    retried event by event, so one bad event fails only its own caller.

    Parameters
    ----------
    sessions : sessionmaker
        Sessions of the audit's own engine.
    key : bytes
        The chain's HMAC key.
    checkpoint_file : Path or None
        Where checkpoints go; None writes none.
    every : int
        Checkpoint when an appended event's seq is a multiple of this. Default: 100.
    """

    def __init__(self, sessions: sessionmaker[Session], key: bytes, checkpoint_file: Path | None, every: int = 100):
        self.sessions, self.key, self.checkpoint_file, self.every = sessions, key, checkpoint_file, every
        self._waiting: list[tuple[dict[str, Any], Future[int]]] = []
        self._waiting_lock = threading.Lock()
        self._writer = threading.Lock()

    def append(self, **fields: Any) -> int:
        """Append one event (the keyword arguments of `append`); return its seq once it is committed."""
        mine: Future[int] = Future()
        with self._waiting_lock:
            self._waiting.append((fields, mine))
        with self._writer:
            if not mine.done():  # nobody wrote it while this thread waited for its turn: write all that wait
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._write(batch)
        return mine.result()

    def _write(self, batch: list[tuple[dict[str, Any], Future[int]]]) -> None:
        try:
            seqs = append_many(self.sessions, self.key, [fields for fields, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for item in batch:  # one at a time: only the event that cannot be written fails
                self._write([item])
            return
        for (_fields, done), seq in zip(batch, seqs, strict=True):
            done.set_result(seq)
        if self.checkpoint_file is not None and seqs[-1] // self.every > (seqs[0] - 1) // self.every:
            self.checkpoint()

    def head(self) -> tuple[int, str]:
        with self.sessions() as session:
            head = session.get(AuditHead, 1)
            return (head.seq, head.hash) if head is not None else (0, genesis(self.key))

    def checkpoint(self) -> dict[str, Any] | None:
        """Write a checkpoint of the current head (at start, at shutdown, every ``every`` events)."""
        if self.checkpoint_file is None:
            return None
        with _append_lock:  # the head read is the newest: no append of this process in between
            seq, digest = self.head()
            return write_checkpoint(self.checkpoint_file, self.key, seq, digest)


@dataclass(frozen=True)
class ChainStatus:
    """Result of `verify`: ``ok``, events checked, and the first bad seq with the reason when not ok."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


def verify(
    session: Session,
    key: bytes,
    batch: int = 5000,
    checkpoint_file: Path | None = None,
    expect: tuple[int, str] | None = None,
) -> ChainStatus:
    """Walk the whole chain in seq order and check every link, hash and the head under the audit ``key``, and
    the chain's end against the keyed checkpoints in ``checkpoint_file`` (and ``expect``, a ``(seq, hash)``
    kept elsewhere, e.g. from the log).

    Detects an edited row (its hash no longer matches its content), a deleted row (a gap in seq or a broken
    ``prev_hash`` link), a deleted tail (the head names a later event than the last row; or, with the head
    moved back too, a checkpoint names an event the chain no longer has), a wiped log, a checkpoint file edited
    or removed while the chain has events, and a chain written (or rewritten) without this key.
    """
    anchors: dict[int, list[tuple[str, str]]] = {}
    if checkpoint_file is not None:
        checkpoints, problem = read_checkpoints(checkpoint_file, key)
        if problem:
            return ChainStatus(False, 0, None, problem)
        for cp in checkpoints:
            anchors.setdefault(cp.seq, []).append((cp.hash, f"checkpoint of {cp.at} (line {cp.line})"))
    if expect is not None:
        anchors.setdefault(int(expect[0]), []).append((expect[1], "the expected checkpoint"))
    state = {"prev_seq": 0, "prev_hash": genesis(key), "n": 0}

    def walk() -> ChainStatus | None:
        """Check the rows after the last one checked; the first problem, or None."""
        while True:
            rows = list(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.seq > state["prev_seq"]).order_by(AuditEvent.seq).limit(batch)
                ).all()
            )
            if not rows:
                return None
            for row in rows:
                prev_seq, prev_hash = state["prev_seq"], state["prev_hash"]
                state["n"] += 1
                n = state["n"]
                if row.seq != prev_seq + 1:
                    return ChainStatus(False, n, prev_seq + 1, f"event {prev_seq + 1} is missing (next is {row.seq})")
                if row.prev_hash != prev_hash:
                    if row.seq == 1:
                        return ChainStatus(
                            False,
                            n,
                            1,
                            "event 1: the chain was not started under this audit key "
                            "(ECGLENS_AUDIT_KEY or DATA_DIR/audit-key)",
                        )
                    return ChainStatus(False, n, row.seq, f"event {row.seq}: prev_hash does not match event {prev_seq}")
                event = {k: getattr(row, k) for k in HASHED_FIELDS}
                if not hmac.compare_digest(chain_hash(prev_hash, event, key), row.hash):
                    return ChainStatus(False, n, row.seq, f"event {row.seq}: content does not match its hash")
                for digest, what in anchors.get(row.seq, ()):
                    if digest != row.hash:
                        return ChainStatus(False, n, row.seq, f"event {row.seq} differs from the {what}")
                state["prev_seq"], state["prev_hash"] = row.seq, row.hash

    problem = walk()
    if problem is not None:
        return problem
    # The head is read after the walk. An event and the head naming it are committed together, so a head ahead
    # of the walk's end is either events appended while the walk ran (another request, worker or process) or a
    # cut tail: walk on, and only a head the chain still does not reach is a cut.
    head, walked = _read_head(session), state["prev_seq"]
    if head is not None and head[0] > walked:
        problem = walk()
        if problem is not None:
            return problem
    prev_seq, prev_hash, n = state["prev_seq"], state["prev_hash"], state["n"]
    beyond = [(seq, what) for seq, items in anchors.items() if seq > prev_seq for _d, what in items]
    if beyond:
        seq, what = max(beyond)
        if prev_seq == 0:
            return ChainStatus(
                False, n, 1, f"the audit log is empty but the {what} names event {seq}: the log was wiped"
            )
        return ChainStatus(
            False,
            n,
            prev_seq + 1,
            f"the {what} names event {seq} but the chain ends at {prev_seq}: its newest events were cut",
        )
    for digest, what in anchors.get(0, ()):
        if prev_seq == 0 and digest != genesis(key):
            return ChainStatus(False, n, None, f"the {what} of the empty log was not made under this key")
    if head is None and prev_seq:
        return ChainStatus(False, n, prev_seq, "audit head is missing")
    if head is not None:
        head_seq, head_hash = head
        if head_seq > prev_seq:
            return ChainStatus(
                False, n, prev_seq + 1, f"audit head names event {head_seq} but the chain ends at {prev_seq}"
            )
        if head_seq < walked:  # read after the first walk, a true head is at least where that walk ended
            return ChainStatus(False, n, head_seq, f"audit head names event {head_seq} but the chain ends at {walked}")
        # Events past the head were appended after it was read; the event it names must be the chain's.
        named = prev_hash if head_seq == prev_seq else _hash_at(session, head_seq)
        if named != head_hash:
            return ChainStatus(False, n, head_seq, f"audit head names event {head_seq} but the chain's differs")
    if checkpoint_file is not None and prev_seq and not checkpoint_file.exists():
        return ChainStatus(
            False,
            n,
            None,
            f"{checkpoint_file} is missing: nothing anchors the chain's end "
            f"(removed? every server writes one at start)",
        )
    return ChainStatus(True, n)


def _read_head(session: Session) -> tuple[int, str] | None:
    """The head row's ``(seq, hash)`` as committed now (a query, never the session's identity map)."""
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).first()
    return (int(row.seq), str(row.hash)) if row is not None else None


def _hash_at(session: Session, seq: int) -> str | None:
    return session.execute(select(AuditEvent.hash).where(AuditEvent.seq == seq)).scalar()


def event_dict(row: AuditEvent) -> dict[str, Any]:
    """The public JSON of an event (all columns)."""
    return {**{k: getattr(row, k) for k in HASHED_FIELDS}, "prev_hash": row.prev_hash, "hash": row.hash}
