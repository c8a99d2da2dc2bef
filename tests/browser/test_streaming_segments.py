"""Segments that appear while an analysis runs (issue 16 item 5): the page shades each progress event's segments
before the result exists, and the result's segments replace them.

The analysis itself runs for real; the page is then shown it as still running: its first read says "running",
its event stream carries one progress event with segments the explainer never chose (so they cannot be confused
with the result's) and then "done", and its next read is held until the test has looked at the shading."""

from __future__ import annotations

import json
import time
from urllib.parse import urlparse

import numpy as np
import pytest

from tests.browser.conftest import plot_data, sign_in

pytestmark = pytest.mark.browser

RESULT_FIELDS = ("explanation", "robustness", "screening", "windows", "annotations", "summary")


def _shaded(page) -> list[tuple[str, float, float]]:
    traces = [t["meta"] for t in plot_data(page, "ecg-plot") if (t.get("meta") or {}).get("kind") == "segment"]
    return sorted((m["lead"], round(m["start_s"], 4), round(m["end_s"], 4)) for m in traces)


def _spans(segments) -> list[tuple[str, float, float]]:
    return sorted((s["lead"], round(s["start_s"], 4), round(s["end_s"], 4)) for s in segments)


def _wait_shaded(page, spans) -> None:
    page.wait_for_function(
        """(want) => {
            const gd = document.getElementById('ecg-plot');
            if (!gd || !gd.data) return false;
            const got = gd.data.filter(t => t.meta && t.meta.kind === 'segment')
                .map(t => [t.meta.lead, t.meta.start_s, t.meta.end_s]);
            return got.length === want.length && want.every(([l, a, b]) =>
                got.some(([l2, a2, b2]) => l2 === l && Math.abs(a2 - a) < 1e-3 && Math.abs(b2 - b) < 1e-3));
        }""",
        arg=[list(s) for s in spans],
    )


def test_progress_event_segments_are_shaded_before_the_result_which_then_replaces_them(server, browser_page):
    import neurokit2 as nk

    a = nk.ecg_simulate(duration=30, sampling_rate=360, heart_rate=70, random_state=5)
    b = nk.ecg_simulate(duration=30, sampling_rate=360, heart_rate=70, random_state=6) * 0.6
    data = json.dumps({"fs": 360, "leads": {"MLII": np.round(a, 4).tolist(), "V1": np.round(b, 4).tolist()}})
    boundary = "ecglens-stream"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="strip.json"\r\n'
        f"Content-Type: application/json\r\n\r\n{data}\r\n--{boundary}--\r\n"
    )
    status, created = server.api(
        "/records", body=body.encode(), content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert status == 201, created
    record = created["data"][0]
    request = {"record_id": record["id"], "model": "builtin", "query_budget": 40, "seed": 0}
    status, job = server.api("/analyses", body=json.dumps(request).encode(), content_type="application/json")
    assert status == 202, job
    aid, deadline = job["id"], time.monotonic() + 180
    while True:
        _, done = server.api(f"/analyses/{aid}")
        if done["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert done["status"] == "done", done
    start = float(done["explanation"]["start_s"])
    streamed = [
        {"lead": "MLII", "start_s": start + 1.0, "end_s": start + 1.5, "score": 0.9, "distortion": "dropout"},
        {"lead": "V1", "start_s": start + 3.0, "end_s": start + 3.25, "score": 0.4, "distortion": "dropout"},
    ]
    final = done["explanation"]["segments"]
    assert final and _spans(final) != _spans(streamed)

    running = {**done, "status": "running", "progress": 40.0, "finished_at": None, **dict.fromkeys(RESULT_FIELDS)}
    window = {"index": 0, "count": 1, "finding": done["explanation"]["diagnosis"]["label"], "start_s": start}
    progress = {"id": aid, "status": "running", "progress": 40.0, "window": window, "segments": streamed}
    events = (
        f"event: progress\ndata: {json.dumps(progress)}\n\n"
        f"event: done\ndata: {json.dumps({'id': aid, 'status': 'done', 'progress': 100.0, 'error': None})}\n\n"
    )
    reads, held = [], []

    def read_analysis(route):
        reads.append(route.request.url)
        if len(reads) == 1:
            route.fulfill(status=200, content_type="application/json", body=json.dumps(running))
        else:
            held.append(route)  # answered (by the server) once the test has seen the streamed shading

    page = browser_page
    page.route(lambda url: urlparse(url).path == f"/api/v1/analyses/{aid}", read_analysis)
    page.route(
        lambda url: urlparse(url).path == f"/api/v1/analyses/{aid}/events",
        lambda route: route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=events),
    )
    sign_in(page, server)
    page.goto(server.url + f"/#/records/{record['id']}")  # the page follows the record's latest analysis

    _wait_shaded(page, _spans(streamed))
    assert _shaded(page) == _spans(streamed)
    assert page.locator("#diagnosis-label").count() == 0  # no result shown yet
    # The view moved to the window being explained.
    x0 = page.evaluate("() => document.getElementById('ecg-plot')._fullLayout.xaxis.range[0]")
    assert x0 == pytest.approx(start, abs=1e-3)

    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the page did not read the analysis after its stream ended"
    held[0].continue_()
    page.wait_for_selector("#diagnosis-label")
    _wait_shaded(page, _spans(final))
    assert _shaded(page) == _spans(final)
    assert page.console_log.errors == []


def test_each_windows_latest_segments_are_drawn_and_the_view_moves_once(server, browser_page):
    page = browser_page
    sign_in(page, server)
    out = page.evaluate("""async () => {
        const { showPartial } = await import('/js/analysis.js');
        const drawn = [], moves = [];
        const viewer = { setSegments: async (s) => { drawn.push(s.map((x) => x.lead + '@' + x.start_s)); },
                         showExplained: async (t) => { moves.push(t); } };
        const seg = (lead, start_s) => ({ lead, start_s, end_s: start_s + 0.25, score: 0.5, distortion: 'dropout' });
        const w = (index, start_s) => ({ index, count: 2, finding: 'V', start_s });
        const partial = new Map();
        const changed = [
            showPartial(viewer, partial, { status: 'running', progress: 5, window: null, segments: [] }),
            showPartial(viewer, partial, { status: 'running', progress: 9, window: w(0, 20), segments: [seg('II', 21)] }),
            showPartial(viewer, partial, { status: 'running', progress: 12, window: w(0, 20), segments: [seg('II', 21)] }),
            showPartial(viewer, partial, { status: 'running', progress: 20, window: w(0, 20),
                                           segments: [seg('II', 22), seg('V1', 21)] }),
            showPartial(viewer, partial, { status: 'running', progress: 50, window: w(1, 40), segments: [seg('II', 41)] }),
        ];
        return { changed, drawn, moves };
    }""")
    assert out["changed"] == [False, True, False, True, True]  # no window yet; the same segments again
    assert out["drawn"] == [["II@21"], ["II@22", "V1@21"], ["II@22", "V1@21", "II@41"]]  # each window's latest
    assert out["moves"] == [20]  # to the first window with segments, once
    assert page.console_log.errors == []
