"""HL7 annotated ECG (aECG, the FDA's XML format).

The rhythm waveforms are one ``sequenceSet`` under ``AnnotatedECG/component/series``: a time sequence
(code ``TIME_ABSOLUTE`` with a ``GLIST_TS``, or ``TIME_RELATIVE`` with a ``GLIST_PQ``) whose ``increment`` is
the sampling interval, and one sequence per lead (code ``MDC_ECG_LEAD_*``) whose ``SLIST_PQ`` value holds
``origin`` and ``scale`` (with units, usually uV) and the ``digits``: ``value = origin + scale * digit``.
Median beats under ``derivedSeries`` are used only when a file has no rhythm series.

XML is parsed with the standard library, so documents declaring a DOCTYPE or entities are refused outright:
that is where entity-expansion ("billion laughs") and external-entity attacks live, and aECG needs neither.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.ecg import STANDARD_12, Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, build_ecg, check_fs, lead_label, unit_to_mv
from ecglens.formats._guard import guarded
from ecglens.formats._header import parse_sex
from ecglens.formats._source import basename, read_bytes, record_stem

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_TIME_CODES = ("TIME_ABSOLUTE", "TIME_RELATIVE")
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6}
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if _local(child.tag) == name)


def _child(element: ET.Element | None, *path: str) -> ET.Element | None:
    for name in path:
        if element is None:
            return None
        element = next(_children(element, name), None)
    return element


def is_aecg(data: bytes) -> bool:
    """True for XML whose first few kilobytes mention an ``AnnotatedECG`` element."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"AnnotatedECG" in head


def parse_xml(data: bytes, display: str) -> ET.Element:
    """The document's root element; DOCTYPE / ENTITY declarations and malformed XML are `RecordError`."""
    if _FORBIDDEN.search(data):
        raise RecordError(display, "XML declares a DOCTYPE or entities, which are refused (entity expansion)")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise RecordError(display, f"malformed XML: {exc}") from None
    except (LookupError, ValueError) as exc:  # an unknown encoding in the XML declaration
        raise RecordError(display, f"malformed XML: {exc}") from None


def _sequence_sets(element: ET.Element, derived: bool = False) -> Iterator[tuple[ET.Element, bool]]:
    """Every ``sequenceSet`` with whether it sits under a ``derivedSeries`` (median beats)."""
    for child in element:
        name = _local(child.tag)
        if name == "sequenceSet":
            yield child, derived
        else:
            yield from _sequence_sets(child, derived or name == "derivedSeries")


def _float_attr(element: ET.Element | None, what: str, display: str) -> float:
    text = element.get("value") if element is not None else None
    if text is None:
        raise RecordError(display, f"{what} has no value")
    try:
        value = float(text)
    except ValueError:
        raise RecordError(display, f"{what} value {text!r} is not a number") from None
    if not np.isfinite(value):
        raise RecordError(display, f"{what} is not finite")
    return value


@guarded("HL7 aECG")
def read_aecg(source: Any, filename: str | None = None) -> Ecg:
    """Read an HL7 aECG XML file into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The XML file.
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.

    Returns
    -------
    Ecg
        ``fs = 1 / increment`` in Hz. ``metadata``: ``format="HL7 aECG"``, ``date``, ``time`` (from the
        ECG's ``effectiveTime``), ``sex``, ``series`` (``"rhythm"`` or ``"derived"``), ``source_files``,
        ``original_units``.
    """
    display, data, _ = read_bytes(source, filename)
    root = parse_xml(data, display)
    if _local(root.tag) != "AnnotatedECG":
        raise RecordError(
            display, f"not an HL7 aECG document: root element is <{_local(root.tag)}>, expected <AnnotatedECG>"
        )
    found = list(_sequence_sets(root))
    rhythm = [s for s, derived in found if not derived]
    if not found:
        raise RecordError(display, "no waveforms: the document has no sequenceSet")
    chosen = rhythm[0] if rhythm else found[0][0]

    period = None
    channels, labels, skipped = [], [], []
    for number, sequence in enumerate(_children_seq(chosen), start=1):
        code_el = _child(sequence, "code")
        code = (code_el.get("code") if code_el is not None else None) or ""
        value = _child(sequence, "value")
        if code in _TIME_CODES:
            increment = _child(value, "increment")
            step = _float_attr(increment, f"{code} increment", display)
            unit = (increment.get("unit") or "s").strip() if increment is not None else "s"
            if unit not in _TIME_UNITS:
                raise RecordError(display, f"{code} increment unit {unit!r} is not a time unit (s, ms)")
            period = step * _TIME_UNITS[unit]
            continue
        if not code.upper().startswith("MDC_ECG_LEAD"):
            skipped.append(code or f"sequence {number}")  # not a lead: respiration, marker channels...
            continue
        if value is None:
            raise RecordError(display, f"sequence {number} ({code}) has no value")
        if len(channels) >= MAX_LEADS:
            raise RecordError(display, f"more than {MAX_LEADS} leads")
        channels.append(_lead_samples(value, code or f"sequence {number}", display))
        labels.append(_lead_name(code, len(labels)))
    if period is None:
        raise RecordError(display, "no TIME_ABSOLUTE or TIME_RELATIVE sequence: the sampling interval is unknown")
    if period <= 0:
        raise RecordError(display, f"sampling interval {period} s is not positive")
    fs = check_fs(1.0 / period, display)
    if not channels:
        raise RecordError(display, "no lead sequences in the sequenceSet")

    meta = _metadata(root, display)
    meta["series"] = "rhythm" if rhythm else "derived"
    if skipped:
        meta["skipped_sequences"] = skipped
    return build_ecg(
        channels,
        fs,
        labels,
        ["mV"] * len(channels),
        filename=display,
        fmt="HL7 aECG",
        name=record_stem(display),
        metadata=meta,
    )


def _children_seq(sequence_set: ET.Element) -> Iterator[ET.Element]:
    for component in _children(sequence_set, "component"):
        sequence = _child(component, "sequence")
        if sequence is not None:
            yield sequence


def _lead_name(code: str, index: int) -> str:
    bare = re.sub(r"^MDC_ECG_LEAD_", "", code)
    return lead_label(bare, index) if bare != code else lead_label(code, index)


def _lead_samples(value: ET.Element, code: str, display: str) -> np.ndarray:
    """``origin + scale * digits`` in mV for one ``SLIST_PQ`` value."""
    origin_el, scale_el, digits_el = _child(value, "origin"), _child(value, "scale"), _child(value, "digits")
    if digits_el is None or not (digits_el.text or "").strip():
        raise RecordError(display, f"lead {code}: no digits")
    origin = _float_attr(origin_el, f"lead {code} origin", display) if origin_el is not None else 0.0
    scale = _float_attr(scale_el, f"lead {code} scale", display) if scale_el is not None else 1.0
    origin_unit = (origin_el.get("unit") if origin_el is not None else None) or "uV"
    scale_unit = (scale_el.get("unit") if scale_el is not None else None) or "uV"
    to_mv_origin, to_mv_scale = unit_to_mv(origin_unit), unit_to_mv(scale_unit)
    if to_mv_origin is None or to_mv_scale is None:
        raise RecordError(display, f"lead {code}: units {origin_unit!r}/{scale_unit!r} are not a voltage")
    try:
        digits = np.array(digits_el.text.split(), dtype=np.float64)
    except ValueError:
        bad = next(t for t in digits_el.text.split() if not _is_number(t))
        raise RecordError(display, f"lead {code}: digit {bad!r} is not a number") from None
    return origin * to_mv_origin + scale * to_mv_scale * digits


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _metadata(root: ET.Element, display: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source_files": [basename(display)]}
    low = _child(root, "effectiveTime", "low")
    stamp = (low.get("value") if low is not None else "") or ""
    digits = re.sub(r"[^\d]", "", stamp.split(".")[0].split("+")[0].split("-")[0])
    if len(digits) >= 8:
        meta["date"] = f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}"
    if len(digits) >= 14:
        meta["time"] = f"{digits[8:10]}:{digits[10:12]}:{digits[12:14]}"
    for element in root.iter():
        if _local(element.tag) == "administrativeGenderCode":
            sex = parse_sex(element.get("code") or "")
            if sex:
                meta["sex"] = sex
            break
    return meta


def write_aecg(ecg: Ecg, path: str | Path | None = None, *, resolution_uv: float = 1.0) -> bytes:
    """Write ``ecg`` as an HL7 aECG document (one rhythm sequenceSet) and return the UTF-8 bytes.

    Parameters
    ----------
    ecg : Ecg
        The record. Leads without an MDC code keep their name as ``MDC_ECG_LEAD_<name>``.
    path : path, optional
        Where to write the file as well. Default: None.
    resolution_uv : float
        The ``scale`` of every lead in uV per digit (samples are rounded to it). Default: 1.0.
    """
    ET.register_namespace("", HL7)
    ET.register_namespace("xsi", XSI)

    def el(parent: ET.Element, name: str, **attrs: str) -> ET.Element:
        return ET.SubElement(parent, f"{{{HL7}}}{name}", attrs)

    root = ET.Element(f"{{{HL7}}}AnnotatedECG")
    el(root, "id", root="2.25.0")
    el(root, "code", code="93000", codeSystem="2.16.840.1.113883.6.12")
    stamp = (
        str(ecg.metadata.get("date", "") or "2000-01-01").replace("-", "")[:8]
        + str(ecg.metadata.get("time", "") or "00:00:00").replace(":", "")[:6]
    )
    effective = el(root, "effectiveTime")
    el(effective, "low", value=stamp)
    series = el(el(root, "component"), "series")
    el(series, "code", code="RHYTHM", codeSystem="2.16.840.1.113883.5.4")
    sequence_set = el(el(series, "component"), "sequenceSet")
    time_seq = el(el(sequence_set, "component"), "sequence")
    el(time_seq, "code", code="TIME_ABSOLUTE", codeSystem="2.16.840.1.113883.5.4")
    value = el(time_seq, "value", **{f"{{{XSI}}}type": "GLIST_TS"})
    el(value, "head", value=stamp + ".000")
    el(value, "increment", value=f"{1.0 / ecg.fs:.12g}", unit="s")
    for lead, row in zip(ecg.leads, ecg.signal.astype(np.float64)):
        sequence = el(el(sequence_set, "component"), "sequence")
        # MDC spells the augmented leads in capitals (MDC_ECG_LEAD_AVR); other names are kept as they are.
        code = lead.upper() if lead in STANDARD_12 else lead
        el(sequence, "code", code=f"MDC_ECG_LEAD_{code}", codeSystem="2.16.840.1.113883.6.24")
        value = el(sequence, "value", **{f"{{{XSI}}}type": "SLIST_PQ"})
        el(value, "origin", value="0", unit="uV")
        el(value, "scale", value=f"{resolution_uv:g}", unit="uV")
        digits = np.round(row * 1000.0 / resolution_uv).astype(np.int64)
        el(value, "digits").text = " ".join(map(str, digits.tolist()))
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    if path is not None:
        Path(path).write_bytes(data)
    return data
