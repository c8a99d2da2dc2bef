"""Records from other databases in a real browser: a .hea + .mat + .atr picked together upload as one record,
its reader's warnings show beside it, its reference beat labels are drawn on the ECG, the whole recording's
timeline sits above the traces (probability per finding, burden), and picking a moment explains that window."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import scipy.io

from tests.browser.conftest import plot_data, sign_in

pytestmark = pytest.mark.browser
TIMEOUT_MS = 180_000
FS = 360.0


@pytest.fixture(scope="module")
def cinc_style_files(tmp_path_factory):
    """A 30-s 2-lead (MLII, V1) record as CinC challenges ship them (int16 ``val`` in a .mat, format 16+24,
    checksum 0, ISO date) with a reference annotation file: a beat label every 0.8 s, every fifth one a V."""
    import neurokit2 as nk
    import wfdb

    folder = tmp_path_factory.mktemp("cinc")
    a = nk.ecg_simulate(duration=30, sampling_rate=int(FS), heart_rate=75, random_state=3)
    b = nk.ecg_simulate(duration=30, sampling_rate=int(FS), heart_rate=75, random_state=4) * 0.6
    digital = np.round(np.stack([a, b]) * 1000).astype(np.int16)
    scipy.io.savemat(str(folder / "A00042.mat"), {"val": digital}, format="4")
    lines = [f"A00042 2 {FS:g} {digital.shape[1]} 2014-04-15 05:05:05"]
    lines += [f"A00042.mat 16+24 1000/mV 16 0 {int(digital[i, 0])} 0 0 {lead}" for i, lead in enumerate(["MLII", "V1"])]
    (folder / "A00042.hea").write_text("\n".join(lines) + "\n")
    samples = np.arange(int(0.4 * FS), digital.shape[1], int(0.8 * FS))
    symbols = ["V" if i % 5 == 4 else "N" for i in range(samples.size)]
    wfdb.wrann("A00042", "atr", samples, symbol=symbols, write_dir=str(folder))
    return [folder / f"A00042.{ext}" for ext in ("hea", "mat", "atr")]


def test_a_cinc_style_record_uploads_as_one_with_warnings_annotations_and_a_timeline(
    server, browser_page, cinc_style_files
):
    page = browser_page
    sign_in(page, server)
    page.click('#nav a[data-nav="upload"]')
    # .mat and .atr are among the picker's types; the three files travel as one upload
    accept = page.get_attribute("#file-input", "accept").split(",")
    assert {".hea", ".mat", ".dat", ".atr", ".qrs"} <= set(accept)
    page.set_input_files("#file-input", [str(f) for f in cinc_style_files])
    row = page.locator('.upload-item[data-group="A00042"]')
    row.locator(".state a").wait_for(timeout=60_000)
    assert page.locator(".upload-item").count() == 1
    assert row.locator(".files").text_content() == "A00042.hea + A00042.mat + A00042.atr"
    row.locator(".state a").click()
    page.wait_for_selector("#record-warnings")
    assert page.locator("#record-warnings li").count() == 2
    assert "checksum is 0" in page.text_content("#record-warnings")

    # The reference beat labels: listed under the ECG, drawn on the top lead at their times once zoomed in.
    page.wait_for_selector("#annotation-legend")
    assert "A00042.atr: 37 beats (30 N, 7 V)" in page.text_content("#annotation-legend")
    page.evaluate("() => Plotly.relayout('ecg-plot', {'xaxis.range': [2.0, 6.0]})")
    page.wait_for_function(
        "() => document.getElementById('ecg-plot').data.some("
        "t => t.meta && t.meta.kind === 'annotation' && t.x.every(x => x >= 1.0 && x <= 7.0))"
    )
    marks = [t for t in plot_data(page, "ecg-plot") if (t.get("meta") or {}).get("kind") == "annotation"]
    (mark,) = marks
    status, annotations = server.api(f"/records/{page.url.rsplit('/', 1)[-1]}/annotations")
    assert status == 200
    expected = [b for b in annotations["files"][0]["beats"] if mark["x"][0] <= b["time_s"] <= mark["x"][-1]]
    assert mark["x"] == [b["time_s"] for b in expected]
    assert [t.replace("<b>", "").replace("</b>", "") for t in mark["text"]] == [b["symbol"] for b in expected]

    # An analysis: the timeline above the traces shows every window's probability and each finding's burden.
    page.fill("#analysis-budget", "40")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyses") and r.request.method == "POST") as created:
        page.click("#analysis-start")
    first_id = created.value.json()["id"]
    page.wait_for_selector("#timeline-plot .main-svg", timeout=TIMEOUT_MS)
    status, analysis = server.api(f"/analyses/{first_id}")
    assert status == 200 and analysis["status"] == "done", analysis.get("error")
    sc = analysis["screening"]
    timeline_box = page.locator("#timeline").bounding_box()
    ecg_box = page.locator("#ecg-plot").bounding_box()
    assert timeline_box["y"] + timeline_box["height"] <= ecg_box["y"]  # above the traces
    curves = {
        t["meta"]["class"]: t
        for t in plot_data(page, "timeline-plot")
        if (t.get("meta") or {}).get("kind") == "probability"
    }
    assert sorted(curves) == sorted(sc["classes"])
    for j, c in enumerate(sc["classes"]):
        assert curves[c]["x"][:-1] == sc["starts_s"]
        assert curves[c]["y"][:-1] == pytest.approx([row[j] for row in sc["probabilities"]])
        shown = page.text_content(f'#timeline-burden li[data-class="{c}"] strong')
        assert shown == f"{100 * sc['burden'][c]:.1f}%"
    assert page.locator("#timeline-windows button").count() == len(analysis["windows"])
    coverage = analysis["annotations"]["windows"]
    assert page.locator("#timeline-coverage li").count() == len(coverage)
    assert coverage[0]["summary"] in page.text_content("#timeline-coverage")

    # Typing a moment explains the window that holds it.
    page.fill("#timeline-at", "0:21")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyses") and r.request.method == "POST") as typed:
        page.click('#timeline-pick button[type="submit"]')
    assert json.loads(typed.value.request.post_data)["start_s"] == 20.0
    typed_id = typed.value.json()["id"]
    # A window asked for is explained alone: one button, at that window (the default analysis may also have
    # explained a window there, so its buttons are not enough).
    page.wait_for_function(
        "() => document.querySelectorAll('#timeline-windows button').length === 1 && "
        "document.querySelector('#timeline-windows button').textContent.includes('0:20')",
        timeout=TIMEOUT_MS,
    )
    typed_analysis = _finished(server, typed_id)
    assert typed_analysis["status"] == "done", (typed_analysis["status"], typed_analysis.get("error"))
    assert typed_analysis["explanation"]["start_s"] == 20.0
    page.wait_for_selector("#analysis-start:not([disabled])")

    # Clicking the strip at a moment explains that window too. Through a locator on the plot's drag layer, with the
    # point relative to it: Playwright resolves the element at click time and waits until its box stops moving (the
    # result panels drawn just before may still shift the page; a page coordinate taken earlier then misses).
    page.wait_for_function("() => document.getElementById('timeline-plot')?._fullLayout")
    drag = page.locator("#timeline-plot .nsewdrag")
    at = page.evaluate("""() => { const fl = document.getElementById('timeline-plot')._fullLayout;
        return { x: fl.xaxis.l2p(5.0), y: fl.yaxis._length / 2 }; }""")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyses") and r.request.method == "POST") as clicked:
        drag.click(position=at)
    assert json.loads(clicked.value.request.post_data)["start_s"] == 0.0
    page.wait_for_function(
        "() => document.querySelectorAll('#timeline-windows button').length === 1 && "
        "document.querySelector('#timeline-windows button').textContent.includes('0:00')",
        timeout=TIMEOUT_MS,
    )
    assert page.console_log.errors == []


def _finished(server, analysis_id: str, timeout_s: float = TIMEOUT_MS / 1000) -> dict:
    """The analysis once its job has ended (the page may show its window before the result is in)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, analysis = server.api(f"/analyses/{analysis_id}")
        if status != 200 or analysis["status"] in ("done", "failed") or time.monotonic() > deadline:
            return analysis
        time.sleep(0.25)


def test_the_page_says_why_a_model_cannot_analyse_a_record_and_what_would(server, browser_page, tmp_path):
    import wfdb

    t = np.arange(int(20 * 300)) / 300
    x = (0.05 * np.sin(2 * np.pi * t) + np.exp(-((((t % 0.8) - 0.4) / 0.01) ** 2)))[:, None]
    wfdb.wrsamp("single", fs=300, units=["mV"], sig_name=["ECG"], p_signal=x, fmt=["16"], write_dir=str(tmp_path))
    page = browser_page
    sign_in(page, server)
    page.click('#nav a[data-nav="upload"]')
    page.set_input_files("#file-input", [str(tmp_path / "single.hea"), str(tmp_path / "single.dat")])
    row = page.locator('.upload-item[data-group="single"]')
    row.locator(".state a").wait_for(timeout=60_000)
    row.locator(".state a").click()
    page.wait_for_selector("#analysis-model")
    record_id = page.url.rsplit("/", 1)[-1]
    status, fits = server.api(f"/records/{record_id}/models")
    assert status == 200
    builtin = next(f for f in fits["data"] if f["model"] == "builtin")
    if builtin["fits"]:  # a built-in model for any lead set: nothing to refuse
        page.wait_for_selector("#model-fit", state="attached")
        assert page.locator("#model-fit-reason").count() == 0
        assert page.locator("#analysis-start").is_enabled()
    else:
        page.wait_for_selector("#model-fit-reason")
        text = page.text_content("#model-fit-reason")
        assert builtin["reason"] in text and builtin["advice"] in text and "Error" not in text
        assert page.locator("#analysis-start").is_disabled()
        status, body = server.api(
            "/analyses",
            body=json.dumps({"record_id": record_id, "model": "builtin"}).encode(),
            content_type="application/json",
        )
        assert status == 422 and builtin["reason"] in body["detail"]
    assert page.console_log.errors == []


def test_dropped_files_are_grouped_by_record_name_and_by_the_files_a_header_names(
    server, browser_page, cinc_style_files
):
    import base64

    page = browser_page
    sign_in(page, server)
    page.click('#nav a[data-nav="upload"]')
    # The grouping itself: a header naming a signal file of another name takes it; annotations go by record name.
    groups = page.evaluate("""async () => {
        const u = await import('/js/upload.js');
        const files = [new File(['rec 1 250 1000\\nsignals_2020.dat 16 200 16 0 0 0 0 II\\n'], 'rec.hea'),
                       new File(['x'], 'signals_2020.dat'), new File(['x'], 'rec.qrs'), new File(['x'], 'B1.mat'),
                       new File(['x'], 'B1.hea'), new File(['x'], 'strip.csv'), new File(['x'], 'lone.mat')];
        const named = await u.headerNames(files);
        return { named, groups: u.groupFiles(files, named).map((g) => [g.label, g.files.map((f) => f.name)]) };
    }""")
    assert groups["named"]["rec.hea"] == ["signals_2020.dat"]
    assert groups["groups"] == [
        ["rec", ["rec.hea", "signals_2020.dat", "rec.qrs"]],
        ["B1", ["B1.mat", "B1.hea"]],
        ["strip.csv", ["strip.csv"]],
        ["lone", ["lone.mat"]],
    ]
    # A drop of the CinC-style triple uploads one record.
    payload = [{"name": f.name, "b64": base64.b64encode(f.read_bytes()).decode()} for f in cinc_style_files]
    page.evaluate(
        """(files) => {
        const dt = new DataTransfer();
        for (const f of files) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
        const zone = document.querySelector('#dropzone');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""",
        payload,
    )
    row = page.locator('.upload-item[data-group="A00042"]')
    row.locator(".state a").wait_for(timeout=60_000)
    assert page.locator(".upload-item").count() == 1
    assert row.locator(".files").text_content() == "A00042.hea + A00042.mat + A00042.atr"
    assert page.console_log.errors == []
