"""HL7 FHIR R4 ``Observation`` with ``valueSampledData`` waveforms (as in the FHIR ECG example ``ekg``).

One ``component`` per lead: its ``code`` names the lead, its ``valueSampledData`` holds the samples::

    {"resourceType": "Observation", "status": "final",
     "code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.24", "code": "131328",
                          "display": "MDC_ECG_ELEC_POTL"}]},
     "component": [{"code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.24", "code": "131329",
                                         "display": "MDC_ECG_ELEC_POTL_I"}]},
                    "valueSampledData": {"origin": {"value": 0, "unit": "uV", "system": "http://unitsofmeasure.org",
                                                    "code": "uV"},
                                         "period": 2, "factor": 1.0, "dimensions": 1,
                                         "data": "12 15 E 20 U ..."}}]}

``value = origin.value + factor * data`` in the units of ``origin`` (UCUM ``mV`` / ``uV``; none given: mV
assumed and listed in ``metadata["assumed_units"]``); ``period`` is the time between samples in ms, so
``fs = 1000 / period`` Hz. Data markers: ``E`` (error) is a missing sample, filled by linear interpolation like
every reader's missing samples; ``L`` / ``U`` (below / above the detection limit) take ``lowerLimit`` /
``upperLimit`` when given, else count as missing. ``dimensions`` > 1 interleaves that many channels.

Lead codes: IEEE 11073 MDC in the partition-2 context-free form, ``131328 + n`` (``MDC_ECG_ELEC_POTL_<lead>``,
131329 = lead I) or ``131072 + n`` (``MDC_ECG_LEAD_<lead>``) with ``n`` the MDC lead number DICOM uses
(`ecglens.formats.dicom`), the MDC reference ids (``MDC_ECG_LEAD_II``), the LOINC lead parts (``LP7386-8`` =
Lead I), else the coding's display or the code's text. Patient references are not copied into the metadata.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.ecg import STANDARD_12, Ecg, normalize_lead
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, build_ecg, check_fs, lead_label
from ecglens.formats._guard import guarded
from ecglens.formats._header import parse_date, parse_time
from ecglens.formats._source import basename, read_bytes, record_stem
from ecglens.formats.dicom import _MDC_LEADS
from ecglens.formats.json import parse_json

MDC_SYSTEM = "urn:oid:2.16.840.1.113883.6.24"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
MDC_ECG_ELEC_POTL = 131328  # partition 2 (2 << 16) + term 256: "ECG electrical potential"
_MDC_LEAD_BASE = 131072  # partition 2 + term 0: MDC_ECG_LEAD_<n> = 131072 + n

# LOINC parts for the 12 leads (LP7383-5 ... LP7394-2, the value set FHIR ECG profiles bind component.code to).
LOINC_LEADS = {
    "LP7386-8": "I",
    "LP7387-6": "II",
    "LP7388-4": "III",
    "LP7385-0": "aVR",
    "LP7384-3": "aVL",
    "LP7383-5": "aVF",
    "LP7389-2": "V1",
    "LP7390-0": "V2",
    "LP7391-8": "V3",
    "LP7392-6": "V4",
    "LP7393-4": "V5",
    "LP7394-2": "V6",
}
_LOINC_BY_LEAD = {lead: code for code, lead in LOINC_LEADS.items()}
_MDC_NUMBER_BY_LEAD = {lead: n for n, lead in _MDC_LEADS.items()}
_MARKERS = {"E", "L", "U"}
_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"')


def is_fhir(data: bytes) -> bool:
    """True for a JSON object whose first 64 KiB carry a ``"resourceType"`` key (any FHIR resource: the reader
    then says which one it got when it is not an Observation)."""
    head = data[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and _RESOURCE_TYPE.search(head) is not None


def lead_from_code(code: Any) -> str | None:
    """The canonical lead a FHIR ``CodeableConcept`` names, or None when none of its codings is a known lead.

    Parameters
    ----------
    code : mapping
        ``{"coding": [{"system", "code", "display"}...], "text": ...}``.
    """
    if not isinstance(code, Mapping):
        return None
    codings = code.get("coding") if isinstance(code.get("coding"), list) else []
    for coding in codings:
        if not isinstance(coding, Mapping):
            continue
        value = str(coding.get("code", "") or "").strip()
        system = str(coding.get("system", "") or "").strip()
        if value in LOINC_LEADS and system in ("", LOINC_SYSTEM):
            return LOINC_LEADS[value]
        lead = _lead_from_mdc(value)
        if lead is None and system != LOINC_SYSTEM:
            lead = _lead_from_mdc(str(coding.get("display", "") or ""))
        if lead is not None:
            return lead
    return None


def _lead_from_mdc(value: str) -> str | None:
    """``131329`` / ``131073`` / ``MDC_ECG_LEAD_I`` / ``MDC_ECG_ELEC_POTL_I`` -> ``"I"``; None otherwise."""
    value = value.strip()
    if value.isdigit():
        number = int(value)
        for base in (MDC_ECG_ELEC_POTL, _MDC_LEAD_BASE):
            if number - base in _MDC_LEADS:
                return _MDC_LEADS[number - base]
        return None
    match = re.fullmatch(r"MDC_ECG_(?:LEAD|ELEC_POTL)_(\w+)", value, flags=re.IGNORECASE)
    if match:
        name = normalize_lead(match.group(1))
        return name if name in STANDARD_12 or name in ("X", "Y", "Z") else None
    return None


def lead_code(lead: str) -> dict[str, Any]:
    """A FHIR ``CodeableConcept`` for ``lead``: the MDC electrical-potential code and, for the 12 standard
    leads, the LOINC lead part; ``text`` is always the lead name (so leads without a code, MLII, round-trip)."""
    name = normalize_lead(lead)
    codings: list[dict[str, str]] = []
    if name in _MDC_NUMBER_BY_LEAD:
        mdc = name.upper() if name in STANDARD_12 else name
        codings.append(
            {
                "system": MDC_SYSTEM,
                "code": str(MDC_ECG_ELEC_POTL + _MDC_NUMBER_BY_LEAD[name]),
                "display": f"MDC_ECG_ELEC_POTL_{mdc}",
            }
        )
    if name in _LOINC_BY_LEAD:
        codings.append({"system": LOINC_SYSTEM, "code": _LOINC_BY_LEAD[name], "display": f"Lead {name}"})
    out: dict[str, Any] = {"coding": codings} if codings else {}
    out["text"] = name
    return out


def _number(value: Any, what: str, display: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(display, f"{what} must be a number, got {value!r}"[:200])
    number = float(value)
    if not np.isfinite(number):
        raise RecordError(display, f"{what} is not finite")
    if positive and number <= 0:
        raise RecordError(display, f"{what} must be positive, got {value!r}")
    return number


@guarded("FHIR")
def read_fhir(source: Any, filename: str | None = None) -> Ecg:
    """Read a FHIR R4 ``Observation`` with ``valueSampledData`` into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The Observation as JSON.
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.

    Returns
    -------
    Ecg
        ``fs = 1000 / period`` Hz. ``metadata``: ``format="FHIR"``, ``date`` and ``time`` (from
        ``effectiveDateTime`` / ``effectivePeriod.start`` / ``effectiveInstant``), ``observation_status``,
        ``limit_markers`` (per lead, how many ``L`` / ``U`` samples were set to a limit), ``source_files``,
        ``original_units``, and ``skipped_components`` when components without samples were left out.

    Raises
    ------
    RecordError
        Naming the file and what is wrong: not JSON, not an Observation, no ``valueSampledData``, a bad
        ``period`` / ``origin`` / ``factor`` / ``dimensions``, a data token that is neither a decimal nor ``E``,
        ``L``, ``U``, components at different sampling rates or of different lengths.
    """
    display, data, _ = read_bytes(source, filename)
    doc = parse_json(data, display)
    if not isinstance(doc, Mapping):
        raise RecordError(display, f"a FHIR resource must be a JSON object, got {type(doc).__name__}")
    kind = doc.get("resourceType")
    if kind != "Observation":
        got = f"resourceType {kind!r}" if kind is not None else "no resourceType"
        raise RecordError(
            display,
            f"{got}: expected a FHIR Observation with component.valueSampledData (one component per lead)"[:300],
        )
    waveforms = _waveforms(doc, display)
    period = None
    channels, labels, units, skipped = [], [], [], []
    limits: dict[str, int] = {}
    for where, code, sampled in waveforms:
        if sampled is None:
            skipped.append(where)
            continue
        if not isinstance(sampled, Mapping):
            raise RecordError(display, f"{where}: valueSampledData must be an object")
        name = lead_from_code(code) or _code_text(code) or ""
        name = lead_label(name, len(labels))
        this_period = _number(sampled.get("period"), f"{where} ({name}) period", display, positive=True)
        if period is None:
            period = this_period
        elif abs(this_period - period) > 1e-9 * period:
            raise RecordError(
                display,
                f"{where} ({name}): period {this_period:g} ms differs from {period:g} ms "
                "of the first lead; one sampling rate per record",
            )
        rows, unit, n_limited = _samples(sampled, f"{where} ({name})", display)
        if len(channels) + len(rows) > MAX_LEADS:
            raise RecordError(display, f"more than {MAX_LEADS} leads")
        suffixes = [""] if len(rows) == 1 else [f":{k + 1}" for k in range(len(rows))]
        for row, suffix in zip(rows, suffixes):
            channels.append(row)
            labels.append(name + suffix)
            units.append(unit)
        if n_limited:
            limits[name] = n_limited
    if period is None:
        raise RecordError(display, "no waveform: no component has valueSampledData (one component per lead)")
    # 10 significant digits: a period written as 2.77777777778 ms is 360 Hz, not 359.99999999971 Hz.
    fs = check_fs(float(f"{1000.0 / period:.10g}"), display)
    meta = _metadata(doc, display)
    if skipped:
        meta["skipped_components"] = skipped
    if limits:
        meta["limit_markers"] = limits
    return build_ecg(
        channels, fs, labels, units, filename=display, fmt="FHIR", name=record_stem(display), metadata=meta
    )


def _waveforms(doc: Mapping[str, Any], display: str) -> list[tuple[str, Any, Any]]:
    """``(where, code, valueSampledData or None)`` per component; the Observation itself when it has no
    components but a ``valueSampledData`` of its own (a one-lead Observation whose ``code`` names the lead)."""
    components = doc.get("component")
    if components is None:
        if "valueSampledData" in doc:
            return [("observation", doc.get("code"), doc["valueSampledData"])]
        raise RecordError(
            display, "no waveform: the Observation has no component (one per lead, each with valueSampledData)"
        )
    if not isinstance(components, list):
        raise RecordError(display, "component must be a list")
    if not components:
        raise RecordError(display, "no waveform: component is empty")
    out = []
    for i, component in enumerate(components):
        if not isinstance(component, Mapping):
            raise RecordError(display, f"component[{i}] must be an object")
        out.append((f"component[{i}]", component.get("code"), component.get("valueSampledData")))
    return out


def _code_text(code: Any) -> str:
    if not isinstance(code, Mapping):
        return ""
    for coding in code.get("coding") or []:
        if isinstance(coding, Mapping) and coding.get("display"):
            return str(coding["display"])[:64]
    return str(code.get("text", "") or "")[:64]


def _samples(sampled: Mapping[str, Any], where: str, display: str) -> tuple[list[np.ndarray], str, int]:
    """``(channels, unit, n_limited)``: ``origin + factor * data`` per interleaved dimension, the origin's unit,
    and how many L / U markers were set to a limit."""
    origin = sampled.get("origin")
    if not isinstance(origin, Mapping):
        raise RecordError(display, f"{where}: valueSampledData.origin is required (a Quantity with a value)")
    base = _number(origin.get("value", 0), f"{where} origin value", display)
    unit = str(origin.get("code") or origin.get("unit") or "").strip()
    factor = _number(sampled.get("factor", 1.0), f"{where} factor", display)
    dims = sampled.get("dimensions", 1)
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise RecordError(display, f"{where}: dimensions must be a positive integer, got {dims!r}"[:200])
    text = sampled.get("data")
    if not isinstance(text, str) or not text.strip():
        raise RecordError(display, f"{where}: valueSampledData has no data")
    tokens = text.split()
    lower = sampled.get("lowerLimit")
    upper = sampled.get("upperLimit")
    try:
        digits = np.array(tokens, dtype=np.float64)
    except ValueError:  # markers among the decimals (or junk): token by token, to name the bad one
        digits = _with_markers(tokens, where, display)
    finite = np.isfinite(digits)
    marked = np.zeros(digits.size, dtype=bool)
    if not finite.all():
        marked = np.array([t in _MARKERS for t in tokens])
        if not (finite | marked).all():  # "nan", "inf", "1e999": numbers, but not FHIR decimals
            bad = tokens[int(np.flatnonzero(~(finite | marked))[0])]
            raise RecordError(display, f"{where}: data value {bad[:20]!r} is not a finite decimal")
    if digits.size % dims:
        raise RecordError(display, f"{where}: {digits.size} data values are not a multiple of dimensions={dims}")
    values = base + factor * digits
    # L / U stand for the detection limits, which are already values in the origin's units (not data steps).
    n_limited = 0
    if marked.any():
        limited = _limit_values(tokens, lower, upper)
        n_limited = int(np.isfinite(limited).sum())
        values = np.where(np.isfinite(limited), limited, values)
    return [values[k::dims] for k in range(dims)], unit, n_limited


def _with_markers(tokens: list[str], where: str, display: str) -> np.ndarray:
    """Data with ``E`` / ``L`` / ``U`` markers: decimals as they are, every marker NaN (limits are put in by the
    caller, after scaling); a token that is neither is a `RecordError` naming it."""
    out = np.empty(len(tokens), dtype=np.float64)
    for i, token in enumerate(tokens):
        if token in _MARKERS:
            out[i] = np.nan
            continue
        try:
            out[i] = float(token)
        except ValueError:
            raise RecordError(
                display,
                f"{where}: data value {token[:20]!r} (sample {i}) is neither a decimal nor one of the markers E, L, U",
            ) from None
    return out


def _limit_values(tokens: list[str], lower: Any, upper: Any) -> np.ndarray:
    """Per sample, the detection limit an ``L`` / ``U`` marker stands for when the limit is given (NaN elsewhere)."""
    out = np.full(len(tokens), np.nan)
    numbers = {"L": lower, "U": upper}
    for marker, limit in numbers.items():
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and np.isfinite(limit):
            out[[i for i, t in enumerate(tokens) if t == marker]] = float(limit)
    return out


def _metadata(doc: Mapping[str, Any], display: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source_files": [basename(display)]}
    period = doc.get("effectivePeriod")
    stamp = (
        doc.get("effectiveDateTime")
        or doc.get("effectiveInstant")
        or (period.get("start") if isinstance(period, Mapping) else None)
    )
    if isinstance(stamp, str):
        date = parse_date(stamp[:10])
        if date:
            meta["date"] = date
        clock = re.match(r"\d{4}-\d{2}-\d{2}T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)", stamp)
        if clock and parse_time(clock.group(1)):
            meta["time"] = parse_time(clock.group(1))
    if isinstance(doc.get("status"), str):
        meta["observation_status"] = doc["status"][:32]
    return meta


def write_fhir(ecg: Ecg, path: str | Path | None = None, *, resolution_uv: float = 1.0) -> bytes:
    """Write ``ecg`` as a FHIR R4 Observation (one component per lead, ``valueSampledData``) and return the JSON.

    Parameters
    ----------
    ecg : Ecg
        The record.
    path : path, optional
        Where to write the file as well. Default: None.
    resolution_uv : float
        ``factor`` of every lead in uV per data step (the origin is 0 uV; samples are rounded to it, so the round
        trip is exact to ``resolution_uv / 2``). Default: 1.0.
    """
    if not np.isfinite(resolution_uv) or resolution_uv <= 0:
        raise ValueError(f"resolution_uv must be positive, got {resolution_uv}")
    components = []
    for lead, row in zip(ecg.leads, ecg.signal.astype(np.float64)):
        steps = np.round(row * 1000.0 / resolution_uv).astype(np.int64)
        components.append(
            {
                "code": lead_code(lead),
                "valueSampledData": {
                    "origin": {"value": 0, "unit": "uV", "system": UCUM_SYSTEM, "code": "uV"},
                    "period": 1000.0 / ecg.fs,
                    "factor": float(resolution_uv),
                    "dimensions": 1,
                    "data": " ".join(map(str, steps.tolist())),
                },
            }
        )
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "procedure", "display": "Procedure"}]}
        ],
        "code": {
            "coding": [{"system": MDC_SYSTEM, "code": str(MDC_ECG_ELEC_POTL), "display": "MDC_ECG_ELEC_POTL"}],
            "text": "ECG",
        },
        "component": components,
    }
    # The date only: a FHIR dateTime with a time of day needs a time zone, which records do not carry.
    date = parse_date(str(ecg.metadata.get("date") or ""))
    if date:
        doc["effectiveDateTime"] = date
    data = _json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if path is not None:
        Path(path).write_bytes(data)
    return data
