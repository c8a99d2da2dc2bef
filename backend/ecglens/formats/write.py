"""`write_record`: export an `Ecg` in any writable format as ``{file name: bytes}`` (for downloads)."""

from __future__ import annotations

import re
from collections.abc import Callable

from ecglens.ecg import Ecg
from ecglens.formats.aecg import write_aecg
from ecglens.formats.csv import write_csv
from ecglens.formats.dicom import write_dicom
from ecglens.formats.edf import write_edf
from ecglens.formats.fhir import write_fhir
from ecglens.formats.json import write_json
from ecglens.formats.wfdb import write_wfdb

# format -> (writer returning bytes, file extension); WFDB writes two files and is handled apart.
WRITERS: dict[str, tuple[Callable[[Ecg], bytes], str]] = {
    "csv": (write_csv, ".csv"),
    "json": (write_json, ".json"),
    "edf": (write_edf, ".edf"),
    "dicom": (write_dicom, ".dcm"),
    "aecg": (write_aecg, ".xml"),
    "fhir": (write_fhir, ".fhir.json"),
}


def write_record(ecg: Ecg, format: str, name: str | None = None) -> dict[str, bytes]:
    """``ecg`` written as ``format`` (``"wfdb"``, ``"csv"``, ``"json"``, ``"edf"``, ``"dicom"``, ``"aecg"``,
    ``"fhir"``).

    Parameters
    ----------
    ecg : Ecg
        The record.
    format : str
        Output format; an unknown name raises ValueError listing the valid ones.
    name : str, optional
        File stem. Default: ``ecg.name`` (cleaned), or ``"record"``.

    Returns
    -------
    dict mapping file names to bytes (two files for WFDB: header and signal file).
    """
    stem = re.sub(r"[^\w\-]", "_", name or ecg.name or "record").strip("_") or "record"
    key = format.strip().lower()
    if key == "wfdb":
        return write_wfdb(ecg, record_name=stem)
    if key not in WRITERS:
        raise ValueError(f"unknown export format {format!r}; valid: wfdb, {', '.join(WRITERS)}")
    writer, suffix = WRITERS[key]
    return {stem + suffix: writer(ecg)}
