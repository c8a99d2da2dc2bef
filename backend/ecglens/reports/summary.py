"""The plain-language account of one analysis: one text, rendered by the page, the PDF report and the FHIR
Observation alike, so that they can never say different things.

It makes five statements, each with its numbers and what they mean:

1. diagnosis: the finding the explanation is about, and every other finding above its threshold;
2. basis: where the decision rests (the most critical segments: lead as the record names it, time, and what
   part of which beat the segment covers, from neurokit2's delineation of the explained window);
3. local flip: the *targeted* test. The search adds the weakest realistic noise it can find, placed where the
   classifier is most sensitive, that changes the answer. Its SNR compares the ECG's energy over the whole
   window with the noise's; when it is 0 dB or less the noise is as strong as the ECG itself, and the diagnosis
   is robust to realistic noise there;
4. robustness: the *untargeted* test. Random realistic noise over the whole window, at the stress-test levels
   (24 to -6 dB SNR): the share of noisy versions on which the diagnosis held, and per noise type the SNR at
   which it flips. A flip found below the lowest tested level is reported as "below -6 dB";
5. what it is not: a classifier's answer and its explanation, not a clinician's diagnosis.

The two tests answer different questions, so a diagnosis can flip under targeted noise and still hold under
every whole-window level tested: statement 4 says so when it happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ecglens.ecg import LEAD_STAND_INS
from ecglens.reports.basics import Beat, delineate, measuring_lead

MINUS = "\u2212"
# A flip needing this much noise or more (SNR at or below it) is one realistic recordings do not reach.
REALISTIC_SNR_DB = 0.0
MAX_BASIS_SEGMENTS = 3
NOT_A_DIAGNOSIS = (
    "This is what a classifier answered and why; it is not a diagnosis by a clinician. Read the ECG yourself."
)
_DISTORTION_WORDS = {
    "baseline_wander": "baseline wander",
    "powerline": "powerline interference",
    "muscle": "muscle artifact",
    "electrode_motion": "electrode motion",
    "gaussian": "Gaussian noise",
    "dropout": "signal dropout",
    "none": "no distortion type",
}


def db(value: float) -> str:
    """``-6.0`` -> ``"−6.0 dB"`` (a true minus sign)."""
    text = f"{float(value):.1f}"
    return (MINUS + text[1:] if text.startswith("-") else text) + " dB"


def db_level(value: float) -> str:
    """A stress-test level: ``-6.0`` -> ``"−6 dB"``."""
    text = f"{float(value):g}"
    return (MINUS + text[1:] if text.startswith("-") else text) + " dB"


def distortion_words(kind: str) -> str:
    return _DISTORTION_WORDS.get(str(kind), str(kind).replace("_", " "))


def shown_lead(lead: str, record_leads: Sequence[str] | None) -> str:
    """The record's name for a lead the model names (the model's MLII is the record's II), as the page shows it."""
    if not record_leads or lead in record_leads:
        return lead
    for alt in LEAD_STAND_INS.get(lead, ()):
        if alt in record_leads:
            return alt
    return lead


def flip_text(flip_snr_db: float | None, levels: Sequence[float]) -> tuple[str, str]:
    """A robustness row's verdict, ``(short, long)``: within the tested levels the flip SNR; beyond them only
    which side it lies on (``"< −6 dB"``), as the curves stop at the tested levels."""
    lowest = min(levels) if levels else -6.0
    highest = max(levels) if levels else 24.0
    if flip_snr_db is None:
        return "holds", f"holds at every level tested (down to {db_level(lowest)}) for most random draws"
    flip = float(flip_snr_db)
    if flip < lowest:
        return f"< {db_level(lowest)}", (
            f"flips, for most random draws, only below the strongest level tested ({db_level(lowest)})"
        )
    if flip > highest:
        return f"> {db_level(highest)}", (
            f"flips, for most random draws, already above the mildest level tested ({db_level(highest)})"
        )
    return db(flip), f"flips at {db(flip)} (median over the random draws)"


def beats_of(ecg: Any, start_s: float, window_s: float) -> list[Beat]:
    """Delineated beats of ``[start_s, start_s + window_s]`` of an `Ecg`, on its measuring lead."""
    row = measuring_lead(ecg.leads)
    a = max(0, int(round(start_s * ecg.fs)))
    b = min(ecg.n_samples, int(round((start_s + window_s) * ecg.fs)))
    return delineate(np.asarray(ecg.signal[row, a:b], dtype=np.float64), ecg.fs, offset_s=a / ecg.fs)


def covered(beats: Sequence[Beat], start_s: float, end_s: float) -> str | None:
    """What part of which beat ``[start_s, end_s]`` covers: a QRS complex (with its beat's character), else a
    T or P wave, else the baseline between two beats; None without beats."""
    if not beats:
        return None

    def overlaps(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and a < end_s and b > start_s

    def beat_words(beat: Beat) -> str:
        traits = [w for w, on in (("premature", beat.premature), ("wide-QRS", beat.wide)) if on]
        return f"{'a ' + ', '.join(traits) + ' beat' if traits else 'the beat'} at {beat.r_s:.1f} s"

    qrs = [
        b
        for b in beats
        if overlaps(
            b.qrs_on_s if b.qrs_on_s is not None else b.r_s - 0.05,
            b.qrs_off_s if b.qrs_off_s is not None else b.r_s + 0.05,
        )
    ]
    if qrs:
        if len(qrs) == 1:
            return f"the QRS complex of {beat_words(qrs[0])}"
        odd = [b for b in qrs if b.premature or b.wide]
        return f"the QRS complexes of {len(qrs)} beats" + (f", among them {beat_words(odd[0])}" if odd else "")
    for b in beats:
        if overlaps(b.qrs_off_s, b.t_off_s):
            return f"the T wave of {beat_words(b)}"
        if overlaps(b.p_on_s, b.p_off_s):
            return f"the P wave before {beat_words(b)}"
    before = [b for b in beats if b.r_s <= start_s]
    after = [b for b in beats if b.r_s >= end_s]
    if before and after:
        return f"the baseline between the beats at {before[-1].r_s:.1f} and {after[0].r_s:.1f} s"
    return None


def _findings(diagnosis: Mapping[str, Any], thresholds: Mapping[str, float]) -> list[dict[str, Any]]:
    probabilities = {str(k): float(v) for k, v in (diagnosis.get("probabilities") or {}).items()}
    label = str(diagnosis.get("label", ""))
    names = [str(f) for f in diagnosis.get("findings") or []] or [label]
    if label in names:
        names.remove(label)
    names.insert(0, label)
    return [{"label": n, "probability": probabilities.get(n), "threshold": thresholds.get(n)} for n in names]


def _probability(item: Mapping[str, Any]) -> str:
    p, thr = item.get("probability"), item.get("threshold")
    if p is None:
        return ""
    return f"probability {p:.2f}" + (f"; reported from {thr:.2f}" if thr is not None else "")


def _thresholds(result: Mapping[str, Any], given: Mapping[str, float] | None) -> dict[str, float]:
    out = {str(k): float(v) for k, v in (given or {}).items()}
    robustness = result.get("robustness") if isinstance(result.get("robustness"), Mapping) else {}
    extra = robustness.get("extra") or {}
    if "threshold" in extra and robustness.get("label") is not None and extra["threshold"] is not None:
        out.setdefault(str(robustness["label"]), float(extra["threshold"]))
    rule = str(extra.get("flip_rule") or "")
    label = str(robustness.get("label") or "")
    prefix = f"probability of {label} below "
    if label and rule.startswith(prefix):
        try:
            out.setdefault(label, float(rule[len(prefix) :].split()[0]))
        except ValueError:
            pass
    return out


def _multilabel(result: Mapping[str, Any]) -> bool:
    robustness = result.get("robustness") if isinstance(result.get("robustness"), Mapping) else {}
    rule = str((robustness.get("extra") or {}).get("flip_rule") or "")
    if rule:
        return rule.startswith("probability of")
    dx = (result.get("explanation") or {}).get("diagnosis") or {}
    return len(dx.get("findings") or []) != 1


def summarize(
    result: Mapping[str, Any],
    *,
    ecg: Any = None,
    record_leads: Sequence[str] | None = None,
    beats: Sequence[Beat] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The account of one finished analysis.

    Parameters
    ----------
    result : mapping
        ``{"explanation": Explanation.to_dict(), "robustness": RobustnessReport.to_dict() or None}``.
    ecg : Ecg, optional
        The analysed record: its lead names and the beats of the explained window (delineated here).
    record_leads : sequence of str, optional
        The record's lead names when ``ecg`` is not given. Default: the model's names are kept.
    beats : sequence of Beat, optional
        Delineated beats of the explained window, when already known (else from ``ecg``).
    thresholds : mapping, optional
        The model card's operating thresholds per class. Default: what the robustness report names.

    Returns
    -------
    dict with ``headline``, ``text`` (the statements' texts joined), ``statements`` (``[{"key", "title",
    "text"}]``: diagnosis, basis, local_flip, robustness, caveat), and the numbers behind them: ``findings``,
    ``basis`` (the critical segments shown), ``local_flip`` and ``robustness``.
    """
    explanation = result.get("explanation") if isinstance(result, Mapping) else None
    if not isinstance(explanation, Mapping) or not isinstance(explanation.get("diagnosis"), Mapping):
        raise ValueError("the analysis has no explanation with a diagnosis (is it finished?)")
    robustness = result.get("robustness") if isinstance(result.get("robustness"), Mapping) else None
    leads = list(ecg.leads) if ecg is not None else (list(record_leads) if record_leads else None)
    start = float(explanation.get("start_s") or 0.0)
    window_s = float(((robustness or {}).get("extra") or {}).get("window_s") or 10.0)
    if beats is None and ecg is not None:
        beats = beats_of(ecg, start, window_s)
    thresholds = _thresholds(result, thresholds)
    findings = _findings(explanation["diagnosis"], thresholds)
    label = findings[0]["label"]
    statements = [_diagnosis_statement(findings, _multilabel(result))]
    basis = _basis(explanation.get("segments") or [], leads, beats or [])
    statements.append(_basis_statement(basis, label))
    local = _local_flip(explanation, findings, leads, _multilabel(result))
    statements.append(
        {"key": "local_flip", "title": "Targeted test (the smallest change found)", "text": local.pop("text")}
    )
    whole = _robustness(robustness, local)
    statements.append(
        {
            "key": "robustness",
            "title": "Untargeted test (random noise over the whole window)",
            "text": whole.pop("text"),
        }
    )
    statements.append({"key": "caveat", "title": "What this is", "text": NOT_A_DIAGNOSIS})
    others = [f["label"] for f in findings[1:]]
    headline = label + (f" (also reported: {', '.join(others)})" if others else "")
    return {
        "headline": headline,
        "label": label,
        "text": " ".join(
            s["text"] if s["key"] in ("diagnosis", "basis", "caveat") else f"{s['title']}: {s['text']}"
            for s in statements
        ),
        "statements": statements,
        "findings": findings,
        "basis": basis,
        "local_flip": local,
        "robustness": whole,
        "window": {"start_s": start, "end_s": round(start + window_s, 4)},
    }


def _diagnosis_statement(findings: list[dict[str, Any]], multilabel: bool) -> dict[str, Any]:
    main = findings[0]
    prob = _probability(main)
    text = f"The classifier's finding is {main['label']}" + (f" ({prob})" if prob else "") + "."
    if len(findings) > 1:
        others = "; ".join(f"{f['label']}" + (f" ({_probability(f)})" if _probability(f) else "") for f in findings[1:])
        text += f" Also above its threshold: {others}. The explanation below is about {main['label']}."
    elif multilabel:
        text += " No other finding is above its threshold."
    return {"key": "diagnosis", "title": "Diagnosis", "text": text}


def _basis(
    segments: Sequence[Mapping[str, Any]], leads: list[str] | None, beats: Sequence[Beat]
) -> list[dict[str, Any]]:
    out = []
    for seg in segments:
        a, b = float(seg["start_s"]), float(seg["end_s"])
        out.append(
            {
                "lead": shown_lead(str(seg.get("lead")), leads),
                "model_lead": str(seg.get("lead")),
                "start_s": a,
                "end_s": b,
                "score": float(seg.get("score", 0.0)),
                "distortion": str(seg.get("distortion")),
                "covers": covered(beats, a, b),
            }
        )
    return out


def _basis_statement(basis: list[dict[str, Any]], label: str) -> dict[str, Any]:
    if not basis:
        return {
            "key": "basis",
            "title": "Where the decision rests",
            "text": f"No part of the ECG was found on which {label} rests more than on the rest.",
        }
    parts = []
    for seg in basis[:MAX_BASIS_SEGMENTS]:
        span = seg["end_s"] - seg["start_s"]
        where = f"{span:.2f} s of lead {seg['lead']} at {seg['start_s']:.2f}{MINUS}{seg['end_s']:.2f} s"
        parts.append(where + (f", {seg['covers']}" if seg["covers"] else ""))
    more = len(basis) - MAX_BASIS_SEGMENTS
    text = (
        f"The decision rests most on {parts[0]}"
        + "".join(f"; then on {p}" for p in parts[1:])
        + (f"; and {more} less critical segment{'s' if more > 1 else ''}" if more > 0 else "")
        + "."
    )
    return {"key": "basis", "title": "Where the decision rests", "text": text}


def _local_flip(
    explanation: Mapping[str, Any], findings: list[dict[str, Any]], leads: list[str] | None, multilabel: bool
) -> dict[str, Any]:
    label = findings[0]["label"]
    adv = explanation.get("adversarial")
    if not isinstance(adv, Mapping) or not adv.get("flipped"):
        return {
            "flipped": False,
            "snr_db": None,
            "robust_to_realistic_noise": True,
            "spans": [],
            "text": f"No noise the search tried within its query budget ({int(explanation.get('queries', 0))} "
            f"classifier queries) changed {label}.",
        }
    snr = adv.get("snr_db")
    after = str(adv.get("label") or "")
    spans = [{**s, "lead": shown_lead(str(s.get("lead")), leads)} for s in adv.get("spans") or []]
    others = [f["label"] for f in findings[1:]]
    if multilabel:
        change = f"{label} is no longer reported"
        if after and after != label and after != "no finding":
            change += (
                f"; {after}, already reported, remains" if after in others else f" and {after} is reported instead"
            )
        elif after == "no finding":
            change += " and no finding remains above its threshold"
    else:
        change = f"the most probable class becomes {after}"
    where = ""
    if spans:
        shown_leads = sorted(
            {s["lead"] for s in spans}, key=lambda x: (leads or []).index(x) if leads and x in leads else 99
        )
        first, last = min(s["start_s"] for s in spans), max(s["end_s"] for s in spans)
        total = float(adv.get("distorted_s") or sum(s["end_s"] - s["start_s"] for s in spans))
        where = (
            f" on {len(spans)} stretch{'es' if len(spans) > 1 else ''} of lead{'s' if len(shown_leads) > 1 else ''} "
            f"{', '.join(shown_leads)} ({total:.2f} s in all, between {first:.2f} and {last:.2f} s)"
        )
    text = f"With noise added{where}, {change}."
    robust = snr is not None and float(snr) <= REALISTIC_SNR_DB
    if snr is not None:
        text += f" The noise's energy against the ECG's over the whole window is {db(snr)} SNR"
        span_snr = adv.get("span_snr_db")
        if span_snr is not None:
            text += f" ({db(span_snr)} inside the noisy stretches)"
        if robust:
            text += (
                ": the noise has to be as strong as the ECG itself, far beyond realistic recording noise, so "
                f"{label} is robust to realistic noise there."
            )
        else:
            text += (
                ": noise this weak can occur in real recordings, so this reading of the classifier is fragile there."
            )
    return {
        "flipped": True,
        "snr_db": snr,
        "span_snr_db": adv.get("span_snr_db"),
        "label_after": after,
        "robust_to_realistic_noise": robust,
        "spans": spans,
        "text": text,
    }


def _robustness(robustness: Mapping[str, Any] | None, local: Mapping[str, Any]) -> dict[str, Any]:
    if robustness is None:
        return {"score": None, "rows": [], "text": "The whole-window noise test was not run for this analysis."}
    levels = [float(v) for v in robustness.get("snr_levels_db") or []]
    score = float(robustness.get("score", 0.0))
    extra = robustness.get("extra") or {}
    window_s = float(extra.get("window_s") or 10.0)
    rows = []
    for item in robustness.get("distortions") or []:
        flip = item.get("flip_snr_db")
        short, long = flip_text(flip, levels)
        rows.append(
            {
                "distortion": str(item.get("distortion")),
                "name": distortion_words(item.get("distortion")),
                "flip_snr_db": flip,
                "in_tested_range": flip is None or (min(levels) <= float(flip) <= max(levels) if levels else True),
                "short": short,
                "text": long,
            }
        )
    seeds = int(extra.get("seeds") or 0)
    trials = len(rows) * len(levels) * seeds if seeds else None
    span = f"{db_level(max(levels))} to {db_level(min(levels))}" if levels else "the stress-test levels"
    text = (
        f"With random realistic noise over the whole {window_s:g}-s window ({len(rows)} noise "
        f"types, SNR {span}{f', {trials} noisy versions' if trials else ''}), the diagnosis held in "
        f"{100 * score:.0f}% of them (robustness score {score:.2f}, 1 = always held)."
    )
    flipping = [r for r in rows if r["flip_snr_db"] is not None]
    if not flipping:
        text += (
            " It held at every level tested for every noise type"
            if score >= 1.0
            else " For every noise type, most random draws held at every level tested"
        )
        text += (
            " — although the targeted noise above changes it: noise aimed at the critical segments finds "
            "what random noise over the whole window does not."
            if local.get("flipped")
            else "."
        )
    else:
        worst = max(flipping, key=lambda r: float(r["flip_snr_db"]))
        text += f" The most harmful noise type is {worst['name']}: the diagnosis {worst['text']}."
        if worst["in_tested_range"] and float(worst["flip_snr_db"]) > REALISTIC_SNR_DB:
            text += " That is noise weaker than the ECG, as real recordings can carry."
    mildest = _mildest_flipping_level(robustness)
    if score < 1.0 and mildest is not None:
        text += f" The first noisy versions that changed it are at {db_level(mildest)}" + (
            " (noise at least as strong as the ECG)." if mildest <= REALISTIC_SNR_DB else "."
        )
    return {"score": score, "levels_db": levels, "rows": rows, "text": text}


def _mildest_flipping_level(robustness: Mapping[str, Any]) -> float | None:
    """The highest SNR level at which any noisy version flipped, or None."""
    levels = [
        float(k)
        for item in robustness.get("distortions") or []
        for k, rate in (item.get("flip_rate_at_snr") or {}).items()
        if float(rate) > 0
    ]
    return max(levels) if levels else None


def analysis_summary(result: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The stored account of an analysis (``result["summary"]``), else one built from the result alone."""
    stored = result.get("summary") if isinstance(result, Mapping) else None
    if isinstance(stored, Mapping) and stored.get("statements"):
        return dict(stored)
    return summarize(result, **kwargs)
