"""The one-page PDF report of an analysis (reportlab), for the chart or the printer.

A4 landscape. Top: record, patient fields of the header (when given), the clinical basics measured on the ECG,
model card name and version, analysis date, record SHA-256; then the plain-language account of the result
(`ecglens.reports.summary`, the same statements the page and the FHIR Observation carry). Middle: the ECG on
paper grid at 25 mm/s (a 12-lead record in the standard 3 x 4 layout, 2.5 s per column, with a lead II rhythm
strip; fewer or other leads stacked, 10 s each), the critical segments shaded in their distortion's colour,
darker for a higher score. Each row is as tall as its trace needs, so no QRS complex is cut; when the rows do not
fit at 10 mm/mV the whole ECG is drawn at 5 mm/mV (the legend and the calibration pulse say which). Bottom: the
diagnosis with every class probability, the robustness curves (probability of the diagnosis against the SNR of
each distortion, 24 dB on the left, -6 dB on the right) and the overall robustness score with what it means.

Colours are the frontend's colour-blind-safe palette (Okabe-Ito); the curves also differ by marker and dash.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from reportlab.graphics import renderPDF
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib.colors import Color, HexColor, black, white
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen.canvas import Canvas

import ecglens
from ecglens.ecg import STANDARD_12, Ecg
from ecglens.reports.summary import analysis_summary, flip_text, shown_lead

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
DISPLAY_S = 10.0
# The frontend's palette (frontend/js/viewer.js), so a distortion has one colour everywhere.
DISTORTION_COLOURS = {
    "baseline_wander": "#E69F00",
    "powerline": "#56B4E9",
    "muscle": "#009E73",
    "electrode_motion": "#CC79A7",
    "gaussian": "#0072B2",
    "dropout": "#F0E442",
    "none": "#505050",
}
_SPARE_COLOURS = ("#000000", "#999933")  # as the frontend's; vermillion is the adversarial overlay's
_GRID_MINOR, _GRID_MAJOR = HexColor("#f7d4d4"), HexColor("#e59a9a")
_MARKERS = ("Circle", "Square", "Diamond", "Triangle", "Cross", "StarFive")
_DASHES = (None, (4, 2), (1, 2), (4, 2, 1, 2), (6, 3), (6, 2, 1, 2))
_LAYOUT_12 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
_MAX_STACKED = 12
# Where the ECG grid sits on the page (mm from the bottom-left corner).
ECG_X_MM, ECG_Y_MM, ECG_W_MM, ECG_H_MM = 8.0, 62.0, 250.0, 86.0
_ROW_MARGIN_MV = 0.3  # paper above and below each row's trace


def distortion_colour(kind: str) -> Color:
    """The palette colour of a distortion kind (unknown kinds get a spare colour, the same one every time)."""
    if kind in DISTORTION_COLOURS:
        return HexColor(DISTORTION_COLOURS[kind])
    return HexColor(_SPARE_COLOURS[sum(map(ord, str(kind))) % len(_SPARE_COLOURS)])


def render_report(
    ecg: Ecg,
    result: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str | None,
    record_sha256: str,
    record_name: str | None = None,
    analysis_id: str | None = None,
    analysed_at: str | None = None,
    created: datetime | None = None,
    summary: Mapping[str, Any] | None = None,
    patient: Mapping[str, Any] | None = None,
    basics: Mapping[str, Any] | None = None,
) -> bytes:
    """Render the one-page PDF report of an analysis and return its bytes.

    Parameters
    ----------
    ecg : Ecg
        The analysed record (float32 ``[leads, samples]`` in mV); 10 s around the explained window are drawn.
    result : mapping
        ``{"explanation": Explanation.to_dict(), "robustness": RobustnessReport.to_dict() or None}``.
    model_name, model_version : str
        The classifier's name and model-card version (None: "unversioned").
    record_sha256 : str
        SHA-256 of the record file that was read (hex).
    record_name : str, optional
        Shown in the header. Default: ``ecg.name``.
    analysis_id : str, optional
        Shown in the header. Default: None.
    analysed_at : str, optional
        When the analysis finished (ISO text). Default: None.
    created : datetime, optional
        The report's date. Default: now (UTC).
    summary : mapping, optional
        The account of the result (`ecglens.reports.summary.summarize`). Default: the result's own, else one
        built from the result and ``ecg``.
    patient : mapping, optional
        `ecglens.reports.patient.patient_fields` of the record, shown in the header. Default: None (none shown).
    basics : mapping, optional
        `ecglens.reports.basics.clinical_basics` of the record, shown in the header. Default: None.

    Returns
    -------
    bytes of a one-page A4-landscape PDF.

    Raises
    ------
    ValueError
        When ``result`` has no explanation with a diagnosis.
    """
    explanation = result.get("explanation")
    if not isinstance(explanation, Mapping) or not isinstance(explanation.get("diagnosis"), Mapping):
        raise ValueError("the analysis has no explanation with a diagnosis (is it finished?)")
    robustness = result.get("robustness") if isinstance(result.get("robustness"), Mapping) else None
    account = dict(summary) if summary else analysis_summary(result, ecg=ecg)
    created = created or datetime.now(timezone.utc)
    buffer = io.BytesIO()
    width, height = landscape(A4)
    canvas = Canvas(buffer, pagesize=(width, height), pageCompression=1)
    canvas.setTitle(f"ECG Lens report {analysis_id or ''}".strip())
    canvas.setAuthor(f"ECG Lens {ecglens.__version__}")
    canvas.setSubject(f"diagnosis {explanation['diagnosis'].get('label')}; record SHA-256 {record_sha256}")

    _header(
        canvas,
        ecg,
        explanation,
        model_name=model_name,
        model_version=model_version,
        record_sha256=record_sha256,
        record_name=record_name or ecg.name,
        analysis_id=analysis_id,
        analysed_at=analysed_at,
        created=created,
        top=height - 8 * mm,
        width=width,
        patient=patient,
        basics=basics,
    )
    _summary_panel(
        canvas, account, x=8 * mm, top=height - 33 * mm, w=width - 16 * mm, bottom=(ECG_Y_MM + ECG_H_MM + 2) * mm
    )
    window = _display_window(ecg, explanation, robustness)
    _ecg_panel(
        canvas,
        ecg,
        explanation.get("segments") or [],
        window,
        x=ECG_X_MM * mm,
        y=ECG_Y_MM * mm,
        w=ECG_W_MM * mm,
        h=ECG_H_MM * mm,
    )
    _diagnosis_panel(canvas, explanation, x=8 * mm, y=10 * mm, w=88 * mm, h=48 * mm)
    _curves_panel(canvas, robustness, x=100 * mm, y=10 * mm, w=104 * mm, h=48 * mm)
    _score_panel(canvas, robustness, explanation, account, x=208 * mm, y=10 * mm, w=81 * mm, h=48 * mm)
    canvas.setFont("Helvetica", 6)
    canvas.setFillColor(HexColor("#555555"))
    canvas.drawString(
        8 * mm,
        5 * mm,
        _text(
            f"Generated {created.strftime('%Y-%m-%d %H:%M UTC')} by ECG Lens {ecglens.__version__}. The explanation "
            "shows which parts of the signal the classifier relied on; it is not a diagnosis by a clinician."
        ),
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


_PLAIN = {"\u2212": "-", "\u2264": "<=", "\u2265": ">=", "\u2248": "~"}


def _text(value: Any) -> str:
    """Text the standard PDF fonts can show (WinAnsi); a minus sign becomes "-", other characters "?"."""
    text = str(value)
    for a, b in _PLAIN.items():
        text = text.replace(a, b)
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _fit(canvas: Canvas, text: str, font: str, size: float, width: float, min_size: float = 5.0) -> float:
    """Set ``font`` at the largest size up to ``size`` at which ``text`` fits ``width``; return that size. Text
    that does not fit even at ``min_size`` is drawn at it (and may run on): nothing is cut."""
    while size > min_size and canvas.stringWidth(text, font, size) > width:
        size -= 0.25
    canvas.setFont(font, size)
    return size


# --- header ----------------------------------------------------------------------------------------------
def _header(
    canvas: Canvas,
    ecg: Ecg,
    explanation: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str | None,
    record_sha256: str,
    record_name: str,
    analysis_id: str | None,
    analysed_at: str | None,
    created: datetime,
    top: float,
    width: float,
    patient: Mapping[str, Any] | None = None,
    basics: Mapping[str, Any] | None = None,
) -> None:
    canvas.setFillColor(black)
    canvas.setFont("Helvetica-Bold", 13)
    canvas.drawString(8 * mm, top - 4 * mm, "ECG Lens - explanation and robustness report")
    canvas.setFont("Helvetica", 8)
    right = width - 8 * mm
    canvas.drawRightString(right, top - 3 * mm, _text(f"Report date {created.strftime('%Y-%m-%d %H:%M UTC')}"))
    if analysed_at:
        canvas.drawRightString(right, top - 7 * mm, _text(f"Analysed {analysed_at[:19].replace('T', ' ')} UTC"))
    if analysis_id:
        canvas.drawRightString(right, top - 11 * mm, _text(f"Analysis {analysis_id}"))
    date = ecg.metadata.get("date")
    recorded = f", recorded {date}" if date else ""
    canvas.drawString(
        8 * mm,
        top - 9 * mm,
        _text(
            f"Record {record_name or '(unnamed)'}: {ecg.n_leads} leads, {ecg.fs:g} Hz, {ecg.duration_s:.1f} s{recorded}"
        ),
    )
    canvas.setFont("Helvetica", 8)
    canvas.drawString(8 * mm, top - 13 * mm, "Record SHA-256:")
    canvas.setFont("Courier", 7.5)
    canvas.drawString(31 * mm, top - 13 * mm, _text(record_sha256))
    canvas.setFont("Helvetica", 8)
    version = model_version if model_version not in (None, "") else "unversioned"
    method = explanation.get("method") or "?"
    canvas.drawString(
        8 * mm,
        top - 17 * mm,
        _text(
            f"Model {model_name}, version {version}   |   explainer {method}, {int(explanation.get('queries', 0))} "
            f"classifier queries"
        ),
    )
    line = "   |   ".join(x for x in (patient_line(patient), basics_line(basics)) if x)
    if line:
        _fit(canvas, _text(line), "Helvetica", 8, width - 16 * mm)
        canvas.drawString(8 * mm, top - 21 * mm, _text(line))


def patient_line(patient: Mapping[str, Any] | None) -> str:
    """``Patient 51 y, F; header diagnoses: sinus tachycardia (427084000)`` (empty without patient fields)."""
    if not patient:
        return ""
    parts = []
    if patient.get("id"):
        parts.append(f"ID {patient['id']}")
    if patient.get("age") is not None:
        parts.append(f"{float(patient['age']):g} y")
    if patient.get("sex"):
        parts.append(str(patient["sex"]))
    dx = [
        f"{d['display']} ({d['code']})"
        if d.get("display") and d.get("display") != d.get("code")
        else str(d.get("code"))
        for d in patient.get("diagnoses") or []
    ]
    text = "Patient " + ", ".join(parts) if parts else "Patient"
    if dx:
        text += "; header diagnoses: " + ", ".join(dx)
    return text if (parts or dx) else ""


def basics_line(basics: Mapping[str, Any] | None) -> str:
    """``HR 66 bpm, RR 897, PR 131, QRS 103, QT 450, QTc 475 ms (Bazett; lead II, 0-60 s)``."""
    if not basics or (basics.get("heart_rate_bpm") is None and not any((basics.get("intervals_ms") or {}).values())):
        return ""
    values = basics.get("intervals_ms") or {}
    hr = basics.get("heart_rate_bpm")
    parts = [f"HR {float(hr):.0f} bpm" if hr is not None else "HR -"]
    parts += [
        f"{k} {float(values[k]):.0f}" if values.get(k) is not None else f"{k} -"
        for k in ("RR", "PR", "QRS", "QT", "QTc")
    ]
    where = basics.get("basics") or basics
    lead = where.get("lead")
    span = f", {float(where['start_s']):g}-{float(where['end_s']):g} s" if where.get("end_s") is not None else ""
    return ", ".join(parts) + f" ms (QTc {where.get('qtc_formula') or 'Bazett'}; lead {lead}{span})"


def _summary_panel(
    canvas: Canvas, account: Mapping[str, Any], *, x: float, top: float, w: float, bottom: float
) -> None:
    """The account: the headline, then each statement as a titled paragraph, filling the band above the ECG."""
    canvas.setFillColor(black)
    _fit(canvas, _text(account.get("headline", "")), "Helvetica-Bold", 10, w)
    canvas.drawString(x, top, _text(account.get("headline", "")))
    statements = [st for st in account.get("statements") or [] if st.get("key") != "caveat"]
    size = 7.0
    while size > 5.0:  # the largest size at which every statement fits the band
        lines = sum(len(simpleSplit(_text(f"{st['title']}: {st['text']}"), "Helvetica", size, w)) for st in statements)
        if lines * size * 1.2 <= top - 3 * mm - bottom:
            break
        size -= 0.25
    yy = top - 3.6 * mm
    for st in statements:
        title = _text(f"{st['title']}: ")
        lines = simpleSplit(title + _text(st["text"]), "Helvetica", size, w)
        for i, line in enumerate(lines):
            if yy < bottom:
                return
            if i == 0 and line.startswith(title):
                canvas.setFont("Helvetica-Bold", size)
                canvas.drawString(x, yy, title)
                canvas.setFont("Helvetica", size)
                canvas.drawString(x + canvas.stringWidth(title, "Helvetica-Bold", size), yy, line[len(title) :])
            else:
                canvas.setFont("Helvetica", size)
                canvas.drawString(x, yy, line)
            yy -= size * 1.2


# --- ECG on paper grid -----------------------------------------------------------------------------------
def _display_window(
    ecg: Ecg, explanation: Mapping[str, Any], robustness: Mapping[str, Any] | None
) -> tuple[float, float]:
    """``(start_s, end_s)`` of the drawn 10 s: centred on the explained window, inside the record."""
    span = min(DISPLAY_S, ecg.duration_s)
    start = float(explanation.get("start_s") or 0.0)
    fs = float(explanation.get("fs") or 0.0)
    saliency = explanation.get("saliency")
    length = len(saliency[0]) / fs if fs > 0 and isinstance(saliency, list) and saliency and saliency[0] else None
    if length is None and robustness is not None:
        length = (robustness.get("extra") or {}).get("window_s")
    centre = start + float(length or 0.0) / 2.0
    begin = min(max(centre - span / 2.0, 0.0), ecg.duration_s - span)
    return max(begin, 0.0), max(begin, 0.0) + span


def _grid(canvas: Canvas, x: float, y: float, w: float, h: float) -> None:
    canvas.setFillColor(white)
    canvas.rect(x, y, w, h, stroke=0, fill=1)
    for step, colour, width in ((1 * mm, _GRID_MINOR, 0.25), (5 * mm, _GRID_MAJOR, 0.6)):
        canvas.setStrokeColor(colour)
        canvas.setLineWidth(width)
        lines = [(x + i * step, y, x + i * step, y + h) for i in range(int(round(w / step)) + 1)]
        lines += [(x, y + j * step, x + w, y + j * step) for j in range(int(round(h / step)) + 1)]
        canvas.lines(lines)


def _panels(ecg: Ecg, window: tuple[float, float]) -> tuple[list[tuple[int, int, float, float]], int, int]:
    """``([(lead row, panel row, t0, t1)], n_rows, n_columns)``: the standard 3 x 4 layout plus a lead II rhythm
    strip for a 12-lead record, else one full-width row per lead (at most 12)."""
    start, end = window
    if set(STANDARD_12) <= set(ecg.leads) and end - start >= DISPLAY_S - 1e-9:
        quarter = (end - start) / 4.0
        panels = [
            (ecg.leads.index(lead), r, start + c * quarter, start + (c + 1) * quarter)
            for r, row in enumerate(_LAYOUT_12)
            for c, lead in enumerate(row)
        ]
        panels.append((ecg.leads.index("II"), 3, start, end))
        return panels, 4, 4
    rows = min(ecg.n_leads, _MAX_STACKED)
    return [(i, i, start, end) for i in range(rows)], rows, 1


def row_layout(ecg: Ecg, window: tuple[float, float], h: float) -> tuple[list[tuple[float, float, float]], float]:
    """``([(row top, row bottom, baseline)] in points from the ECG area's bottom, gain in mm/mV)``.

    Every row is as tall as its trace needs (highest peak to deepest trough of the leads it shows, plus paper
    above and below), so no complex is cut; rows share what height is left over. When the rows do not fit the
    area at 10 mm/mV, all are drawn at 5 mm/mV (then 2.5), as an electrocardiograph halves its gain.
    """
    panels, n_rows, _ = _panels(ecg, window)
    centred = ecg.signal - np.median(_window_samples(ecg, window), axis=1, keepdims=True)
    above, below = np.full(n_rows, 0.5), np.full(n_rows, 0.5)  # at least 1 mV per row
    for lead_row, panel_row, t0, t1 in panels:
        a, b = int(round(t0 * ecg.fs)), min(int(round(t1 * ecg.fs)) + 1, ecg.n_samples)
        if b - a < 2:
            continue
        seg = centred[lead_row, a:b].astype(np.float64)
        above[panel_row] = max(above[panel_row], float(seg.max()))
        below[panel_row] = max(below[panel_row], -float(seg.min()))
    gain = GAIN_MM_MV
    for gain in (GAIN_MM_MV, GAIN_MM_MV / 2, GAIN_MM_MV / 4):
        if (above + below).sum() * gain * mm <= h and (gain < GAIN_MM_MV or h / n_rows >= 20 * mm):
            break
    # Paper above and below each trace, as much of `_ROW_MARGIN_MV` as the area leaves room for.
    margin = float(np.clip((h / (gain * mm) - (above + below).sum()) / (2 * n_rows), 0.0, _ROW_MARGIN_MV))
    above, below = above + margin, below + margin
    need_mv = above + below
    spare = max(0.0, h - need_mv.sum() * gain * mm) / n_rows
    rows, top = [], h
    for r in range(n_rows):
        height = need_mv[r] * gain * mm + spare
        baseline = top - spare / 2 - above[r] * gain * mm
        rows.append((top, top - height, baseline))
        top -= height
    return rows, gain


def _ecg_panel(
    canvas: Canvas,
    ecg: Ecg,
    segments: Sequence[Mapping[str, Any]],
    window: tuple[float, float],
    *,
    x: float,
    y: float,
    w: float,
    h: float,
) -> None:
    legend_x = x + w + 4 * mm
    # True paper scale: a record shorter than 10 s gets a shorter grid (whole 5-mm squares), not a stretched one.
    w = min(w, float(np.ceil((window[1] - window[0]) * PAPER_SPEED_MM_S / 5.0 - 1e-9)) * 5 * mm)
    _grid(canvas, x, y, w, h)
    panels, n_rows, n_cols = _panels(ecg, window)
    rows, gain = row_layout(ecg, window, h)
    start = window[0]
    to_x = lambda t: x + (t - start) * PAPER_SPEED_MM_S * mm  # noqa: E731 - seconds -> points on the page

    # Critical segments first, under the traces.
    for lead_row, panel_row, t0, t1 in panels:
        row_top, row_bottom, _ = rows[panel_row]
        for seg in segments:
            if _segment_row(ecg, str(seg.get("lead"))) != lead_row:
                continue
            a, b = max(float(seg["start_s"]), t0), min(float(seg["end_s"]), t1)
            if b <= a:
                continue
            colour = distortion_colour(str(seg.get("distortion")))
            canvas.setFillColor(colour, alpha=0.12 + 0.33 * min(max(float(seg.get("score", 0)), 0.0), 1.0))
            canvas.rect(to_x(a), y + row_bottom, to_x(b) - to_x(a), row_top - row_bottom, stroke=0, fill=1)

    canvas.saveState()
    canvas.setStrokeColor(HexColor("#111111"))
    canvas.setLineWidth(0.6)
    canvas.setLineJoin(1)
    centred = ecg.signal - np.median(_window_samples(ecg, window), axis=1, keepdims=True)
    for lead_row, panel_row, t0, t1 in panels:
        a, b = int(round(t0 * ecg.fs)), min(int(round(t1 * ecg.fs)) + 1, ecg.n_samples)
        if b - a < 2:
            continue
        t = np.arange(a, b) / ecg.fs
        base = y + rows[panel_row][2]
        xs = to_x(t)
        ys = base + centred[lead_row, a:b].astype(np.float64) * gain * mm
        path = canvas.beginPath()
        path.moveTo(float(xs[0]), float(ys[0]))
        for px, py in zip(xs[1:].tolist(), ys[1:].tolist()):
            path.lineTo(px, py)
        canvas.drawPath(path, stroke=1, fill=0)
    canvas.restoreState()

    # Lead names, column separators, time marks.
    canvas.setFillColor(black)
    canvas.setFont("Helvetica-Bold", 8)
    for lead_row, panel_row, t0, _ in panels:
        canvas.drawString(to_x(t0) + 1.2 * mm, y + rows[panel_row][0] - 3.5 * mm, _text(ecg.leads[lead_row]))
    canvas.setStrokeColor(black)
    canvas.setLineWidth(0.8)
    if n_cols > 1:
        for _lead_row, panel_row, t0, _ in panels:
            if t0 > start + 1e-9 and panel_row < 3:
                mid = y + rows[panel_row][2]
                canvas.line(to_x(t0), mid - 2.5 * mm, to_x(t0), mid + 2.5 * mm)
    canvas.setFont("Helvetica", 6.5)
    for second in range(int(np.ceil(start)), int(np.floor(window[1])) + 1):
        canvas.drawCentredString(to_x(second), y - 3 * mm, f"{second} s")
    if ecg.n_leads > len({p[0] for p in panels}):
        shown = len({p[0] for p in panels})
        canvas.drawString(x, y - 6 * mm, _text(f"{shown} of {ecg.n_leads} leads shown"))
    _legend(canvas, segments, gain, x=legend_x, top=y + h, window=window, leads=ecg.leads)


def _window_samples(ecg: Ecg, window: tuple[float, float]) -> np.ndarray:
    a, b = int(round(window[0] * ecg.fs)), int(round(window[1] * ecg.fs))
    return ecg.signal[:, a : max(b, a + 1)]


def _segment_row(ecg: Ecg, lead: str) -> int | None:
    try:
        return ecg.lead_index(lead)
    except KeyError:
        return None


def _legend(
    canvas: Canvas,
    segments: Sequence[Mapping[str, Any]],
    gain: float,
    *,
    x: float,
    top: float,
    window: tuple[float, float],
    leads: Sequence[str] = (),
) -> None:
    canvas.setFillColor(black)
    canvas.setFont("Helvetica-Bold", 7.5)
    canvas.drawString(x, top - 3 * mm, "Paper")
    canvas.setFont("Helvetica", 7)
    canvas.drawString(x, top - 7 * mm, f"{PAPER_SPEED_MM_S:g} mm/s, {gain:g} mm/mV")
    canvas.drawString(x, top - 10.5 * mm, f"{window[0]:.1f} - {window[1]:.1f} s of the record")
    # A 1-mV calibration pulse, 0.2 s wide.
    base = top - 13.5 * mm - gain * mm
    canvas.setStrokeColor(black)
    canvas.setLineWidth(0.8)
    pulse = [
        (x, base),
        (x + 2 * mm, base),
        (x + 2 * mm, base + gain * mm),
        (x + 7 * mm, base + gain * mm),
        (x + 7 * mm, base),
        (x + 9 * mm, base),
    ]
    canvas.lines([(*a, *b) for a, b in zip(pulse[:-1], pulse[1:])])
    canvas.drawString(x + 10 * mm, base + gain * mm / 2 - 1 * mm, "1 mV")

    canvas.setFont("Helvetica-Bold", 7.5)
    canvas.drawString(x, top - 31 * mm, "Critical segments")
    canvas.setFont("Helvetica", 6.5)
    kinds = sorted({str(s.get("distortion")) for s in segments})
    yy = top - 35 * mm
    if not kinds:
        canvas.drawString(x, yy, "none found")
        yy -= 3.6 * mm
    for kind in kinds:
        canvas.setFillColor(distortion_colour(kind), alpha=0.6)
        canvas.rect(x, yy - 0.5 * mm, 4 * mm, 2.6 * mm, stroke=0, fill=1)
        canvas.setFillColor(black, alpha=1)
        canvas.drawString(x + 5 * mm, yy, _text(kind.replace("_", " ")))
        yy -= 3.6 * mm
    yy -= 1 * mm
    for line in simpleSplit("Shaded where the decision rests; darker = higher score.", "Helvetica", 6.5, 26 * mm):
        canvas.drawString(x, yy, line)
        yy -= 3 * mm
    yy -= 1.5 * mm
    for i, seg in enumerate(segments[:6], start=1):
        canvas.drawString(
            x,
            yy,
            _text(
                f"{i}. {shown_lead(str(seg.get('lead')), leads)} {float(seg['start_s']):.2f}-"
                f"{float(seg['end_s']):.2f} s  {float(seg.get('score', 0)):.2f}"
            ),
        )
        yy -= 3 * mm
    if len(segments) > 6:
        canvas.drawString(x, yy, f"... {len(segments) - 6} more")


# --- diagnosis, curves, score ----------------------------------------------------------------------------
def _panel_title(canvas: Canvas, title: str, x: float, top: float) -> None:
    canvas.setFillColor(black)
    canvas.setFont("Helvetica-Bold", 9)
    canvas.drawString(x, top - 4 * mm, _text(title))


def _diagnosis_panel(canvas: Canvas, explanation: Mapping[str, Any], *, x: float, y: float, w: float, h: float) -> None:
    diagnosis = explanation["diagnosis"]
    label = str(diagnosis.get("label", ""))
    top = y + h
    _panel_title(canvas, "Diagnosis (classifier)", x, top)
    _fit(canvas, _text(label), "Helvetica-Bold", 14, w)
    canvas.drawString(x, top - 11 * mm, _text(label))
    findings = [str(f) for f in diagnosis.get("findings") or [] if str(f) != label]
    if findings:
        also = _text("also reported: " + ", ".join(findings))
        _fit(canvas, also, "Helvetica", 7, w)
        canvas.drawString(x, top - 15 * mm, also)
    probabilities = sorted(
        ((str(k), float(v)) for k, v in (diagnosis.get("probabilities") or {}).items()), key=lambda kv: -kv[1]
    )
    rows = probabilities[:8]
    # The name column is as wide as the longest name at 7 pt (up to half the panel; longer names shrink).
    name_w = min(w / 2, max([canvas.stringWidth(_text(n), "Helvetica", 7) for n, _ in rows] + [20 * mm]) + 2 * mm)
    bar_x, bar_w = x + name_w, w - name_w - 14 * mm
    yy = top - 20 * mm
    for name, p in rows:
        canvas.setFillColor(black)
        _fit(canvas, _text(name), "Helvetica", 7, name_w - 1.5 * mm)
        canvas.drawString(x, yy, _text(name))
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(HexColor("#dddddd"))
        canvas.rect(bar_x, yy - 0.4 * mm, bar_w, 2.8 * mm, stroke=0, fill=1)
        canvas.setFillColor(HexColor("#0072B2") if name == label else HexColor("#7f7f7f"))
        canvas.rect(bar_x, yy - 0.4 * mm, bar_w * min(max(p, 0.0), 1.0), 2.8 * mm, stroke=0, fill=1)
        canvas.setFillColor(black)
        canvas.drawRightString(x + w, yy, f"{p:.3f}")
        yy -= 3.8 * mm
    if len(probabilities) > len(rows):
        canvas.drawString(x, yy, f"... {len(probabilities) - len(rows)} more classes")


def _curves_panel(
    canvas: Canvas, robustness: Mapping[str, Any] | None, *, x: float, y: float, w: float, h: float
) -> None:
    top = y + h
    _panel_title(canvas, "Robustness curves", x, top)
    if robustness is None or not robustness.get("distortions"):
        canvas.setFont("Helvetica", 7.5)
        canvas.drawString(x, top - 10 * mm, "No robustness report for this analysis.")
        return
    items = list(robustness["distortions"])
    levels = sorted({float(k) for d in items for k in (d.get("probability_at_snr") or {})}, reverse=True)
    chart_w, chart_h = 62 * mm, h - 8 * mm
    drawing = Drawing(chart_w, chart_h)
    plot = LinePlot()
    plot.x, plot.y = 9 * mm, 8 * mm
    plot.width, plot.height = chart_w - 11 * mm, chart_h - 10 * mm
    # LinePlot's x axis grows to the right; the curves run from little noise (high SNR) to much, so x = -SNR.
    plot.data = [
        sorted((-float(k), float(v)) for k, v in (d.get("probability_at_snr") or {}).items()) or [(0, 0)] for d in items
    ]
    plot.xValueAxis.valueMin = -max(levels) if levels else -24
    plot.xValueAxis.valueMax = -min(levels) if levels else 6
    plot.xValueAxis.valueSteps = [-v for v in levels] if levels else None
    plot.xValueAxis.labelTextFormat = lambda v: f"{-v:g}"
    plot.xValueAxis.labels.fontSize = 6
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax, plot.yValueAxis.valueStep = 0.0, 1.0, 0.25
    plot.yValueAxis.labels.fontSize = 6
    plot.yValueAxis.visibleGrid = True
    plot.yValueAxis.gridStrokeColor = HexColor("#e6e6e6")
    for i, item in enumerate(items):
        line = plot.lines[i]
        line.strokeColor = distortion_colour(str(item.get("distortion")))
        line.strokeWidth = 1.1
        line.symbol = makeMarker(
            _MARKERS[i % len(_MARKERS)], size=3.2, fillColor=distortion_colour(str(item.get("distortion")))
        )
        dash = _DASHES[i % len(_DASHES)]
        if dash:
            line.strokeDashArray = dash
    drawing.add(plot)
    renderPDF.draw(drawing, canvas, x, y)
    canvas.setFont("Helvetica", 6)
    canvas.setFillColor(black)
    canvas.drawCentredString(x + 9 * mm + plot.width / 2, y + 1 * mm, "SNR of added noise (dB); more noise ->")
    canvas.saveState()
    canvas.translate(x + 2 * mm, y + 8 * mm + plot.height / 2)
    canvas.rotate(90)
    _fit(canvas, _text(f"p({robustness.get('label', '')})"), "Helvetica", 6, plot.height)
    canvas.drawCentredString(0, 0, _text(f"p({robustness.get('label', '')})"))
    canvas.restoreState()

    lx, yy = x + chart_w + 2 * mm, top - 10 * mm
    canvas.setFont("Helvetica", 6.5)
    for i, item in enumerate(items):
        kind = str(item.get("distortion"))
        colour = distortion_colour(kind)
        canvas.setStrokeColor(colour)
        canvas.setLineWidth(1.1)
        dash = _DASHES[i % len(_DASHES)]
        canvas.setDash(list(dash) if dash else [])
        canvas.line(lx, yy + 0.9 * mm, lx + 5 * mm, yy + 0.9 * mm)
        canvas.setDash([])
        canvas.setFillColor(black)
        _fit(canvas, _text(kind.replace("_", " ")), "Helvetica", 6.5, w - chart_w - 9 * mm)
        canvas.drawString(lx + 6 * mm, yy, _text(kind.replace("_", " ")))
        short, _ = flip_text(item.get("flip_snr_db"), levels)
        canvas.setFillColor(HexColor("#444444"))
        canvas.setFont("Helvetica", 6.5)
        canvas.drawString(
            lx + 6 * mm,
            yy - 2.7 * mm,
            _text(
                "holds at every level"
                if short == "holds"
                else f"flips {'below' if short[0] == '<' else 'above'} {short[2:]}"
                if short[0] in "<>"
                else f"flips at {short}"
            ),
        )
        yy -= 6.6 * mm


def _score_panel(
    canvas: Canvas,
    robustness: Mapping[str, Any] | None,
    explanation: Mapping[str, Any],
    account: Mapping[str, Any],
    *,
    x: float,
    y: float,
    w: float,
    h: float,
) -> None:
    top = y + h
    _panel_title(canvas, "Robustness score", x, top)
    if robustness is None:
        canvas.setFont("Helvetica", 7.5)
        canvas.drawString(x, top - 10 * mm, "not computed")
        return
    score = float(robustness.get("score", 0.0))
    canvas.setFont("Helvetica-Bold", 22)
    canvas.drawString(x, top - 13 * mm, f"{score:.2f}")
    canvas.setFont("Helvetica", 7)
    canvas.drawString(x + 20 * mm, top - 10 * mm, "0 = fragile, 1 = robust")
    label = _text(f'for "{robustness.get("label", "")}"')
    _fit(canvas, label, "Helvetica", 7, w - 20 * mm)
    canvas.drawString(x + 20 * mm, top - 13 * mm, label)
    extra = robustness.get("extra") if isinstance(robustness.get("extra"), Mapping) else {}
    meaning = str(
        extra.get("score_definition")
        or "Share of noisy versions of this ECG on which the classifier kept its diagnosis; 1 = it always held."
    )
    meaning += (
        (
            " Stress-test levels: "
            + ", ".join(f"{float(v):g}" for v in robustness.get("snr_levels_db") or [])
            + " dB SNR."
        )
        if robustness.get("snr_levels_db")
        else ""
    )
    yy = top - 18 * mm
    canvas.setFont("Helvetica", 6.5)
    for line in simpleSplit(_text(meaning), "Helvetica", 6.5, w):
        canvas.drawString(x, yy, line)
        yy -= 2.8 * mm
    yy -= 1.0 * mm
    # The whole-window score is not the targeted flip: say so, in the account's words.
    local = account.get("local_flip") or {}
    if local.get("flipped") and local.get("snr_db") is not None:
        text = (
            f"Not the same test as the targeted flip at {float(local['snr_db']):.1f} dB SNR (see the account "
            f"above): this score is for random noise over the whole window."
        )
    else:
        text = "The targeted search found no flip within its query budget."
    for line in simpleSplit(_text(text), "Helvetica", 6.5, w):
        if yy < y:
            break
        canvas.drawString(x, yy, line)
        yy -= 2.8 * mm
