"""Record readers and writers: every supported file format <-> `ecglens.ecg.Ecg` (float32 ``[leads, samples]``
in mV, ``fs`` in Hz, canonical lead names, header metadata kept apart).

`read_record` (alias `read_any`) detects the format; one module per format does the work, neurokit-style:
`read_wfdb` / `write_wfdb`, `read_edf` / `write_edf`, `read_csv` / `write_csv`, `read_json` / `write_json`,
`read_dicom` / `write_dicom`, `read_aecg` / `write_aecg`, `read_fhir` / `write_fhir`; `read_annotations` for WFDB
reference annotations (beats, rhythm episodes). Every malformed input raises
`RecordError` naming the file and what is wrong; nothing else escapes a reader.
"""

from __future__ import annotations

from ecglens.formats.aecg import read_aecg, write_aecg
from ecglens.formats.annotations import Annotations, read_annotations
from ecglens.formats.csv import read_csv, write_csv
from ecglens.formats.dicom import read_dicom, write_dicom
from ecglens.formats.edf import read_edf, write_edf
from ecglens.formats.fhir import read_fhir, write_fhir
from ecglens.formats.json import read_json, write_json
from ecglens.formats.read import FORMATS, detect_format, read_any, read_record, supported_formats
from ecglens.formats.wfdb import read_wfdb, write_wfdb
from ecglens.formats.write import WRITERS, write_record

__all__ = [
    "read_record",
    "read_any",
    "detect_format",
    "supported_formats",
    "FORMATS",
    "write_record",
    "WRITERS",
    "read_wfdb",
    "write_wfdb",
    "read_edf",
    "write_edf",
    "read_csv",
    "write_csv",
    "read_json",
    "write_json",
    "read_dicom",
    "write_dicom",
    "read_aecg",
    "write_aecg",
    "read_fhir",
    "write_fhir",
    "read_annotations",
    "Annotations",
]
