"""The one-page PDF report, rendered to PNG by poppler's pdftoppm and read back: it is one page, not blank, says
what it must (diagnosis, model card, record hash, score), lays out 12 leads on the standard grid, and shades the
critical segments where the explanation put them."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import ecglens
from ecglens.ecg import Ecg
from ecglens.reports.pdf import DISTORTION_COLOURS, ECG_H_MM, ECG_Y_MM, render_report, row_layout
from ecglens.reports.summary import summarize
from ecglens.robustness import robustness

DPI = 72  # one pixel per point: page coordinates are pixel coordinates
MM = 72 / 25.4
SHA = "0123456789abcdef" * 4

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed",
)


class SmoothClassifier:
    """p("sinus rhythm") from the share of lead II's power between 0.5 and 20 Hz (noise lowers it)."""

    class_names = ("sinus rhythm", "artefact")
    sampling_rate = 250.0
    window_s = 2.0
    multilabel = False
    thresholds = {"sinus rhythm": 0.5, "artefact": 0.5}

    def __init__(self, leads: tuple[str, ...]):
        self.lead_names = leads
        self.lead_ii = leads.index("II")

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)[:, self.lead_ii]
        x = x - x.mean(axis=1, keepdims=True)
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        f = np.fft.rfftfreq(x.shape[1], 1.0 / self.sampling_rate)
        share = power[:, (f >= 0.5) & (f <= 20)].sum(1) / np.maximum(power[:, f >= 0.5].sum(1), 1e-12)
        p = 1.0 / (1.0 + np.exp(-100.0 * (share - 0.97)))
        return np.stack([p, 1.0 - p], axis=1)


def _analyse(ecg: Ecg) -> dict:
    clf = SmoothClassifier(ecg.leads)
    explanation = ecglens.explain(ecg, clf, query_budget=80, seed=0)
    report = robustness(ecg, clf, seed=0, seeds=2, start_s=explanation.start_s, label=explanation.diagnosis.label)
    return {"explanation": explanation.to_dict(), "robustness": report.to_dict()}


@pytest.fixture(scope="module")
def twelve_lead() -> tuple[Ecg, dict]:
    import neurokit2 as nk

    df = nk.ecg_simulate(duration=10, sampling_rate=250, heart_rate=70, method="multileads", random_state=3)
    ecg = Ecg(
        df.to_numpy().T.astype(np.float32), 250.0, tuple(df.columns), name="sim12", metadata={"date": "2023-04-05"}
    )
    return ecg, _analyse(ecg)


@pytest.fixture(scope="module")
def two_lead() -> tuple[Ecg, dict]:
    import neurokit2 as nk

    a = nk.ecg_simulate(duration=4, sampling_rate=250, heart_rate=72, random_state=7)
    b = nk.ecg_simulate(duration=4, sampling_rate=250, heart_rate=72, random_state=8) * 0.7
    ecg = Ecg(np.stack([a, b]).astype(np.float32), 250.0, ("I", "II"), name="sim2")
    return ecg, _analyse(ecg)


def _render(ecg: Ecg, result: dict, **kwargs) -> bytes:
    return render_report(
        ecg,
        result,
        model_name="smooth",
        model_version="2.1",
        record_sha256=SHA,
        analysis_id="a1b2c3",
        analysed_at="2024-05-01T12:00:00.000000Z",
        created=datetime(2024, 5, 2, 9, 30, tzinfo=timezone.utc),
        **kwargs,
    )


def _png(pdf: bytes, folder: Path) -> np.ndarray:
    """The PDF rendered by pdftoppm at `DPI`: uint8 RGB ``[rows, columns, 3]``; exactly one page."""
    from PIL import Image

    (folder / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-png", str(folder / "report.pdf"), str(folder / "page")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pages = sorted(folder.glob("page*.png"))
    assert len(pages) == 1
    return np.asarray(Image.open(io.BytesIO(pages[0].read_bytes())).convert("RGB"))


def _text(pdf: bytes, folder: Path) -> str:
    (folder / "t.pdf").write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-layout", str(folder / "t.pdf"), "-"], check=True, capture_output=True, timeout=60
    )
    return out.stdout.decode("utf-8", errors="replace")


@needs_poppler
def test_report_renders_to_one_page_that_is_not_blank(twelve_lead, tmp_path):
    ecg, result = twelve_lead
    image = _png(_render(ecg, result), tmp_path)
    assert image.shape[1] > image.shape[0]  # A4 landscape
    ink = (image < 200).any(axis=2)
    assert ink.mean() > 0.05  # grid, traces, text: far from an empty page
    dark = (image < 60).all(axis=2)
    assert dark.mean() > 0.005  # the traces and the text are drawn in black


@needs_poppler
def test_report_says_diagnosis_model_hash_dates_and_score(twelve_lead, tmp_path):
    ecg, result = twelve_lead
    text = _text(_render(ecg, result), tmp_path)
    diagnosis = result["explanation"]["diagnosis"]
    assert diagnosis["label"] in text
    for name, p in diagnosis["probabilities"].items():
        assert name in text and f"{p:.3f}" in text
    assert "Model smooth, version 2.1" in text
    assert SHA in text
    assert "Report date 2024-05-02 09:30 UTC" in text and "Analysed 2024-05-01 12:00:00 UTC" in text
    assert f"{result['robustness']['score']:.2f}" in text and "0 = fragile, 1 = robust" in text
    levels = result["robustness"]["snr_levels_db"]
    for item in result["robustness"]["distortions"]:
        flip = item["flip_snr_db"]
        if flip is None:
            assert "holds at every level" in text
        elif min(levels) <= flip <= max(levels):
            assert f"flips at {flip:.1f} dB" in text
        else:  # beyond the tested levels only the side is said, as on the page
            assert f"flips {'below -6' if flip < min(levels) else 'above 24'} dB" in text


@needs_poppler
def test_twelve_leads_use_the_standard_layout_with_a_rhythm_strip(twelve_lead, tmp_path):
    ecg, result = twelve_lead
    text = _text(_render(ecg, result), tmp_path)
    lines = [line.split()[:4] for line in text.splitlines()]  # the legend column may share a line
    assert ["I", "aVR", "V1", "V4"] in lines and ["II", "aVL", "V2", "V5"] in lines
    assert ["III", "aVF", "V3", "V6"] in lines
    assert "25 mm/s, 10 mm/mV" in text


def _band(image: np.ndarray, ecg: Ecg, row: int, x0_mm: float, x1_mm: float) -> np.ndarray:
    """Pixels of the ECG area's ``row`` (top first, as `row_layout` lays it out) between x0 and x1 mm from the
    page's left."""
    page_h_pt = image.shape[0]
    rows, _ = row_layout(ecg, (0.0, min(10.0, ecg.duration_s)), ECG_H_MM * MM)
    top_pt, bottom_pt = rows[row][:2]
    a = int(page_h_pt - (ECG_Y_MM * MM + top_pt)) + 2
    b = int(page_h_pt - (ECG_Y_MM * MM + bottom_pt)) - 2
    return image[a:b, int(x0_mm * MM) + 1 : int(x1_mm * MM) - 1]


def _tinted(pixels: np.ndarray, colour: str) -> float:
    """Share of pixels whose colour leans to ``colour`` (hex) the way a translucent fill of it over paper does."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    lean = target - target.mean()
    px = pixels.astype(float)
    return float(((px - px.mean(axis=2, keepdims=True)) @ lean / (lean @ lean) > 0.25).mean())


@needs_poppler
def test_critical_segments_are_shaded_where_they_are(two_lead, tmp_path):
    ecg, result = two_lead
    segments = result["explanation"]["segments"]
    assert segments and {s["lead"] for s in segments} == {"II"}
    image = _png(_render(ecg, result), tmp_path)
    # The most critical segment: shading opacity grows with the score, so this one is the most visible.
    seg = max(segments, key=lambda s: (s["score"], s["end_s"] - s["start_s"]))
    colour = DISTORTION_COLOURS.get(seg["distortion"], "#D55E00")
    # Stacked layout: lead I on top, lead II below; 4 s from x = 8 mm at 25 mm/s.
    inside = _band(image, ecg, 1, 8 + 25 * seg["start_s"], 8 + 25 * seg["end_s"])
    other_lead = _band(image, ecg, 0, 8 + 25 * seg["start_s"], 8 + 25 * seg["end_s"])
    covered = np.zeros(100, dtype=bool)
    for s in segments:
        covered[int(s["start_s"] * 25) : int(np.ceil(s["end_s"] * 25))] = True
    # The longest stretch no segment touches (in 1-mm = 0.04-s steps).
    edges = np.flatnonzero(np.diff(np.concatenate([[1], covered.astype(int), [1]])))
    starts, ends = edges[::2], edges[1::2]
    assert starts.size, "segments cover the whole record"
    longest = int(np.argmax(ends - starts))
    assert ends[longest] - starts[longest] >= 3
    outside = _band(image, ecg, 1, 8 + starts[longest], 8 + ends[longest])
    assert _tinted(inside, colour) > 0.5
    assert _tinted(other_lead, colour) < 0.02
    assert _tinted(outside, colour) < 0.02


@needs_poppler
def test_report_without_robustness_or_segments_still_renders(two_lead, tmp_path):
    ecg, result = two_lead
    bare = {"explanation": {**result["explanation"], "segments": [], "adversarial": None}, "robustness": None}
    pdf = _render(ecg, bare, record_name="bare record")
    text = _text(pdf, tmp_path)
    assert "No robustness report for this analysis." in text and "none found" in text
    assert "Record bare record: 2 leads, 250 Hz, 4.0 s" in text
    assert (_png(pdf, tmp_path) < 200).any(axis=2).mean() > 0.03


def test_report_of_an_unfinished_analysis_is_refused(two_lead):
    ecg, _ = two_lead
    with pytest.raises(ValueError, match="not finished|no explanation"):
        render_report(ecg, {}, model_name="m", model_version=None, record_sha256=SHA)


@needs_poppler
def test_text_outside_the_pdf_fonts_does_not_break_the_report(two_lead, tmp_path):
    ecg, result = two_lead
    explanation = result["explanation"]
    renamed = {
        "explanation": {**explanation, "diagnosis": {**explanation["diagnosis"], "label": "QT \u2191 \u03b2"}},
        "robustness": result["robustness"],
    }
    text = _text(_render(ecg, renamed, record_name="\u5fc3\u96fb\u56f3"), tmp_path)
    assert "QT ? ?" in text and "Record ???" in text


def _flat_words(text: str) -> str:
    return " ".join(text.split())


@needs_poppler
def test_report_carries_the_account_patient_fields_and_clinical_basics(twelve_lead, tmp_path):
    ecg, result = twelve_lead
    account = summarize(result, ecg=ecg)
    patient = {
        "id": None,
        "age": 77,
        "sex": "F",
        "diagnoses": [{"code": "427084000", "display": "sinus tachycardia", "system": "snomed"}],
    }
    basics = {
        "heart_rate_bpm": 70.2,
        "intervals_ms": {"RR": 855.0, "PR": 160.0, "QRS": 92.0, "QT": 380.0, "QTc": 410.9},
        "lead": "II",
        "start_s": 0.0,
        "end_s": 10.0,
        "qtc_formula": "Bazett",
    }
    text = _flat_words(_text(_render(ecg, result, summary=account, patient=patient, basics=basics), tmp_path))
    assert "Patient 77 y, F; header diagnoses: sinus tachycardia (427084000)" in text
    assert "HR 70 bpm, RR 855, PR 160, QRS 92, QT 380, QTc 411 ms (QTc Bazett; lead II, 0-10 s)" in text
    assert _flat_words(account["headline"]) in text
    for statement in account["statements"]:
        if statement["key"] == "caveat":
            continue
        # pdftotext breaks lines where the PDF does: compare the words.
        words = _flat_words(statement["text"].replace("\u2212", "-"))
        assert words[:60] in text and words[-40:] in text, statement["key"]


class LongNames(SmoothClassifier):
    """Long class names, and the model's lead is MLII (the record's II stands in for it)."""

    class_names = ("atrial fibrillation/flutter", "supraventricular ectopy")
    thresholds = {"atrial fibrillation/flutter": 0.5, "supraventricular ectopy": 0.5}

    def __init__(self):
        self.lead_names = ("MLII",)
        self.lead_ii = 0


@needs_poppler
def test_long_class_names_are_not_cut_and_leads_are_named_as_the_record_names_them(twelve_lead, tmp_path):
    ecg, _ = twelve_lead
    clf = LongNames()
    explanation = ecglens.explain(ecg, clf, query_budget=60, seed=0)
    result = {"explanation": explanation.to_dict(), "robustness": None}
    assert result["explanation"]["segments"] and {s["lead"] for s in result["explanation"]["segments"]} == {"MLII"}
    text = _text(_render(ecg, result), tmp_path)
    assert "atrial fibrillation/flutter" in text and "supraventricular ectopy" in text
    legend = [line for line in text.splitlines() if " s " in line and "1. " in line]
    assert legend and "1. II " in legend[0] and "MLII" not in text


def test_rows_grow_for_tall_complexes_instead_of_cutting_them():
    fs = 250.0
    t = np.arange(int(10 * fs)) / fs
    normal = np.exp(-(((t % 1.0) - 0.5) ** 2) / (2 * 0.01**2)).astype(np.float32)
    tall = Ecg(np.stack([normal * 3.5, normal * 0.8, -normal * 2.5]), fs, ("I", "II", "V1"))
    h = ECG_H_MM * MM
    rows, gain = row_layout(tall, (0.0, 10.0), h)
    assert gain == 10.0  # 3.5 + 0.8 + 2.5 mV (and half a mV of paper each side) fit the area at full gain
    for (top, bottom, base), lead in zip(rows, tall.signal):
        assert bottom <= base + lead.min() * gain * MM and base + lead.max() * gain * MM <= top + 1e-6
    assert rows[0][0] == pytest.approx(h) and rows[-1][1] == pytest.approx(0.0, abs=1e-6)
    assert rows[0][0] - rows[0][1] > rows[1][0] - rows[1][1]  # the tall lead's row is the taller
    # Rows that cannot fit at 10 mm/mV are drawn at 5 mm/mV, still uncut.
    huge = Ecg(np.stack([normal * 6.0, -normal * 5.0]), fs, ("I", "II"))
    rows, gain = row_layout(huge, (0.0, 10.0), h)
    assert gain == 5.0
    for (top, bottom, base), lead in zip(rows, huge.signal):
        assert bottom <= base + lead.min() * gain * MM and base + lead.max() * gain * MM <= top + 1e-6
