"""The clinician's page in a real browser against a real server: sign in, upload (drag-and-drop and picker, a
bad file's error beside it), the 12-lead paper-grid viewer, a live analysis, shaded segments, robustness curves,
sign out; the audit page shows the events. Assertions read the DOM and plotly's own trace data."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import ARTIFACTS, plot_data, sign_in
from tests.conftest import shared_path

pytestmark = pytest.mark.browser

STANDARD_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
OKABE_ITO = {
    "baseline_wander": "#E69F00",
    "powerline": "#56B4E9",
    "muscle": "#009E73",
    "electrode_motion": "#CC79A7",
    "gaussian": "#0072B2",
    "none": "#505050",
}
ANALYSIS_TIMEOUT_MS = 120_000
BUDGET = 200
# The first analysis of a session: a job of a few seconds, so the page finds it running and follows it over the
# event stream however fast the agent answers a small budget.
FOLLOWED_BUDGET = 2000
DISTORTIONS = ["baseline_wander", "muscle", "gaussian"]


def _drop_files(page, selector: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drop files on an element the way a user's drag from the desktop does (a DataTransfer with Files)."""
    payload = [{"name": n, "b64": base64.b64encode(d).decode(), "type": t} for n, d, t in files]
    page.evaluate(
        """([selector, files]) => {
        const dt = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name, { type: f.type }));
        }
        const zone = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""",
        [selector, payload],
    )


def _viewer_state(page) -> dict:
    """The ECG plot's axes as laid out: visible range, pixel lengths, grid steps, speed and gain on screen."""
    return page.evaluate("""() => {
        const gd = document.getElementById('ecg-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const pxPerMm = 96 / 25.4;
        return {
            range: xa.range.slice(), xdtick: xa.dtick, xminor: xa.minor && xa.minor.showgrid ? xa.minor.dtick : null,
            ydtick: ya.dtick, yminor: ya.minor && ya.minor.showgrid ? ya.minor.dtick : null,
            speed: xa._length / (xa.range[1] - xa.range[0]) / pxPerMm,
            gain: ya._length / (ya.range[1] - ya.range[0]) / pxPerMm,
            readout: document.getElementById('viewer-readout').textContent,
        };
    }""")


def _wait_plot(page, div_id: str = "ecg-plot") -> None:
    page.wait_for_function(
        "(id) => { const gd = document.getElementById(id);"
        " return gd && gd.data && gd.data.length > 0 && gd._fullLayout; }",
        arg=div_id,
    )


def _signal_traces(page) -> list[dict]:
    return [t for t in plot_data(page, "ecg-plot") if (t.get("meta") or {}).get("kind") == "signal"]


def _upload_row(page, label: str):
    return page.locator(f'.upload-item[data-group="{label}"]')


def _run_analysis(page, server, budget: int = BUDGET) -> dict:
    """Start an analysis from the form (small budget, a few distortion types), wait for it, return its JSON."""
    page.fill("#analysis-budget", str(budget))
    page.locator('input[name="distortions"]').first.wait_for()  # the kinds come from GET /distortions
    for box in page.locator('input[name="distortions"]').all():
        if (box.get_attribute("value") in DISTORTIONS) != box.is_checked():
            box.click()
    # Record what the progress line shows while the job runs (it is driven by the event stream).
    page.evaluate("""() => {
        window.__progressSeen = [];
        const wrap = document.getElementById('analysis-progress');
        new MutationObserver(() => window.__progressSeen.push(wrap.dataset.status)).observe(
            wrap, { attributes: true, attributeFilter: ['data-status'], subtree: true, childList: true, characterData: true });
    }""")
    events = []
    page.on("request", lambda r: events.append(r) if "/events" in r.url else None)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyses") and r.request.method == "POST") as created:
        page.click("#analysis-start")
    analysis_id = created.value.json()["id"]
    # The bar is driven by the SSE progress stream; it ends at "done" (or "failed", which fails the test).
    page.wait_for_selector(
        '#analysis-progress[data-status="done"], #analysis-progress[data-status="failed"]', timeout=ANALYSIS_TIMEOUT_MS
    )
    status, analysis = server.api(f"/analyses/{analysis_id}")
    assert status == 200
    assert analysis["status"] == "done", f"analysis failed: {analysis.get('error')}"
    assert page.locator("#analysis-progress-bar").evaluate("el => el.value") == 100
    # Progress came over server-sent events read by fetch, with the API key in the Authorization header.
    stream = [r for r in events if r.url.endswith(f"/analyses/{analysis_id}/events")]
    assert stream and stream[0].headers.get("authorization") == f"Bearer {server.keys['clinician']}"
    assert "running" in page.evaluate("() => window.__progressSeen")
    page.wait_for_selector("#diagnosis-label")
    _wait_plot(page, "robustness-plot")
    return analysis


def _check_result(page, analysis: dict, record_leads: list[str]) -> None:
    """The diagnosis, segment shading and robustness curves on the page match the analysis JSON."""
    ex, rob = analysis["explanation"], analysis["robustness"]
    assert page.text_content("#diagnosis-label").strip() == ex["diagnosis"]["label"]
    probs = page.locator("#diagnosis-probabilities .prob-row")
    assert probs.count() == len(ex["diagnosis"]["probabilities"])

    # Segments: one list entry each; shaded on the ECG with the distortion's Okabe-Ito colour, opacity by score.
    # (The printed 3 x 4 layout shows each lead for 2.5 s only, so check with every lead stacked at full length.)
    layout = page.locator('select[data-act="layout"]')
    if layout.count():
        layout.select_option("stacked")
        page.wait_for_function(
            "() => document.getElementById('ecg-plot').data.filter("
            "t => t.meta && t.meta.kind === 'signal').length === 12"
        )
    segments = ex["segments"]
    assert segments, "the analysis found no critical segment to shade"
    assert page.locator("#segment-list button").count() == len(segments)
    shaded = [t for t in plot_data(page, "ecg-plot") if (t.get("meta") or {}).get("kind") == "segment"]
    drawn = {(t["meta"]["lead"], t["meta"]["start_s"], t["meta"]["end_s"]) for t in shaded}
    for seg in segments:
        if seg["lead"] in record_leads or {"MLII": "II", "II": "MLII"}.get(seg["lead"]) in record_leads:
            assert (seg["lead"], seg["start_s"], seg["end_s"]) in drawn, seg
    for trace in shaded:
        meta = trace["meta"]
        r, g, b, alpha = (float(x) for x in re.findall(r"[\d.]+", trace["fillcolor"]))
        colour = OKABE_ITO.get(meta["distortion"])
        if colour:
            assert (int(r), int(g), int(b)) == tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert alpha == pytest.approx(0.08 + 0.27 * meta["score"], abs=2e-3)
        assert trace["fill"] == "toself" and trace["hoveron"] == "fills"
        assert f"score {meta['score']:.2f}" in trace["text"]

    # Jump to the most critical segment: the view now covers it.
    page.locator("#segment-list button").first.click()
    page.wait_for_function("() => document.querySelector('#segment-list button[aria-pressed=true]')")
    first = segments[0]
    page.wait_for_function(
        "([a, b]) => { const r = document.getElementById('ecg-plot')._fullLayout.xaxis.range;"
        " return r[0] <= a + 1e-6 && r[1] >= b - 1e-6; }",
        arg=[first["start_s"], first["end_s"]],
    )

    # Hovering the shaded segment (now in view) names its score, time span and distortion.
    locate = """() => {
        const gd = document.getElementById('ecg-plot');
        const t = gd.data.find(d => d.meta && d.meta.kind === 'segment' && d.meta.index === 0);
        if (!t) return null;
        const xa = gd._fullLayout['xaxis' + t.xaxis.slice(1)], ya = gd._fullLayout['yaxis' + t.yaxis.slice(1)];
        let box = gd.getBoundingClientRect();
        window.scrollBy(0, box.top + ya._offset - 200);  // bring the lead's row into the viewport
        box = gd.getBoundingClientRect();
        return { x: box.left + xa._offset + xa.l2p((t.x[0] + t.x[1]) / 2),
                 y: box.top + ya._offset + ya.l2p(0.8 * ya.range[0] + 0.2 * ya.range[1]), meta: t.meta };
    }"""
    # Jumping to the segment re-fetches the signal and redraws, which clears any hover label and may move the
    # plot: let the view settle, then locate and hover (again, if a late redraw wiped the label).
    page.wait_for_load_state("networkidle")
    for attempt in range(4):
        point = page.evaluate(locate)
        assert point, "the most critical segment is not drawn"
        page.mouse.move(0, 0)
        page.mouse.move(point["x"], point["y"])
        try:
            page.wait_for_function(
                "() => document.querySelector('#ecg-plot .hoverlayer').textContent.includes('score')", timeout=5000
            )
            break
        except PlaywrightTimeoutError:
            if attempt == 3:
                page.screenshot(path=str(ARTIFACTS / "hover-failure.png"))
                raise
    text = page.locator("#ecg-plot .hoverlayer").text_content()
    # The label is the hovered segment's, or that of another segment drawn under the same point (two leads' fills
    # can meet at a row edge, and a beat's segments on both leads share a span and score).
    t_mid = (point["meta"]["start_s"] + point["meta"]["end_s"]) / 2
    under = [m["meta"] for m in shaded if m["meta"]["start_s"] - 1e-6 <= t_mid <= m["meta"]["end_s"] + 1e-6]
    assert any(f"score {m['score']:.2f}" in text and f"{m['start_s']:.2f}" in text for m in under), (text, under)
    page.mouse.move(0, 0)

    # The adversarial overlay (and the noise alone) on the original.
    adversarial = ex["adversarial"]
    if adversarial and adversarial.get("signal"):
        page.check('#overlay-toggle input[value="adversarial"]')
        page.wait_for_function(
            "() => document.getElementById('ecg-plot').data.some(t => t.meta && t.meta.kind === 'adversarial')"
        )
        page.check('#overlay-toggle input[value="noise"]')
        page.wait_for_function(
            "() => document.getElementById('ecg-plot').data.some(t => t.meta && t.meta.kind === 'noise')"
            " && !document.getElementById('ecg-plot').data.some(t => t.meta && t.meta.kind === 'adversarial')"
        )
        page.check('#overlay-toggle input[value="none"]')
    else:
        assert page.locator('#overlay-toggle input[value="adversarial"]').is_disabled()

    # Robustness: one curve per distortion type, SNR from 24 down to -6 dB, flip SNRs marked, the score shown.
    curves = [t for t in plot_data(page, "robustness-plot") if (t.get("meta") or {}).get("kind") == "robustness"]
    assert sorted(c["meta"]["distortion"] for c in curves) == sorted(d["distortion"] for d in rob["distortions"])
    for curve in curves:
        assert curve["x"] == sorted(curve["x"], reverse=True)
        assert max(curve["x"]) == pytest.approx(24) and min(curve["x"]) == pytest.approx(-6)
        assert all(0.0 <= p <= 1.0 for p in curve["y"])
    flips = [t for t in plot_data(page, "robustness-plot") if (t.get("meta") or {}).get("kind") == "flip"]
    assert len(flips) == sum(d["flip_snr_db"] is not None for d in rob["distortions"])
    assert page.text_content("#robustness-score").strip() == f"{rob['score']:.2f}"
    assert "kept its diagnosis" in page.text_content("#robustness-meaning")


def _screenshots(page, name: str) -> None:
    for width, height in ((1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(1000)  # the record view redraws for the new width
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_clinician_signs_in_uploads_views_analyses_and_signs_out(server, browser_page, generated_12_lead_csv):
    page = browser_page
    sign_in(page, server)
    assert page.evaluate("() => sessionStorage.getItem('ecglens.apiKey')") == server.keys["clinician"]

    # Upload: drag-and-drop a generated 12-lead CSV and a file no reader accepts.
    page.click('#nav a[data-nav="upload"]')
    page.wait_for_selector("#dropzone")
    page.console_log.expect_failure("/api/v1/records", 422)
    _drop_files(
        page,
        "#dropzone",
        [
            ("sim12.csv", generated_12_lead_csv.read_bytes(), "text/csv"),
            ("broken.edf", b"0       this is not an EDF file at all" * 8, "application/octet-stream"),
        ],
    )
    good, bad = _upload_row(page, "sim12.csv"), _upload_row(page, "broken.edf")
    good.locator(".state a").wait_for()
    bad.locator(".state.error").wait_for()
    assert good.locator("progress").evaluate("el => el.value") == 100
    assert bad.locator(".files").text_content() == "broken.edf"
    error = bad.locator(".state").text_content()
    assert error.startswith("Not uploaded:") and "broken.edf" in error  # the reader's own words, naming the file
    assert "Traceback" not in error

    # The 12-lead record: standard 3 x 4 layout plus a lead II rhythm strip, on paper grid at 25 mm/s, 10 mm/mV.
    good.locator(".state a").click()
    _wait_plot(page)
    assert page.locator('select[data-act="layout"]').input_value() == "standard"
    traces = _signal_traces(page)
    assert [t["meta"]["lead"] for t in traces] == [
        "I",
        "aVR",
        "V1",
        "V4",
        "II",
        "aVL",
        "V2",
        "V5",
        "III",
        "aVF",
        "V3",
        "V6",
        "II",
    ]
    for trace in traces[:12]:  # each lead in its 2.5-s column of the 10-s page
        col = (
            ["I", "aVR", "V1", "V4"].index(trace["meta"]["lead"])
            if trace["meta"]["row"] == 0
            else [["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]][trace["meta"]["row"] - 1].index(
                trace["meta"]["lead"]
            )
        )
        assert min(trace["x"]) >= col * 2.5 - 1e-6 and max(trace["x"]) <= (col + 1) * 2.5 + 1e-6
        assert max(trace["x"]) - min(trace["x"]) > 2.4
    rhythm = traces[12]
    assert min(rhythm["x"]) < 0.01 and max(rhythm["x"]) > 9.99
    state = _viewer_state(page)
    assert state["speed"] == pytest.approx(25.0, abs=0.2) and state["gain"] == pytest.approx(10.0, abs=0.2)
    assert (state["xdtick"], state["xminor"], state["ydtick"], state["yminor"]) == (0.2, 0.04, 0.5, 0.1)
    assert "25.0 mm/s" in state["readout"] and "10.0 mm/mV" in state["readout"]

    # Zoom in to one second: the viewer fetches the window again at full resolution (500 Hz -> 2 ms steps).
    page.evaluate("() => Plotly.relayout('ecg-plot', {'xaxis.range': [1.0, 2.0]})")
    page.wait_for_function("() => document.getElementById('viewer-readout').textContent.includes('full resolution')")
    rhythm = _signal_traces(page)[-1]
    steps = {round(b - a, 6) for a, b in zip(rhythm["x"], rhythm["x"][1:])}
    assert steps == {0.002}
    assert _viewer_state(page)["range"] == pytest.approx([1.0, 2.0])
    # Zoom controls work from the keyboard on the focused plot: "0" goes back to 100 %.
    page.focus("#ecg-plot")
    page.keyboard.press("0")
    page.wait_for_function(
        "() => { const r = document.getElementById('ecg-plot')._fullLayout.xaxis.range;"
        " return Math.abs(r[0]) < 1e-6 && Math.abs(r[1] - 10) < 1e-6; }"
    )

    # Analysis with a small query budget, followed live, then drawn.
    analysis = _run_analysis(page, server, FOLLOWED_BUDGET)
    _check_result(page, analysis, STANDARD_12)
    page.locator('select[data-act="layout"]').select_option("standard")
    page.wait_for_function(
        "() => document.getElementById('ecg-plot').data.filter(t => t.meta && t.meta.kind === 'signal').length === 13"
    )
    _screenshots(page, "record-12lead")

    # The records list: searchable by name, with each record's latest analysis status.
    page.click('#nav a[data-nav="records"]')
    page.wait_for_selector("#records-table")
    page.fill("#q", "sim12")
    page.press("#q", "Enter")
    page.wait_for_function("() => location.hash.includes('q=sim12')")
    page.wait_for_selector("#records-table")
    names = page.locator("#records-table tbody td:first-child").all_text_contents()
    assert names and all("sim12" in n for n in names)
    row = page.locator(f'#records-table tbody tr[data-record-id="{analysis["record_id"]}"]')
    assert row.locator(".status").text_content().strip() == "done"
    page.fill("#q", "no-such-record")
    page.press("#q", "Enter")
    page.wait_for_selector("#records-body >> text=No records match this search")

    # Sign out: the key is gone from the tab and the app asks for one again.
    page.click("#signout")
    page.wait_for_selector("#api-key")
    assert page.evaluate("() => sessionStorage.getItem('ecglens.apiKey')") is None
    page.goto(server.url + "/#/records")
    page.wait_for_selector("#api-key")
    assert page.locator("#nav").is_hidden()
    assert page.console_log.errors == []


@pytest.mark.realdata
def test_mitbih_records_show_stacked_leads_and_an_analysis(server, browser_page):
    # 100 (MLII + V5) and 200 (MLII + V1, many ventricular ectopic beats) through the picker in one go; the
    # built-in model reads MLII + V1, so 200 is the one analysed.
    files = [shared_path("mitdb", f"{name}.{ext}") for name in ("100", "200") for ext in ("hea", "dat")]
    page = browser_page
    sign_in(page, server)
    page.click('#nav a[data-nav="upload"]')
    page.set_input_files("#file-input", [str(f) for f in files])
    for name in ("100", "200"):
        row = _upload_row(page, name)
        row.locator(".state a").wait_for(timeout=60_000)
        assert row.locator(".files").text_content() == f"{name}.hea + {name}.dat"
        assert "2 leads, 1805.6 s" in row.locator(".state").text_content()
    _upload_row(page, "200").locator(".state a").click()
    _wait_plot(page)

    # Two leads, stacked, sharing one time axis; a 30-min record arrives decimated until zoomed in.
    traces = _signal_traces(page)
    assert [t["meta"]["lead"] for t in traces] == ["MLII", "V1"]
    assert page.locator('select[data-act="layout"]').count() == 0
    state = _viewer_state(page)
    assert state["speed"] == pytest.approx(25.0, abs=0.2) and state["gain"] == pytest.approx(10.0, abs=0.2)
    assert "overview (decimated)" in state["readout"]
    page.evaluate("() => Plotly.relayout('ecg-plot', {'xaxis.range': [300.0, 302.0]})")
    page.wait_for_function("() => document.getElementById('viewer-readout').textContent.includes('full resolution')")
    for trace in _signal_traces(page):
        steps = [b - a for a, b in zip(trace["x"], trace["x"][1:])]
        assert max(steps) == pytest.approx(1 / 360, abs=1e-5) and min(steps) == pytest.approx(1 / 360, abs=1e-5)
    # Linked axes: both leads show the same window.
    ranges = page.evaluate(
        "() => { const l = document.getElementById('ecg-plot')._fullLayout; return [l.xaxis.range, l.xaxis2.range]; }"
    )
    assert ranges[0] == pytest.approx([300.0, 302.0]) and ranges[1] == pytest.approx([300.0, 302.0])
    page.click('button[data-act="later"]')
    page.wait_for_function("() => document.getElementById('ecg-plot')._fullLayout.xaxis.range[0] > 300.5")
    page.click('button[data-act="zoom-100"]')  # back to true paper scale
    page.wait_for_function("() => document.getElementById('viewer-readout').textContent.includes('25.0 mm/s')")

    analysis = _run_analysis(page, server)
    # The view moves to the window the explainer chose in the 30-min record; the segments lie inside it.
    ex = analysis["explanation"]
    page.wait_for_function(
        "(a) => Math.abs(document.getElementById('ecg-plot')._fullLayout.xaxis.range[0] - a) < 1e-3", arg=ex["start_s"]
    )
    window_s = len(ex["saliency"][0]) / ex["fs"]
    assert all(
        ex["start_s"] - 1e-6 <= s["start_s"] < s["end_s"] <= ex["start_s"] + window_s + 1e-6 for s in ex["segments"]
    )
    _check_result(page, analysis, ["MLII", "V1"])
    # The service's exports, downloaded with the API key: a PDF report and a FHIR Observation.
    page.wait_for_selector("#exports:not(.hidden)")
    with page.expect_download(timeout=60_000) as pdf:
        page.click('#exports button[data-export="report.pdf"]')
    assert pdf.value.path().read_bytes()[:5] == b"%PDF-"
    with page.expect_download() as fhir:
        page.click('#exports button[data-export="fhir"]')
    assert json.loads(fhir.value.path().read_text())["resourceType"] == "Observation"
    _screenshots(page, "record-mitdb200")
    assert page.console_log.errors == []


def test_audit_page_lists_the_events_verifies_the_chain_and_exports_csv(server, browser_page, generated_12_lead_csv):
    # Something to audit, done over REST by the clinician: an upload and a read of its signal.
    boundary = "ecglens-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="audit-sim.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + generated_12_lead_csv.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, created = server.api("/records", body=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 201, created
    record_id = created["data"][0]["id"]
    assert server.api(f"/records/{record_id}/signal?end_s=1")[0] == 200

    page = browser_page
    sign_in(page, server, "auditor")
    page.click('#nav a[data-nav="audit"]')
    page.wait_for_selector("#audit-table")
    chain = page.locator("#chain-status")
    chain.locator("xpath=self::*[@data-ok]").wait_for()
    assert chain.get_attribute("data-ok") == "true" and "Chain intact" in chain.text_content()
    actions = page.locator("#audit-table tbody td:nth-child(5)").all_text_contents()
    assert "record.create" in actions and "record.signal" in actions
    assert server.names["clinician"] in page.locator("#audit-table tbody").text_content()

    # Filter by record: only that record's events remain.
    page.fill("#f-record", record_id)
    page.click('#audit-filters button[type="submit"]')
    page.wait_for_function("() => location.hash.includes('record=')")
    page.wait_for_selector("#audit-table")
    record_cells = page.locator("#audit-table tbody td:nth-child(8) a").evaluate_all("els => els.map(e => e.title)")
    assert record_cells and set(record_cells) == {record_id}

    # CSV export of the filtered view.
    with page.expect_download() as download:
        page.click("#audit-csv")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert rows and {r["record_id"] for r in rows} == {record_id}
    assert {"record.create", "record.signal"} <= {r["action"] for r in rows}

    page.click("#audit-clear")
    page.wait_for_selector("#audit-table")
    _screenshots(page, "audit")
    assert page.console_log.errors == []


def test_keyboard_alone_signs_in_and_moves_between_views_with_visible_focus(server, browser_page):
    page = browser_page
    page.goto(server.url + "/")
    page.wait_for_selector("#api-key:focus")  # the key field takes focus on arrival
    page.keyboard.type(server.keys["clinician"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#nav:not([hidden])")
    page.wait_for_selector("#records-body")
    # Each view puts focus on the main region; Shift+Tab walks back through the header.
    page.focus("#main")
    focused = []
    for _ in range(10):  # back through the header to its first stop
        page.keyboard.press("Shift+Tab")
        focused.append(
            page.evaluate("""() => { const el = document.activeElement, st = getComputedStyle(el);
            return { text: el.textContent.trim(), outline: st.outlineStyle, width: parseFloat(st.outlineWidth) }; }""")
        )
        if focused[-1]["text"] == "Skip to content":
            break
    names = [f["text"] for f in focused]
    assert "Audit" not in names  # a clinician's key: /keys/me says so, and the audit link is hidden
    assert "Skip to content" in names and "Upload" in names and "Sign out" in names
    # The focus ring is drawn on every stop (3 px solid), not only on hover.
    assert all(f["outline"] == "solid" and f["width"] >= 2 for f in focused), focused

    page.focus('#nav a[data-nav="upload"]')
    page.keyboard.press("Enter")
    page.wait_for_selector("#dropzone")
    page.keyboard.press("Tab")  # from the main region into the drop zone
    while page.evaluate("() => document.activeElement.id") != "dropzone":
        page.keyboard.press("Tab")
    # Enter on the drop zone opens the file picker (the hidden multi-file input is clicked).
    page.evaluate(
        "() => document.getElementById('file-input').addEventListener('click', (e) => {"
        " window.__pickerOpened = e.target.multiple; e.preventDefault(); })"
    )
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__pickerOpened === true")
    assert page.console_log.errors == []


def test_browser_modules_read_the_services_signal_windows_and_group_uploads(
    server, browser_page, generated_12_lead_csv
):
    boundary = "ecglens-modules"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="modules-sim.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + generated_12_lead_csv.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, created = server.api("/records", body=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 201, created
    record_id = created["data"][0]["id"]
    page = browser_page
    sign_in(page, server)
    out = page.evaluate(
        """async (id) => {
        const { api } = await import('/js/api.js');
        const v = await import('/js/viewer.js');
        const u = await import('/js/upload.js');
        const a = await import('/js/analysis.js');
        const shape = (n) => Object.fromEntries(Object.entries(n.series).map(([lead, s]) => [lead,
            { n: s.t.length, nv: s.v.length, t0: s.t[0], t1: s.t[s.t.length - 1],
              increasing: s.t.every((t, i) => i === 0 || t >= s.t[i - 1]) }]));
        // The same window twice: min/max-decimated to 200 points, and at full resolution.
        const coarse = v.normalizeSignal(await api(`/records/${id}/signal`, { query: { start_s: 2, end_s: 6, max_points: 200 } }));
        const fine = v.normalizeSignal(await api(`/records/${id}/signal`, { query: { start_s: 2, end_s: 6, max_points: 5000 } }));
        const f = (name) => new File(['x'], name);
        const groups = u.groupFiles([f('100.hea'), f('100.dat'), f('scan.zip'), f('100.atr'), f('101.dat'), f('a.csv')])
            .map((g) => [g.label, g.files.map((x) => x.name)]);
        return { coarse: shape(coarse), coarseFlag: coarse.decimated, fine: shape(fine), fineFlag: fine.decimated,
                 groups, range: v.rowRange([-0.2, 0.1, 1.9, -0.4]), opacity: [v.segmentOpacity(0), v.segmentOpacity(1)],
                 // A model card's caveats, from the registry answer (GET /models), escaped, under the picker.
                 note: a.modelNote(await api('/models'), 'builtin'),
                 issues: a.modelNote({ data: [{ name: 'h', card: { intended_use: 'Research <b>only</b>.',
                     extra: { known_issues: ['AF sensitivity 0.25', 'x < y'] } } }] }, 'h'),
                 none: a.modelNote({ data: [{ name: 'h', card: {} }] }, 'other') };
    }""",
        record_id,
    )
    assert out["coarseFlag"] is True and out["fineFlag"] is False
    assert sorted(out["coarse"]) == sorted(STANDARD_12) == sorted(out["fine"])
    for lead in STANDARD_12:
        c, f = out["coarse"][lead], out["fine"][lead]
        assert c["n"] == c["nv"] <= 200 and c["increasing"] and 2.0 - 1e-6 <= c["t0"] and c["t1"] <= 6.0
        assert f["n"] == f["nv"] == 2000 and f["increasing"]  # 4 s at 500 Hz
        assert f["t0"] == 2.0 and abs(f["t1"] - (6.0 - 1 / 500)) < 1e-9
    assert out["groups"] == [
        ["100", ["100.hea", "100.dat", "100.atr"]],
        ["scan.zip", ["scan.zip"]],
        ["101", ["101.dat"]],
        ["a.csv", ["a.csv"]],
    ]
    lo, hi = out["range"]
    assert lo <= -0.4 and hi >= 1.9 and hi - lo >= 3.0 and (hi - lo) % 0.5 == 0
    assert out["opacity"] == pytest.approx([0.08, 0.35])
    assert "Not a medical device" in out["note"] and "Known issues" in out["note"]  # the built-in card's AF threshold
    assert "Research &lt;b&gt;only&lt;/b&gt;." in out["issues"] and "<li>AF sensitivity 0.25</li>" in out["issues"]
    assert "<li>x &lt; y</li>" in out["issues"] and out["none"] == ""
    assert page.console_log.errors == []


def _upload_csv(server, name: str, seconds: float = 2.0, fs: float = 250.0) -> str:
    """Upload a small one-lead CSV record over REST; return its id."""
    t = [i / fs for i in range(int(seconds * fs))]
    text = "time_s,II\n" + "".join(f"{x:.4f},{0.1 * ((i % 50) == 0):.3f}\n" for i, x in enumerate(t))
    boundary = "ecglens-page"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n{text}\r\n--{boundary}--\r\n"
    ).encode()
    status, created = server.api("/records", body=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 201, created
    return created["data"][0]["id"]


def test_records_list_pages_through_records_and_filters_by_name_and_upload_day(server, browser_page):
    for i in range(21):
        _upload_csv(server, f"page-rec-{i:02d}")
    page = browser_page
    sign_in(page, server)
    page.wait_for_selector("#records-table")
    total = int(re.search(r"(\d+) records?", page.text_content(".pager")).group(1))
    assert total >= 21
    first = page.locator("#records-table tbody tr").count()
    assert first == 20  # a page holds 20, newest first
    page.click("#next-page")
    page.wait_for_function("() => location.hash.includes('page=2')")
    page.wait_for_selector("#records-table")
    assert page.locator("#records-table tbody tr").count() == min(20, total - 20)
    assert "Page 2 of" in page.text_content(".pager")

    page.goto(server.url + "/#/records?q=page-rec-1")
    page.wait_for_selector("#records-table")
    names = page.locator("#records-table tbody td:first-child").all_text_contents()
    assert sorted(names) == [f"page-rec-{i}" for i in range(10, 20)]

    today = page.evaluate("() => new Date().toISOString().slice(0, 10)")
    page.goto(server.url + f"/#/records?q=page-rec-0&since={today}&until={today}")
    page.wait_for_selector("#records-table")
    assert page.locator("#records-table tbody tr").count() == 10
    page.goto(server.url + "/#/records?q=page-rec&until=2000-01-01")
    page.wait_for_selector("#records-body >> text=No records match this search")
    assert page.console_log.errors == []
