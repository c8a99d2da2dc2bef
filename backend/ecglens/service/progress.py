"""One poller for every open progress stream (``GET /analyses/{id}/events``).

Each open stream used to poll the database on its own, holding a request thread's turn and, while it waited, its
request's connection. Here one task per process reads the state of every watched analysis, and whether any
watching key was revoked, in two queries per tick, on one pooled connection that it gives back between ticks;
the streams wait on an asyncio event and hold no thread and no connection while they wait. A revoked key's
streams end at the next tick, and all of them end when the server shuts down.

A state is `JobView`: status, progress, error, and while the job explains, its partial segments
(``analyses.partial``, written by `ecglens.service.jobs.ProgressWriter.partial`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import anyio
from sqlalchemy import select

from ecglens.service.db import Analysis, ApiKey, Record
from ecglens.service.runtime import Runtime

log = logging.getLogger("ecglens.service")


class JobView(NamedTuple):
    """One analysis as a tick read it. ``partial``: ``{"window": {...}, "segments": [...]}`` or None."""

    status: str
    progress: float
    error: str | None
    partial: dict[str, Any] | None = None


@dataclass
class Watch:
    analysis_id: str
    key_id: str


class ProgressHub:
    """The shared poller of one app.

    Parameters
    ----------
    runtime : Runtime
        Database, and the ``stopping`` flag set at shutdown.
    poll_s : float
        Seconds between ticks. Default: 0.25.
    """

    def __init__(self, runtime: Runtime, poll_s: float = 0.25):
        self.runtime, self.poll_s = runtime, poll_s
        self.states: dict[str, JobView | None] = {}
        self.revoked: set[str] = set()
        self._analyses: Counter[str] = Counter()
        self._keys: Counter[str] = Counter()
        self._tick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def stopping(self) -> bool:
        return self.runtime.stopping.is_set()

    def subscribe(self, analysis_id: str, key_id: str) -> Watch:
        self._analyses[analysis_id] += 1
        self._keys[key_id] += 1
        if self._tick is None:
            self._tick = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ecglens-progress-hub")
        return Watch(analysis_id, key_id)

    def unsubscribe(self, watch: Watch) -> None:
        for counter, item in ((self._analyses, watch.analysis_id), (self._keys, watch.key_id)):
            counter[item] -= 1
            if counter[item] <= 0:
                del counter[item]
        if watch.analysis_id not in self._analyses:
            self.states.pop(watch.analysis_id, None)

    async def next_tick(self) -> None:
        """Wait until the states have been read again (or the hub stopped)."""
        assert self._tick is not None
        await self._tick.wait()

    async def _run(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)  # its own thread: never waits behind request threads
        while self._analyses and not self.stopping:
            ids, keys = list(self._analyses), list(self._keys)
            try:
                states, revoked = await anyio.to_thread.run_sync(self._read, ids, keys, limiter=self._limiter)
                self.states.update(states)
                self.revoked = revoked
            except Exception:  # noqa: BLE001 - a failed tick is retried at the next one; the streams wait
                log.warning("progress streams: could not read job states", exc_info=True)
            self._wake()
            await asyncio.sleep(self.poll_s)
        self._wake()
        self._task = None

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        if tick is not None:
            tick.set()

    def _read(self, ids: list[str], keys: list[str]) -> tuple[dict[str, JobView | None], set[str]]:
        out: dict[str, JobView | None] = dict.fromkeys(ids)
        with self.runtime.sessions() as session:
            rows = session.execute(
                select(
                    Analysis.id, Analysis.status, Analysis.progress, Analysis.error, Analysis.partial, Record.deleted_at
                )
                .join(Record, Record.id == Analysis.record_id)
                .where(Analysis.id.in_(ids))
            ).all()
            for analysis_id, status, progress, error, partial, deleted_at in rows:
                # A record deleted while its analysis is followed ends the stream like a missing analysis.
                out[analysis_id] = None if deleted_at is not None else JobView(status, float(progress), error, partial)
            revoked = set(
                session.scalars(select(ApiKey.id).where(ApiKey.id.in_(keys), ApiKey.revoked_at.is_not(None))).all()
            )
        return out, revoked
