"""An analysis as a FHIR R4 ``Observation``: what the classifier said, how robust it was, and why.

``analysis_observation(result, ...)`` turns a finished analysis (``{"explanation": Explanation.to_dict(),
"robustness": RobustnessReport.to_dict()}``) into one Observation:

- ``valueCodeableConcept``: the diagnosis (the finding the explanation is about); ``interpretation``: every
  finding at or above its threshold, with its probability in the text;
- ``component``: one ``class-probability`` per class (``valueQuantity``, UCUM ``1``), the ``robustness-score``,
  one ``flip-snr`` per distortion (dB; ``dataAbsentReason`` when the diagnosis held at every level), the
  ``adversarial-snr`` of the minimal flipping distortion, and one ``critical-segment`` per segment (the lead
  coded as in `ecglens.formats.fhir`, ``valueRange`` from start to end in s, score and distortion as
  extensions);
- ``device``: the classifier by name and model-card version; ``method``: the explainer used;
- ``identifier``: the analysis id and the SHA-256 of every record file the analysis read;
- ``subject``: the patient, by the identifier the record's header carries (left out when it has none);
- ``text`` (narrative) and ``note``: the plain-language account of the result (`ecglens.reports.summary`),
  the same statements the page and the PDF report show.

Our own codes live under ``urn:ecglens:fhir:*`` systems (the class names are the model card's, not a standard
terminology); leads use MDC and LOINC as the FHIR ECG example does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ecglens.formats.fhir import LOINC_SYSTEM, OBSERVATION_CATEGORY_SYSTEM, UCUM_SYSTEM, lead_code
from ecglens.reports.summary import analysis_summary

SYSTEM = "urn:ecglens:fhir"
CLASS_SYSTEM = f"{SYSTEM}:class"  # codes: the model card's class names
COMPONENT_SYSTEM = f"{SYSTEM}:component"  # codes: what a component holds (below)
DISTORTION_SYSTEM = f"{SYSTEM}:distortion"  # codes: ecglens.distortions.KINDS
METHOD_SYSTEM = f"{SYSTEM}:method"  # codes: "anytime", "agent", baseline names
ANALYSIS_ID_SYSTEM = f"{SYSTEM}:analysis"
RECORD_SHA256_SYSTEM = f"{SYSTEM}:record-sha256"
PATIENT_ID_SYSTEM = f"{SYSTEM}:patient-id"  # the identifier as the record's header gives it
MODEL_SYSTEM = f"{SYSTEM}:model"
SEGMENT_SCORE_URL = f"{SYSTEM}:extension:segment-score"
SEGMENT_DISTORTION_URL = f"{SYSTEM}:extension:segment-distortion"
MODEL_VERSION_URL = f"{SYSTEM}:extension:model-version"
DATA_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
EKG_STUDY = {"system": LOINC_SYSTEM, "code": "11524-6", "display": "EKG study"}

COMPONENT_CODES = {
    "class-probability": "Probability of a class",
    "robustness-score": "Robustness score",
    "flip-snr": "SNR at which the diagnosis flips",
    "adversarial-snr": "SNR of the minimal flipping distortion",
    "critical-segment": "Critical segment",
}


def analysis_observation(
    result: Mapping[str, Any],
    *,
    analysis_id: str,
    model_name: str,
    model_version: str | None,
    record_files: Sequence[Mapping[str, Any]],
    issued: str | None = None,
    status: str = "final",
    summary: Mapping[str, Any] | None = None,
    patient_id: str | None = None,
    record_leads: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The FHIR R4 Observation (a JSON-ready dict) for one finished analysis.

    Parameters
    ----------
    result : mapping
        ``{"explanation": Explanation.to_dict(), "robustness": RobustnessReport.to_dict() or None}``.
    analysis_id : str
        Becomes ``id`` and an identifier.
    model_name, model_version : str
        The classifier's registered name and its model card's version (None when the card has none).
    record_files : sequence of mapping
        The record's files ``{"filename", "sha256", ...}`` (the upload's, first = the one read); each
        SHA-256 becomes an identifier.
    issued : str, optional
        When the analysis finished (ISO 8601 with time zone, e.g. ``2024-05-01T12:00:00.000000Z``); becomes
        ``issued`` and ``effectiveDateTime``. Default: None (left out).
    status : str
        Observation status. Default: "final".
    summary : mapping, optional
        The account of the result (`ecglens.reports.summary.summarize`). Default: the result's own
        (``result["summary"]``), else one built from the result.
    patient_id : str, optional
        The patient identifier of the record's header; becomes ``subject``. Default: None (no subject).
    record_leads : sequence of str, optional
        The record's lead names, so segments name leads as the record does. Default: the model's names.

    Returns
    -------
    dict with ``resourceType="Observation"``, ``status``, ``category``, ``code``, ``valueCodeableConcept``,
    ``interpretation``, ``component`` and the rest described in the module docstring.

    Raises
    ------
    ValueError
        When ``result`` has no explanation with a diagnosis (the analysis is not finished).
    """
    explanation = result.get("explanation") if isinstance(result, Mapping) else None
    if not isinstance(explanation, Mapping) or not isinstance(explanation.get("diagnosis"), Mapping):
        raise ValueError("the analysis has no explanation with a diagnosis (is it finished?)")
    robustness = result.get("robustness") if isinstance(result.get("robustness"), Mapping) else None
    diagnosis = explanation["diagnosis"]
    label = str(diagnosis.get("label", ""))
    probabilities = {str(k): float(v) for k, v in (diagnosis.get("probabilities") or {}).items()}
    findings = [str(f) for f in (diagnosis.get("findings") or [label])]

    identifiers = [{"system": ANALYSIS_ID_SYSTEM, "value": analysis_id}]
    for f in record_files:
        identifiers.append(
            {
                "system": RECORD_SHA256_SYSTEM,
                "value": str(f["sha256"]),
                "type": {"text": f"SHA-256 of record file {f.get('filename', '')}".strip()},
            }
        )
    version = str(model_version) if model_version not in (None, "") else None
    device: dict[str, Any] = {
        "identifier": {"system": MODEL_SYSTEM, "value": model_name},
        "display": f"classifier {model_name}" + (f" version {version}" if version else ""),
    }
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": analysis_id,
        "identifier": identifiers,
        "status": status,
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "procedure", "display": "Procedure"}]}
        ],
        "code": {
            "coding": [dict(EKG_STUDY)],
            "text": "ECG Lens analysis: classifier diagnosis, its explanation and its robustness to realistic noise",
        },
    }
    account = dict(summary) if summary else analysis_summary(result, record_leads=record_leads)
    obs["text"] = {"status": "generated", "div": _narrative(account)}
    if patient_id:
        obs["subject"] = {
            "identifier": {"system": PATIENT_ID_SYSTEM, "value": str(patient_id)},
            "display": f"patient {patient_id}",
        }
    if issued:
        obs["effectiveDateTime"] = issued
        obs["issued"] = issued
    obs["valueCodeableConcept"] = _class_concept(label)
    obs["interpretation"] = [{**_class_concept(f), "text": _probability_text(f, probabilities)} for f in findings]
    obs["note"] = [{"text": f"{st['title']}: {st['text']}"} for st in account.get("statements") or []]
    if robustness is not None:
        obs["note"].append({"text": _robustness_note(robustness)})
    method = str(explanation.get("method") or "")
    if method:
        # Not the fallback reason: it may name server paths, which have no place in a clinical record.
        obs["method"] = {"coding": [{"system": METHOD_SYSTEM, "code": method}], "text": f"explained by {method}"}
    obs["device"] = device
    if version:
        obs["extension"] = [{"url": MODEL_VERSION_URL, "valueString": version}]
    obs["component"] = _components(explanation, robustness, probabilities)
    return obs


def _class_concept(name: str) -> dict[str, Any]:
    return {"coding": [{"system": CLASS_SYSTEM, "code": name, "display": name}], "text": name}


def _probability_text(name: str, probabilities: Mapping[str, float]) -> str:
    p = probabilities.get(name)
    return name if p is None else f"{name} (probability {p:.3f})"


def _component_code(kind: str, *extra: Mapping[str, Any], text: str) -> dict[str, Any]:
    coding = [{"system": COMPONENT_SYSTEM, "code": kind, "display": COMPONENT_CODES[kind]}, *extra]
    return {"coding": [dict(c) for c in coding], "text": text}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(float(value), 6), "unit": unit, "system": UCUM_SYSTEM, "code": unit}


def _components(
    explanation: Mapping[str, Any], robustness: Mapping[str, Any] | None, probabilities: Mapping[str, float]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, p in probabilities.items():
        out.append(
            {
                "code": _component_code(
                    "class-probability", {"system": CLASS_SYSTEM, "code": name}, text=f"probability of {name}"
                ),
                "valueQuantity": _quantity(p, "1"),
            }
        )
    if robustness is not None:
        out.append(
            {
                "code": _component_code("robustness-score", text="robustness score (0 fragile - 1 robust)"),
                "valueQuantity": _quantity(float(robustness.get("score", 0.0)), "1"),
            }
        )
        for item in robustness.get("distortions") or []:
            kind = str(item.get("distortion"))
            component: dict[str, Any] = {
                "code": _component_code(
                    "flip-snr",
                    {"system": DISTORTION_SYSTEM, "code": kind},
                    text=f"SNR at which {kind} flips the diagnosis",
                )
            }
            flip = item.get("flip_snr_db")
            if flip is None:
                component["dataAbsentReason"] = {
                    "coding": [{"system": DATA_ABSENT_SYSTEM, "code": "not-applicable"}],
                    "text": "the diagnosis held at every SNR tested",
                }
            else:
                component["valueQuantity"] = _quantity(flip, "dB")
            out.append(component)
    adversarial = explanation.get("adversarial")
    if isinstance(adversarial, Mapping) and adversarial.get("flipped") and adversarial.get("snr_db") is not None:
        out.append(
            {
                "code": _component_code(
                    "adversarial-snr",
                    text=f"minimal flipping distortion (diagnosis becomes {adversarial.get('label')})",
                ),
                "valueQuantity": _quantity(adversarial["snr_db"], "dB"),
            }
        )
    for rank, seg in enumerate(explanation.get("segments") or [], start=1):
        lead = str(seg.get("lead"))
        lead_codings = lead_code(lead).get("coding", [])
        out.append(
            {
                "code": _component_code(
                    "critical-segment",
                    *lead_codings,
                    text=f"critical segment {rank}: lead {lead}, {float(seg['start_s']):.3f}-"
                    f"{float(seg['end_s']):.3f} s, score {float(seg['score']):.2f}, "
                    f"{seg.get('distortion')}",
                ),
                "valueRange": {"low": _quantity(seg["start_s"], "s"), "high": _quantity(seg["end_s"], "s")},
                "extension": [
                    {"url": SEGMENT_SCORE_URL, "valueDecimal": round(float(seg["score"]), 4)},
                    {"url": SEGMENT_DISTORTION_URL, "valueCode": str(seg.get("distortion"))},
                ],
            }
        )
    return out


def _robustness_note(robustness: Mapping[str, Any]) -> str:
    extra = robustness.get("extra") if isinstance(robustness.get("extra"), Mapping) else {}
    definition = extra.get("score_definition") or (
        "Share of noisy versions of this ECG on which the classifier kept its diagnosis; 1 = it always held."
    )
    return f"Robustness score {float(robustness.get('score', 0.0)):.2f}. {definition}"


def _narrative(account: Mapping[str, Any]) -> str:
    """The account as the XHTML narrative FHIR asks for (``Observation.text.div``)."""
    items = "".join(
        f"<p><b>{escape(str(st['title']))}.</b> {escape(str(st['text']))}</p>" for st in account.get("statements") or []
    )
    return (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{escape(str(account.get("headline", "")))}</b></p>'
        f"{items}</div>"
    )
