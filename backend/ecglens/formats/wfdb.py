"""WFDB records (PhysioNet): a ``.hea`` header plus the signal files it names (``.dat``, ``.mat``, ...).

Decoding is wfdb-python's (every format it supports: 8, 16, 24, 32, 61, 80, 160, 212, 310, 311, FLAC 508-524,
and MATLAB ``.mat`` as in the CinC challenges). What this module adds around it:

- uploads: the header and its signal files arrive as bytes, matched by the names in the header; wfdb needs them
  on disk, so they are written to a private temporary folder;
- header dates wfdb refuses (``A00011 1 300 9000 2014-04-15 03:04:41``) are taken off the record line before
  wfdb sees it and kept, parsed, in the metadata;
- checksums in the header are verified: a mismatch (a signal file from another record, or the placeholder ``0``
  whole public datasets write, e.g. the PhysioNet/CinC 2017 challenge) is a warning in ``metadata["warnings"]``,
  as are a base date or time no spelling matches and a signal line without its initial value (so without a
  checksum to verify); ``strict=True`` refuses all three, as WFDB's own tools warn about them;
- multi-frequency records are read unsmoothed and each channel is resampled to the highest rate;
- invalid samples become NaN, then are interpolated and counted (`_build.fill_missing`);
- channels in non-voltage units (mmHg, %, bpm) are dropped and listed in the metadata.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, LazyChannel, build_ecg, check_fs, check_size, fill_missing
from ecglens.formats._guard import describe, guarded
from ecglens.formats._header import parse_comments, parse_date, parse_time
from ecglens.formats._source import basename, read_bytes, read_files
from ecglens.formats.mapped import CHUNK_BYTES, release

_SAFE_NAME = re.compile(r"^[\w\-.+~]+$")
_FORMAT_FIELD = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
# WFDB storage formats wfdb-python decodes, with their bits per sample (None: compressed, size unknown).
_BITS_PER_SAMPLE: dict[str, float | None] = {
    "8": 8,
    "16": 16,
    "24": 24,
    "32": 32,
    "61": 16,
    "80": 8,
    "160": 16,
    "212": 12,
    "310": 32 / 3,
    "311": 32 / 3,
    "508": None,
    "516": None,
    "524": None,
}
_RECORD_NAME = re.compile(r"^[\w\-.+]+$")


@dataclass
class _Header:
    """What this module needs from a header before wfdb reads it."""

    text: str  # sanitised header wfdb will parse
    record_name: str
    n_signals: int
    fs: float
    n_samples: int | None
    signal_files: list[str] = field(default_factory=list)
    samples_per_frame: list[int] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    byte_offsets: list[int] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    date: str | None = None
    time: str | None = None
    raw_datetime: str | None = None
    # Signal lines (1-based, in order) that stop before the initial value field, so carry no checksum either.
    no_initial_value: list[int] = field(default_factory=list)
    unparsed_datetime: list[str] = field(default_factory=list)


def _parse_header(raw: bytes, filename: str) -> _Header:
    """Check a header's structure and take non-standard date/time tokens off its record line."""
    if b"\x00" in raw:
        raise RecordError(filename, "header is not text (contains NUL bytes)")
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    comments: list[str] = []
    body: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
        elif stripped:
            body.append((number, stripped))
    if not body:
        raise RecordError(filename, "header has no record line")
    line_no, record_line = body[0]
    tokens = record_line.split()
    where = f"header line {line_no}"
    if len(tokens) < 2:
        raise RecordError(filename, f"{where}: expected 'name nsig [fs [nsamp [time date]]]', got {record_line!r}")
    name_token, *rest = tokens
    record_name, _, n_seg = name_token.partition("/")
    if not _RECORD_NAME.match(record_name):
        raise RecordError(filename, f"{where}: record name {record_name!r} has characters WFDB does not allow")
    if n_seg and not n_seg.isdigit():
        raise RecordError(filename, f"{where}: segment count {n_seg!r} is not a number")
    if not rest[0].isdigit():
        raise RecordError(filename, f"{where}: number of signals {rest[0]!r} is not a whole number")
    n_signals = int(rest[0])
    if n_signals > MAX_LEADS:
        raise RecordError(filename, f"{where}: {n_signals} signals (limit {MAX_LEADS})")
    fs = 250.0  # the WFDB default when the header gives no rate
    kept = [name_token, rest[0]]
    extra = rest[1:]
    if extra:
        match = re.match(r"^([0-9.eE+\-]+)(/[0-9.eE+\-]+)?(\([0-9.eE+\-]+\))?$", extra[0])
        if not match:
            raise RecordError(filename, f"{where}: sampling frequency {extra[0]!r} is not a number")
        fs = check_fs(match.group(1), filename)
        kept.append(extra[0])
        extra = extra[1:]
    n_samples = None
    if extra and extra[0].isdigit():
        n_samples = int(extra[0])
        kept.append(extra[0])
        extra = extra[1:]
    header = _Header(
        text="", record_name=record_name, n_signals=n_signals, fs=fs, n_samples=n_samples, comments=comments
    )
    # Whatever follows is base time and date, in whichever spelling the writer chose; wfdb only takes
    # "HH:MM:SS DD/MM/YYYY", so they are parsed here and left off the line wfdb sees.
    if extra:
        header.raw_datetime = " ".join(extra)
        # ISO 8601 date-times ("2014-04-15T05:05:05") are a date and a time in one token.
        tokens = [
            part
            for token in extra
            for part in (token.split("T", 1) if re.match(r"^\d{4}-\d\d-\d\dT", token) else [token])
        ]
        for token in tokens:
            moment, day = parse_time(token), parse_date(token)
            header.time = header.time or moment
            header.date = header.date or day
            if moment is None and day is None:
                header.unparsed_datetime.append(token)
    out_lines = [" ".join(kept)]
    following = body[1:]
    if n_seg:
        header.segments = _segment_names(following, int(n_seg), filename)
        out_lines += [line for _, line in following]
    else:
        if len(following) < n_signals:
            raise RecordError(filename, f"header declares {n_signals} signals but has {len(following)} signal lines")
        for number, line in following[:n_signals]:
            fields = line.split()
            if len(fields) < 2:
                raise RecordError(
                    filename, f"header line {number}: signal line needs at least a file name and a format, got {line!r}"
                )
            header.signal_files.append(_plain_name(fields[0], filename, number))
            spec = _FORMAT_FIELD.match(fields[1])
            if not spec:
                raise RecordError(filename, f"header line {number}: storage format {fields[1]!r} is not valid")
            if spec.group(1) not in _BITS_PER_SAMPLE:
                raise RecordError(
                    filename,
                    f"header line {number}: storage format {spec.group(1)} is not one "
                    f"of the WFDB formats ({', '.join(_BITS_PER_SAMPLE)})",
                )
            header.formats.append(spec.group(1))
            header.samples_per_frame.append(max(1, int(spec.group(2) or 1)))
            header.byte_offsets.append(int(spec.group(4) or 0))
            # file, format, gain, ADC resolution, ADC zero, then the initial value and the checksum
            if len(fields) < 6:
                header.no_initial_value.append(len(header.signal_files))
        out_lines += [line for _, line in following]
    out_lines += [f"# {c}" for c in comments]
    # wfdb reads headers as ASCII; non-ASCII comment text is kept in our own copy of the comments.
    header.text = "\n".join(out_lines).encode("ascii", errors="replace").decode("ascii") + "\n"
    return header


def _segment_names(lines: list[tuple[int, str]], n_seg: int, filename: str) -> list[str]:
    if len(lines) < n_seg:
        raise RecordError(filename, f"header declares {n_seg} segments but lists {len(lines)}")
    names = []
    for number, line in lines[:n_seg]:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise RecordError(filename, f"header line {number}: segment line must be 'name nsamp', got {line!r}")
        if fields[0] != "~":
            names.append(_plain_name(fields[0], filename, number))
    return names


def _plain_name(name: str, filename: str, line_no: int) -> str:
    if not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith("~"):
        raise RecordError(filename, f"header line {line_no}: file name {name!r} must be a plain file name")
    return name


def _pick_header(files: Mapping[str, bytes], display: str) -> str:
    """The one top-level header in an upload (segment headers of a multi-segment record are not top-level)."""
    headers = sorted(name for name in files if name.lower().endswith(".hea"))
    if not headers:
        signal = sorted(files)
        raise RecordError(
            display,
            f"no WFDB header (.hea) among the files ({', '.join(signal)}); a WFDB record "
            "needs its .hea header and the signal files it names",
        )
    segments: set[str] = set()
    if len(headers) > 1:
        for name in headers:
            try:
                segments.update(f"{s}.hea" for s in _parse_header(files[name], name).segments)
            except RecordError:
                continue
    top = [name for name in headers if name not in segments]
    if len(top) != 1:
        listed = ", ".join(top[:5]) + (f" and {len(top) - 5} more" if len(top) > 5 else "")
        raise RecordError(
            display,
            f"the upload holds {len(top)} WFDB records ({listed}); send one record "
            "(its .hea and the signal files it names)",
        )
    return top[0]


def _gather_from_disk(path: Path, display: str) -> dict[str, bytes]:
    """The header at (or beside) ``path`` and every file it names, read from the header's folder."""
    if path.suffix.lower() == ".hea":
        header_path = path
    elif path.is_file():  # a signal file: its header sits beside it under the record's name
        header_path = path.with_suffix(".hea")
    else:  # a record path without extension, as wfdb takes them ("mitdb/100")
        header_path = path.with_name(path.name + ".hea")
    if not header_path.exists():
        raise RecordError(display, f"no WFDB header {header_path.name} beside it")
    files = {header_path.name: read_bytes(header_path)[1]}
    header = _parse_header(files[header_path.name], header_path.name)
    needed = set(header.signal_files)
    for segment in header.segments:
        seg_path = header_path.with_name(f"{segment}.hea")
        if seg_path.exists():
            files[seg_path.name] = read_bytes(seg_path)[1]
            needed.update(_parse_header(files[seg_path.name], seg_path.name).signal_files)
    for name in sorted(needed):
        file_path = header_path.with_name(name)
        if file_path.exists():
            files[name] = read_bytes(file_path)[1]
    return files


@guarded("WFDB")
def read_wfdb(
    source: Any = None,
    filename: str | None = None,
    *,
    files: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> Ecg:
    """Read a WFDB record into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes, file object or mapping, optional
        A path to the ``.hea`` header (or to the record without extension, or to one of its signal files; the
        other files are read from the same folder); or the header's bytes with the signal files in ``files``;
        or a mapping ``{file name: bytes}`` holding the header and its signal files.
    filename : str, optional
        The header's upload name when ``source`` is bytes. Default: ``"<bytes>"``.
    files : mapping of str to bytes/path, optional
        Further files of the record (signal files, segment headers), matched by the names in the header.
    strict : bool
        Refuse what is only a warning by default: a checksum mismatch, a base date or time no known spelling
        matches, a signal line without its initial value. Default: False (read, and say so in
        ``metadata["warnings"]``).

    Returns
    -------
    Ecg
        ``fs`` is the highest channel rate in Hz; ``metadata`` holds ``format="WFDB"``, ``record_name``,
        ``date`` / ``time`` (ISO strings) when the header has them (``raw_datetime`` as written), ``age``,
        ``sex``, ``dx`` (e.g. CinC SNOMED codes), ``comments``, ``header_fields``, ``source_files``,
        ``original_units``, and ``missing_samples`` / ``dropped_channels`` / ``resampled_channels`` when
        those happened, and ``warnings`` (one sentence each) when the files are readable but not as WFDB
        specifies.

    Raises
    ------
    RecordError
        Naming the file: missing header or signal file, a signal file too short for its header, malformed
        header lines, implausible rate, size or values (with ``strict``, also what is otherwise a warning).
    """
    uploads: dict[str, bytes] = {}
    if isinstance(source, Mapping):
        uploads.update(read_files(source))
        display = filename or "<upload>"
    elif isinstance(source, (str, os.PathLike)) and not files:
        display = filename or str(source)
        uploads.update(_gather_from_disk(Path(source), display))
    elif source is not None:
        display, data, _ = read_bytes(source, filename)
        uploads[basename(display) if display != "<bytes>" else "record.hea"] = data
    else:
        display = filename or "<upload>"
    if files:
        for name, data in read_files(files).items():
            if name in uploads and uploads[name] != data:
                raise RecordError(name, "given twice with different contents")
            uploads[name] = data
    return read_wfdb_files(uploads, display, strict=strict)


def read_wfdb_files(files: Mapping[str, bytes], display: str = "<upload>", *, strict: bool = False) -> Ecg:
    """Read the one WFDB record among ``files`` (``{base name: bytes}``); see `read_wfdb`."""
    # Headers are parsed as text: a map of one (`ecglens.formats.mapped`) is read as bytes; signal files stay maps.
    files = {name: bytes(data) if name.lower().endswith(".hea") else data for name, data in files.items()}
    header_name = _pick_header(files, display)
    header = _parse_header(files[header_name], header_name)
    notes = _header_warnings(header, header_name, strict)
    headers = {header_name: header}
    for segment in header.segments:
        seg_file = f"{segment}.hea"
        if seg_file not in files:
            raise RecordError(header_name, f"names segment {segment}, but {seg_file} is not in the upload")
        headers[seg_file] = _parse_header(files[seg_file], seg_file)
    needed = [name for h in headers.values() for name in h.signal_files]
    absent = sorted(set(needed) - set(files))
    if absent:
        others = sorted(set(files) - set(headers)) or ["none"]
        raise RecordError(
            header_name,
            f"names signal file {', '.join(absent)}, which is not in the upload "
            f"(other files: {', '.join(others)}); header and signal files must "
            "belong to the same record",
        )
    if header.n_signals == 0:
        raise RecordError(header_name, "header declares no signals")
    if header.n_samples:
        check_size(
            header_name,
            header.n_signals,
            header.n_samples * max(header.samples_per_frame or [1]),
            header.fs * max(header.samples_per_frame or [1]),
        )
    if not header.segments:
        _check_file_sizes(header, files, header_name)

    stem = header_name[: -len(".hea")]
    with tempfile.TemporaryDirectory(prefix="ecglens-wfdb-") as folder:
        for name, h in headers.items():
            Path(folder, f"{name[: -len('.hea')]}.hea").write_text(h.text, encoding="ascii")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast = (
                    None
                    if header.segments
                    else _read_format16(os.path.join(folder, stem), files, header_name, strict, notes)
                )
                if fast is not None:
                    channels, fs, labels, units, extra = fast
                else:
                    for name in set(needed):
                        Path(folder, name).write_bytes(files[name])
                    if header.segments:
                        channels, fs, labels, units, extra = _read_multi_segment(os.path.join(folder, stem))
                    else:
                        channels, fs, labels, units, extra = _read_single(
                            os.path.join(folder, stem), header, header_name, strict, notes
                        )
        except RecordError:
            raise
        except Exception as exc:  # noqa: BLE001 - wfdb's own errors on files that do not fit their header
            raise RecordError(
                header_name, f"could not decode the signal files ({', '.join(sorted(set(needed)))}): {describe(exc)}"
            ) from exc

    meta = _metadata(header, header_name, sorted({*headers, *needed}))
    meta.update(extra)
    if notes:
        meta["warnings"] = notes
    return build_ecg(
        channels,
        fs,
        labels,
        units,
        filename=header_name,
        fmt="WFDB",
        name=header.record_name,
        metadata=meta,
        drop_non_voltage=True,
    )


def _header_warnings(header: _Header, filename: str, strict: bool) -> list[str]:
    """What in a readable header departs from the WFDB specification: warnings, or with ``strict`` a refusal."""
    notes = []
    if header.unparsed_datetime:
        notes.append(
            f"base time / date {' '.join(header.unparsed_datetime)!r} on the record line is in no "
            "spelling this reader knows; it is kept as written (raw_datetime) and not used"
        )
    for number in header.no_initial_value:
        notes.append(
            f"signal line {number} ends before its initial value, so it has no checksum either: the "
            "signal file could not be verified against the header"
        )
    if strict and notes:
        raise RecordError(filename, f"{notes[0]} (strict reading)")
    return notes


def _check_file_sizes(header: _Header, files: Mapping[str, bytes], header_name: str) -> None:
    """A signal file too short for the samples its header declares is truncated or belongs to another record."""
    if not header.n_samples:
        return
    need: dict[str, float] = {}
    for name, fmt, spf, offset in zip(
        header.signal_files, header.formats, header.samples_per_frame, header.byte_offsets
    ):
        bits = _BITS_PER_SAMPLE[fmt]
        if bits is None:
            return
        need[name] = need.get(name, offset * 8.0) + header.n_samples * spf * bits
    for name, bits in need.items():
        size, wanted = len(files[name]), int(bits // 8)
        if size < wanted:
            raise RecordError(
                header_name,
                f"signal file {name} holds {size} bytes but the header's "
                f"{header.n_samples} samples need {wanted}: the file is truncated or "
                "belongs to another record",
            )


def _check_checksums(
    record: Any, actual: list[int], labels: list[str], filename: str, strict: bool, notes: list[str] | None
) -> None:
    """Compare the header's checksums with the samples' (``actual``): a mismatch is a note, or with ``strict``
    a refusal; a header checksum of 0 is named as the placeholder some datasets write."""
    for i, (want, got) in enumerate(zip(record.checksum, actual)):
        if want is None or int(want) % 65536 == int(got) % 65536:
            continue
        label = labels[i] or str(i + 1)
        if strict:
            raise RecordError(
                filename,
                f"checksum mismatch for signal {label} ({record.file_name[i]}): "
                "the signal file does not belong to this header, or is corrupt",
            )
        if notes is None:
            continue
        if int(want) == 0:
            notes.append(
                f"signal {label} ({record.file_name[i]}): the header's checksum is 0, a placeholder "
                f"some datasets write (the samples sum to {int(got) % 65536}); not verified"
            )
        else:
            notes.append(
                f"signal {label} ({record.file_name[i]}): checksum mismatch (header {int(want)}, "
                f"samples {int(got) % 65536}); the signal file may be corrupt or belong to another "
                "record"
            )


def _read_format16(
    record_path: str, files: Mapping[str, bytes], filename: str, strict: bool, notes: list[str] | None
) -> tuple[list[Any], float, list[str], list[str], dict[str, Any]] | None:
    """The common case without wfdb's decoder: one signal file of interleaved format-16 samples, one sample per
    frame, no skew. The samples are a view into the uploaded bytes and each channel is converted on its own
    when `build_ecg` takes it (`LazyChannel`), so a record costs its float32 result and one channel at a time
    (wfdb decodes every channel to int64 and then float64 first: ~8x the file). None when the header asks for
    anything else, and wfdb reads it."""
    import wfdb

    record = wfdb.rdheader(record_path)  # wfdb's reading of the header: gains, baselines, units as it has them
    n_sig, n = int(record.n_sig or 0), int(record.sig_len or 0)
    names = list(record.file_name or [])
    if not n_sig or not n or len(set(names)) != 1 or names[0] not in files:
        return None
    if any(str(f) != "16" for f in record.fmt or [None]):
        return None
    if any(int(s or 1) != 1 for s in record.samps_per_frame or [1]) or any(int(s or 0) for s in record.skew or []):
        return None
    offsets = {int(o or 0) for o in (record.byte_offset or [0])}
    gains, baselines = list(record.adc_gain or []), list(record.baseline or [])
    if len(offsets) != 1 or len(gains) != n_sig or len(baselines) != n_sig:
        return None
    if any(not (g and np.isfinite(g) and g > 0) for g in gains) or any(b is None for b in baselines):
        return None
    offset, data = offsets.pop(), files[names[0]]
    if len(data) < offset + 2 * n * n_sig:
        return None  # wfdb names what is short
    digital = np.frombuffer(data, dtype="<i2", count=n * n_sig, offset=offset).reshape(n, n_sig)
    labels = [str(name) if name else "" for name in (record.sig_name or [""] * n_sig)]
    # Every pass goes over the frames in blocks and releases each block's pages when ``data`` is a map of the
    # file (`ecglens.formats.mapped`), so at most one block of the file is resident beside the result.
    frame_bytes = 2 * n_sig
    rows = max(1, CHUNK_BYTES // frame_bytes)
    blocks = [(a, min(n, a + rows)) for a in range(0, n, rows)]
    if record.checksum:
        sums = np.zeros(n_sig, dtype=np.int64)
        for a, b in blocks:
            sums += digital[a:b].sum(axis=0, dtype=np.int64)
            release(data, offset + a * frame_bytes, offset + b * frame_bytes)
        _check_checksums(record, [int(x) for x in sums], labels, filename, strict, notes)

    def channel(j: int, out: np.ndarray) -> np.ndarray:
        for a, b in blocks:
            column = digital[a:b, j]
            out[a:b] = column
            if int(column.min()) == _FORMAT16_INVALID:  # wfdb's invalid sample: NaN, interpolated by build_ecg
                out[a:b][column == _FORMAT16_INVALID] = np.nan
            release(data, offset + a * frame_bytes, offset + b * frame_bytes)
        out -= np.float32(baselines[j])
        out /= np.float32(gains[j])
        return out

    units = [str(u) if u else "" for u in (record.units or [""] * n_sig)]
    return [LazyChannel(n, lambda out, j=j: channel(j, out)) for j in range(n_sig)], float(record.fs), labels, units, {}


_FORMAT16_INVALID = -32768


def _read_single(
    record_path: str, header: _Header, filename: str, strict: bool = False, notes: list[str] | None = None
) -> tuple[list[np.ndarray], float, list[str], list[str], dict[str, Any]]:
    """Digital samples, checksums verified, converted to physical units and brought to one rate; a checksum
    that does not match is appended to ``notes`` (refused with ``strict``)."""
    import wfdb

    record = wfdb.rdrecord(record_path, physical=False, smooth_frames=False)
    spf = [int(s or 1) for s in (record.samps_per_frame or [1] * record.n_sig)]
    digital = record.e_d_signal
    if digital is None or len(digital) != record.n_sig:
        raise RecordError(filename, "no samples could be read from the signal files")
    for i, x in enumerate(digital):
        if record.sig_len and len(x) != record.sig_len * spf[i]:
            raise RecordError(
                filename,
                f"signal {i + 1} has {len(x)} samples, header declares "
                f"{record.sig_len * spf[i]}: the signal file is truncated or "
                "does not belong to this header",
            )
    labels = [str(name) if name else "" for name in (record.sig_name or [""] * record.n_sig)]
    if record.checksum:
        _check_checksums(record, record.calc_checksum(expanded=True), labels, filename, strict, notes)
    physical = record.dac(expanded=True, return_res=64)
    units = [str(u) if u else "" for u in (record.units or [""] * record.n_sig)]
    top = max(spf)
    channels: list[np.ndarray] = []
    missing: dict[str, int] = {}
    for i, x in enumerate(physical):
        x = np.asarray(x, dtype=np.float64)
        if spf[i] != top:
            # Fill gaps at the channel's own rate first: NaN would spread through the polyphase filter.
            x, n_missing = fill_missing(x, labels[i] or str(i + 1), filename)
            if n_missing:
                missing[labels[i]] = n_missing
            x = resample_poly(x, top, spf[i])
        channels.append(x)
    extra: dict[str, Any] = {}
    if top > 1 and len(set(spf)) > 1:
        extra["resampled_channels"] = {
            labels[i]: f"{record.fs * spf[i]:g} Hz -> {record.fs * top:g} Hz" for i in range(len(spf)) if spf[i] != top
        }
    if top > 1:  # annotation sample numbers count frames, not samples at the resampled rate
        extra["frame_fs"] = float(record.fs)
    if missing:
        extra["missing_samples_before_resampling"] = missing
    return channels, float(record.fs) * top, labels, units, extra


def _read_multi_segment(record_path: str) -> tuple[list[np.ndarray], float, list[str], list[str], dict[str, Any]]:
    """Multi-segment records: wfdb joins the segments (gaps and absent channels become NaN)."""
    import wfdb

    record = wfdb.rdrecord(record_path, physical=True, smooth_frames=True, return_res=64)
    signal = np.asarray(record.p_signal, dtype=np.float64)
    labels = [str(name) if name else "" for name in (record.sig_name or [""] * signal.shape[1])]
    units = [str(u) if u else "" for u in (record.units or [""] * signal.shape[1])]
    return (
        [signal[:, i] for i in range(signal.shape[1])],
        float(record.fs),
        labels,
        units,
        {"segments": int(getattr(record, "n_seg", 0) or 0)},
    )


def _metadata(header: _Header, header_name: str, source_files: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = parse_comments(header.comments)
    meta["record_name"] = header.record_name
    meta["source_files"] = source_files
    if header.date:
        meta["date"] = header.date
    if header.time:
        meta["time"] = header.time
    if header.raw_datetime:
        meta["raw_datetime"] = header.raw_datetime
    if header.record_name != header_name[: -len(".hea")]:
        meta["header_file"] = header_name
    return meta


def write_wfdb(
    ecg: Ecg,
    directory: str | os.PathLike[str] | None = None,
    *,
    record_name: str | None = None,
    fmt: str = "16",
) -> dict[str, bytes]:
    """Write ``ecg`` as a WFDB record (header + one signal file) and return ``{file name: bytes}``.

    Parameters
    ----------
    ecg : Ecg
        The record; samples are stored with a per-lead gain chosen by wfdb to use the format's full range.
    directory : path, optional
        Folder to write the files into as well. Default: None (only return them).
    record_name : str, optional
        WFDB record name (letters, digits, ``_``, ``-``). Default: ``ecg.name`` cleaned, or ``"record"``.
    fmt : str
        WFDB storage format for every signal (``"16"``, ``"212"``, ``"24"``, ``"32"``...). Default: ``"16"``.

    Returns
    -------
    dict mapping ``"<record_name>.hea"`` and ``"<record_name>.dat"`` to their bytes.
    """
    import wfdb

    name = re.sub(r"[^\w\-]", "_", record_name or ecg.name or "record").strip("_") or "record"
    meta = ecg.metadata
    comments = [str(c) for c in meta.get("comments", [])]
    for key, label in (("age", "Age"), ("sex", "Sex")):
        if meta.get(key) is not None and not any(c.lower().startswith(f"{key}:") for c in comments):
            comments.append(f"{label}: {meta[key]}")
    if meta.get("dx") and not any(c.lower().startswith("dx:") for c in comments):
        comments.append("Dx: " + ",".join(map(str, meta["dx"])))
    base: dict[str, Any] = {}
    try:
        if meta.get("date"):
            base["base_date"] = date.fromisoformat(str(meta["date"]))
        if meta.get("time"):
            base["base_time"] = time.fromisoformat(str(meta["time"]))
    except ValueError:
        base = {}
    with tempfile.TemporaryDirectory(prefix="ecglens-wfdb-") as folder:
        wfdb.wrsamp(
            name,
            fs=ecg.fs,
            units=["mV"] * ecg.n_leads,
            sig_name=list(ecg.leads),
            p_signal=ecg.signal.T.astype(np.float64),
            fmt=[fmt] * ecg.n_leads,
            comments=comments or None,
            write_dir=folder,
            **base,
        )
        out = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}
    if directory is not None:
        for file_name, data in out.items():
            Path(directory, file_name).write_bytes(data)
    return out
