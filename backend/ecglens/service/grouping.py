"""Which uploaded files make one record, and what each file of a record is.

A WFDB header takes the files it names (signal files, segment headers and theirs) and the WFDB files that share
its record name (``100.hea`` with ``100.dat``, ``100.atr``, ``100.qrs``); segment headers of a multi-segment
record are not records of their own. Every other file (EDF, CSV, JSON, DICOM, XML) is a record alone. Nothing
is dropped: a WFDB file that no header takes, or a file of a record that its reader did not use and that is not
an annotation file, is refused by name.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats.annotations import ANNOTATION_EXTENSIONS, Annotations, is_annotation_file, read_annotations
from ecglens.formats.wfdb import _parse_header
from ecglens.service.uploads import RecordGroup, UploadError, UploadFile

# Signal-file extensions a WFDB header's files use (PTB's Frank leads are .xyz).
SIGNAL_EXTENSIONS = ("dat", "mat", "xyz")


def is_wfdb_part(name: str) -> bool:
    """A file that only makes sense beside a WFDB header: signal data or annotations."""
    return is_signal_file(name) or PurePath(name).suffix.lower().lstrip(".") in ANNOTATION_EXTENSIONS


def is_signal_file(name: str) -> bool:
    """A WFDB signal file by its extension: only ever read by the WFDB reader, beside its header."""
    return PurePath(name).suffix.lower().lstrip(".") in SIGNAL_EXTENSIONS


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _header(f: UploadFile) -> Any:
    try:
        return _parse_header(f.data, f.filename)
    except RecordError:
        return None  # the reader says what is wrong with it when the group is read


def group_files(files: list[UploadFile]) -> list[RecordGroup]:
    """Group uploaded files into records, in upload order (see the module docstring).

    Raises `UploadError` for two files with one name, WFDB files without a header to take them, or (with
    several headers) a WFDB file none of them takes.
    """
    if not files:
        raise UploadError("no files in the upload")
    names = [f.filename for f in files]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UploadError(f"{dupes[0]}: the same file name appears twice in the upload")
    headers = [f for f in files if f.filename.lower().endswith(".hea")]
    parsed = {h.filename: _header(h) for h in headers}
    segment_headers = {f"{s}.hea" for p in parsed.values() if p for s in p.segments}
    tops = [h for h in headers if h.filename not in segment_headers]
    owner: dict[str, str] = {}
    for h in tops:
        p = parsed[h.filename]
        named: set[str] = set()
        stems = {_stem(h.filename)}
        if p is not None:
            stems.add(p.record_name)
            named.update(p.signal_files)
            for segment in p.segments:
                seg_file = f"{segment}.hea"
                named.add(seg_file)
                seg = parsed.get(seg_file)
                if seg is not None:
                    named.update(seg.signal_files)
        for f in files:
            if f is h or f.filename in owner:
                continue
            takes = f.filename in named or (_stem(f.filename) in stems and is_wfdb_part(f.filename))
            if takes and not (f.filename.lower().endswith(".hea") and f.filename not in named):
                owner[f.filename] = h.filename
    groups: dict[str, RecordGroup] = {}
    ordered: list[RecordGroup] = []
    orphans = [
        f
        for f in files
        if f.filename not in owner and f not in tops and (is_wfdb_part(f.filename) or f.filename in segment_headers)
    ]
    if orphans and not tops:
        first = orphans[0].filename
        raise UploadError(f"{first}: WFDB file without its header {_stem(first)}.hea in the upload")
    if orphans and len(tops) > 1:
        raise UploadError(
            f"{orphans[0].filename}: belongs to none of the records in the upload (no header "
            f"{_stem(orphans[0].filename)}.hea, and none of {', '.join(h.filename for h in tops)} "
            "names it)"
        )
    for f in files:
        if f in tops:
            groups[f.filename] = RecordGroup(f)
            ordered.append(groups[f.filename])
        elif f.filename in owner:
            continue
        elif not (is_wfdb_part(f.filename) or f.filename in segment_headers):
            ordered.append(RecordGroup(f))
    for f in files:
        if f.filename in owner:
            groups[owner[f.filename]].companions.append(f)
    if orphans:  # one header: its reader says why these files are not the ones it names
        groups[tops[0].filename].companions.extend(orphans)
    return ordered


def file_roles(group: RecordGroup, ecg: Ecg) -> dict[str, str]:
    """``{file name: "header" | "signal" | "annotation" | "record"}`` for a group its reader has read.

    Raises `UploadError` for a file the reader did not use that is not an annotation file.
    """
    if len(group.files) == 1 and not group.main.filename.lower().endswith(".hea"):
        return {group.main.filename: "record"}
    used = set(ecg.metadata.get("source_files") or [])
    roles: dict[str, str] = {}
    for f in group.files:
        if f.filename in used:
            roles[f.filename] = "header" if f.filename.lower().endswith(".hea") else "signal"
        elif is_annotation_file(f.filename):
            roles[f.filename] = "annotation"
        else:
            named = ", ".join(sorted(used)) or "no files"
            raise UploadError(
                f"{f.filename}: not part of record {ecg.name or group.main.filename} (its header "
                f"uses {named}) and not an annotation file; upload it with its own header"
            )
    return roles


def annotation_rate(ecg: Ecg) -> float:
    """The rate annotation sample numbers count in: WFDB's frame rate (below ``fs`` for multi-rate records)."""
    return float(ecg.metadata.get("frame_fs") or ecg.fs)


def read_group_annotations(group: RecordGroup, ecg: Ecg, roles: dict[str, str]) -> list[Annotations]:
    """The annotation files of a read group, parsed; `UploadError` naming a file that is not annotations."""
    out = []
    for f in group.files:
        if roles.get(f.filename) != "annotation":
            continue
        try:
            out.append(read_annotations(f.data, f.filename, annotation_rate(ecg), ecg.duration_s))
        except RecordError as exc:
            raise UploadError(str(exc)) from None
    return out


def stored_annotations(record: Any, blobs: Any) -> list[Annotations]:
    """A stored record's annotation files (``files`` entries with role ``annotation``), parsed from the blobs."""
    fs = float((record.header or {}).get("frame_fs") or record.fs)
    return [
        read_annotations(blobs.get(f["sha256"]), f["filename"], fs, record.duration_s)
        for f in record.files
        if f.get("role") == "annotation"
    ]
