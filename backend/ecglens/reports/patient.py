"""The patient fields of a record's header, as a clinician reads them: age, sex, the header's diagnoses (SNOMED CT
codes named where the code is a common one) and a patient identifier when the header carries one.

The readers keep header fields in ``Ecg.metadata`` (``age``, ``sex``, ``dx``, ``header_fields``; see
`ecglens.formats._header.parse_comments`); the service stores them as the record's ``header``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SNOMED_SYSTEM = "http://snomed.info/sct"
# Names of the SNOMED CT codes most often found on CinC 2021 / PTB-XL headers (the challenge's scored classes
# and sinus rhythm). Codes not listed are shown as codes.
SNOMED_NAMES = {
    "164889003": "atrial fibrillation",
    "164890007": "atrial flutter",
    "6374002": "bundle branch block",
    "426627000": "bradycardia",
    "733534002": "complete left bundle branch block",
    "713427006": "complete right bundle branch block",
    "270492004": "first degree AV block",
    "713426002": "incomplete right bundle branch block",
    "39732003": "left axis deviation",
    "445118002": "left anterior fascicular block",
    "164909002": "left bundle branch block",
    "251146004": "low QRS voltages",
    "698252002": "nonspecific intraventricular conduction disorder",
    "10370003": "pacing rhythm",
    "284470004": "premature atrial contraction",
    "63593006": "supraventricular premature beats",
    "427172004": "premature ventricular contractions",
    "17338001": "ventricular premature beats",
    "164947007": "prolonged PR interval",
    "111975006": "prolonged QT interval",
    "164917005": "abnormal Q wave",
    "47665007": "right axis deviation",
    "59118001": "right bundle branch block",
    "427393009": "sinus arrhythmia",
    "426177001": "sinus bradycardia",
    "426783006": "sinus rhythm",
    "427084000": "sinus tachycardia",
    "164934002": "T wave abnormal",
    "59931005": "T wave inversion",
    "164884008": "ventricular ectopics",
}
# Header keys (folded: lower case, no spaces, dashes or underscores) that hold a patient identifier.
_ID_KEYS = ("patientid", "patient", "patientnumber", "mrn", "subjectid", "subject")


def _fold(key: str) -> str:
    return re.sub(r"[\s_\-.]", "", str(key)).lower()


def patient_id(header: Mapping[str, Any] | None) -> str | None:
    """The patient identifier in a header (``patient_id``, or a ``Patient ID:`` / ``MRN:`` comment), or None."""
    if not header:
        return None
    candidates: list[tuple[str, Any]] = [(k, v) for k, v in header.items() if k != "header_fields"]
    fields = header.get("header_fields")
    if isinstance(fields, Mapping):
        candidates += list(fields.items())
    for wanted in _ID_KEYS:
        for key, value in candidates:
            if _fold(key) == wanted and isinstance(value, (str, int)) and str(value).strip():
                text = str(value).strip()
                if text.lower() not in ("unknown", "none", "n/a", "na", "-", "?"):
                    return text[:64]
    return None


def diagnoses(header: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The header's diagnoses: ``[{"code", "display", "system"}]``; numeric codes are SNOMED CT (CinC headers),
    free-text statements keep their text as the display and have no system."""
    out = []
    for item in (header or {}).get("dx") or []:
        code = str(item).strip()
        if not code:
            continue
        if code.isdigit():
            out.append({"code": code, "display": SNOMED_NAMES.get(code), "system": SNOMED_SYSTEM})
        else:
            out.append({"code": code, "display": code, "system": None})
    return out


def patient_fields(header: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"id", "age", "sex", "diagnoses"}`` from a stored header (None / [] where the header says nothing)."""
    header = header or {}
    age = header.get("age")
    sex = header.get("sex")
    if age is None and sex in (None, ""):
        age, sex = _mitbih_age_sex(header.get("comments"))
    return {
        "id": patient_id(header),
        "age": age if isinstance(age, (int, float)) else None,
        "sex": str(sex) if sex not in (None, "") else None,
        "diagnoses": diagnoses(header),
    }


def _mitbih_age_sex(comments: Any) -> tuple[int | None, str | None]:
    """MIT-BIH headers start their comments with ``<age> <sex> ...`` (``# 51 F 1129 654 x2``)."""
    if not isinstance(comments, list) or not comments:
        return None, None
    match = re.match(r"\s*(\d{1,3})\s+([MF])\b", str(comments[0]))
    return (int(match.group(1)), match.group(2)) if match else (None, None)
