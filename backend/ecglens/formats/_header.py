"""Header text shared by several formats: dates and times in the many spellings files use, and free-text
``key: value`` comments (WFDB ``# Age: 78``, ``# <sex>: M <diagnoses>: (none)``) parsed into metadata keys."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%d-%b-%Y", "%d-%b-%y", "%d.%m.%y", "%Y%m%d")
_TIME_FORMATS = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%H.%M.%S")
_UNKNOWN = {"", "unknown", "nan", "n/a", "na", "none", "(none)", "-", "?"}


def parse_date(text: str) -> str | None:
    """ISO ``YYYY-MM-DD`` for a date in one of the spellings headers use (``15/04/2014``, ``2014-04-15``,
    ``29-Sep-90``, ``10.12.09``), or None when ``text`` is not one."""
    token = str(text).strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(token, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def parse_time(text: str) -> str | None:
    """``HH:MM:SS`` (with ``.ffffff`` when the header has fractions) for a time of day, or None."""
    token = str(text).strip()
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(token, fmt).time()
        except ValueError:
            continue
        return moment.isoformat()
    return None


def parse_sex(text: str) -> str | None:
    """``"M"`` / ``"F"`` for the usual spellings, the text itself for anything else, None when unknown."""
    value = str(text).strip()
    folded = value.lower()
    if folded in ("m", "male", "man", "1"):
        return "M"
    if folded in ("f", "female", "woman", "w", "2"):
        return "F"
    return None if folded in _UNKNOWN else value


def parse_age(text: str) -> int | float | None:
    """Age in years as a number, or None when the header says it is unknown (``Unknown``, ``NaN``)."""
    match = re.fullmatch(r"\s*(\d{1,3}(?:\.\d+)?)\s*(?:y|yr|yrs|years?)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        return None
    number = float(match.group(1))
    return int(number) if number.is_integer() else number


def parse_codes(text: str) -> list[str]:
    """Diagnosis codes or statements from ``"164889003,59118001"`` (comma, semicolon or pipe separated)."""
    value = str(text).strip()
    if value.lower() in _UNKNOWN:
        return []
    return [part.strip() for part in re.split(r"[,;|]", value) if part.strip()]


def _fields(line: str) -> list[tuple[str, str]]:
    """``key: value`` pairs on one comment line; several when the line uses ``<key>: value`` markup."""
    tagged = re.findall(r"<([^<>]{1,60})>\s*:\s*(.*?)(?=\s*<[^<>]{1,60}>\s*:|$)", line)
    if tagged:
        return [(k.strip(), v.strip()) for k, v in tagged]
    match = re.match(r"\s*([^:]{1,60}?)\s*:\s*(.*)$", line)
    return [(match.group(1), match.group(2).strip())] if match else []


def parse_comments(lines: Iterable[str]) -> dict[str, Any]:
    """Metadata from header comment lines (without the leading ``#``).

    Returns a dict with ``comments`` (the lines as written) and, when found, ``age`` (number), ``sex``
    (``"M"``/``"F"``/text), ``dx`` (list of codes from ``Dx:`` / ``diagnoses:``), ``date`` (ISO, from
    ``ECG date:`` / ``date:``) and ``header_fields`` (every ``key: value`` pair, keys as written).
    """
    comments = [str(line).strip() for line in lines if str(line).strip()]
    out: dict[str, Any] = {"comments": comments}
    fields: dict[str, str] = {}
    for line in comments:
        for key, value in _fields(line):
            if value:
                fields.setdefault(key, value)
    for key, value in fields.items():
        folded = key.lower()
        if folded == "age" and "age" not in out:
            out["age"] = parse_age(value)
        elif folded in ("sex", "gender") and "sex" not in out:
            out["sex"] = parse_sex(value)
        elif folded in ("dx", "diagnoses", "diagnosis") and "dx" not in out:
            out["dx"] = parse_codes(value)
        elif folded in ("ecg date", "date", "recording date") and "date" not in out:
            out["date"] = parse_date(value) or value
    if fields:
        out["header_fields"] = fields
    return out
