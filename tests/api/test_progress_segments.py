"""Streaming (issue 16 item 5): while an analysis explains, its progress events carry the explainer's current best
segments and the window they belong to; the writer throttles them and always writes the last; a job that ends or
goes back to the queue shows none; migration 0003 adds and drops ``analyses.partial``."""

from __future__ import annotations

import json
import threading

import sqlalchemy as sa
from service_helpers import register_tiny

from ecglens.explanation import Segment

SEG_A = Segment(lead="MLII", start_s=1.0, end_s=1.5, score=1.0, distortion="dropout")
SEG_B = Segment(lead="V1", start_s=2.25, end_s=2.5, score=0.4, distortion="gaussian")


def _running_analysis(api, record_id: str) -> str:
    from ecglens.service.db import RUNNING, Analysis, new_id, utcnow

    with api.runtime.sessions() as session:
        row = Analysis(
            id=new_id(),
            record_id=record_id,
            model="builtin",
            query_budget=10,
            seed=0,
            status=RUNNING,
            progress=0.0,
            queries=0,
            attempts=1,
            created_by=api.key_ids["clinician"],
            created_at=utcnow(),
            heartbeat_at=utcnow(),
        )
        session.add(row)
        session.commit()
        return row.id


def _partial(api, analysis_id: str):
    from ecglens.service.db import Analysis

    with api.runtime.sessions() as session:
        return session.get(Analysis, analysis_id).partial


def test_partial_segments_are_throttled_the_last_always_written_and_dropped_on_requeue(sqlite_api, wfdb_record):
    from ecglens.service.db import Analysis
    from ecglens.service.jobs import ProgressWriter, requeue

    api = sqlite_api
    aid = _running_analysis(api, api.upload(wfdb_record).json()["data"][0]["id"])
    window = {"index": 1, "count": 2, "finding": "noisy", "start_s": 4.0}
    writer = ProgressWriter(api.runtime, aid, 5.0, 40.0, window=window, partial_interval_s=3600.0)
    writer.partial([SEG_A])  # the first is written at once
    assert _partial(api, aid) == {"window": window, "segments": [SEG_A.to_dict()]}
    writer.partial([SEG_A, SEG_B])  # within the interval: held back, also through progress calls
    writer(0.5)
    assert _partial(api, aid)["segments"] == [SEG_A.to_dict()]
    writer.flush()  # the last is always written
    assert _partial(api, aid) == {"window": window, "segments": [SEG_A.to_dict(), SEG_B.to_dict()]}

    eager = ProgressWriter(api.runtime, aid, 5.0, 40.0, window=window, partial_interval_s=0.0)
    eager.partial([SEG_B])
    assert _partial(api, aid)["segments"] == [SEG_B.to_dict()]
    requeue(api.runtime, Analysis, aid)  # a job that starts again shows no stale segments
    assert _partial(api, aid) is None


def test_running_analysis_streams_its_segments_before_the_result_exists(api, wfdb_record, tiny_model, monkeypatch):
    from ecglens.service.db import Analysis
    from ecglens.service.jobs import ProgressWriter

    # The job stops right after it wrote its first partial segments, until the stream has shown them.
    seen, paused = threading.Event(), threading.Event()
    flush, written = ProgressWriter.flush, []

    def flush_then_wait(self):
        if self._held is not None:
            written.append((self.window["index"], self._held))
        flush(self)
        if not paused.is_set():
            paused.set()
            seen.wait(timeout=60)

    monkeypatch.setattr(ProgressWriter, "flush", flush_then_wait)
    assert register_tiny(api, tiny_model).status_code == 201
    record = api.upload(wfdb_record).json()["data"][0]
    aid = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={"record_id": record["id"], "model": "tiny", "query_budget": 60, "seed": 0},
    ).json()["id"]
    events = []
    try:
        with api.client.stream("GET", f"/api/v1/analyses/{aid}/events", headers=api.auth("clinician")) as r:
            name = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name == "progress" and events[-1][1]["segments"] and not seen.is_set():
                        with api.runtime.sessions() as session:  # the job is still explaining: no result yet
                            row = session.get(Analysis, aid)
                            assert row.status == "running" and row.result is None
                        body = api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("clinician")).json()
                        assert body["status"] == "running" and body["explanation"] is None
                        seen.set()
    finally:
        seen.set()
    assert paused.is_set() and events[-1][0] == "done"
    streamed = [d for n, d in events if n == "progress" and d["segments"]]
    assert streamed, events
    first = streamed[0]
    assert first["status"] == "running" and set(first) == {"id", "status", "progress", "window", "segments"}
    assert set(first["window"]) == {"index", "count", "finding", "start_s"} and first["window"]["index"] == 0
    for segment in first["segments"]:
        assert set(segment) == {"lead", "start_s", "end_s", "score", "distortion"}
    before = [d for n, d in events if n == "progress" and not d["segments"]]
    assert all(d["window"] is None for d in before)  # before the first segments: [] and no window

    done = api.wait(aid)
    assert done["status"] == "done", done["error"]
    assert _partial(api, aid) is None  # the result replaces the partial segments
    main = done["explanation"]
    for event in streamed:  # every window's segments lie in that window, in record time
        start = event["window"]["start_s"]
        assert all(start - 1e-6 <= s["start_s"] < s["end_s"] <= start + 2.0 + 1e-6 for s in event["segments"])
    assert first["window"]["count"] == len(done["windows"])
    # What the job wrote last for each window is that window's result (a tick may have missed it: the stream
    # shows what the database holds at each tick).
    last = {index: segments for index, segments in written}
    assert last[0] == main["segments"]
    for index, window in enumerate(done["windows"][1:], start=1):
        assert last[index] == window["explanation"]["segments"]


def test_migration_0003_adds_analysis_partial_and_downgrades_to_0002(tmp_path):
    from alembic import command

    from ecglens.migrations import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0002")
    engine = sa.create_engine(url)
    try:
        assert "partial" not in {c["name"] for c in sa.inspect(engine).get_columns("analyses")}
        upgrade(url, "0003")
        assert "partial" in {c["name"] for c in sa.inspect(engine).get_columns("analyses")}
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        command.downgrade(alembic_config(url), "0002")
        assert "partial" not in {c["name"] for c in sa.inspect(engine).get_columns("analyses")}
    finally:
        engine.dispose()


def test_migration_0004_indexes_analyses_by_record_and_time_and_downgrades_to_0003(tmp_path):
    from alembic import command

    from ecglens.migrations import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0003")
    engine = sa.create_engine(url)

    def indexes() -> dict[str, list[str]]:
        return {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("analyses")}

    try:
        assert "ix_analyses_record_id_created_at" not in indexes()
        upgrade(url)
        assert indexes()["ix_analyses_record_id_created_at"] == ["record_id", "created_at"]
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0004"
            plan = " ".join(
                str(r[-1])
                for r in conn.execute(
                    sa.text("EXPLAIN QUERY PLAN SELECT id FROM analyses WHERE record_id = 'x' ORDER BY created_at DESC")
                )
            )
        assert "ix_analyses_record_id_created_at" in plan and "TEMP B-TREE" not in plan, plan
        command.downgrade(alembic_config(url), "0003")
        assert "ix_analyses_record_id_created_at" not in indexes()
    finally:
        engine.dispose()
