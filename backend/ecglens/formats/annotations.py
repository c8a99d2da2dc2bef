"""Reference annotations beside a WFDB record (``100.atr``, ``100.qrs``, ...): beat labels and rhythm episodes.

Decoding is wfdb-python's `wfdb.rdann` (MIT and WFDB-format annotation files). What this module adds: the bytes
of an upload are read from a private temporary folder, beats get their AAMI EC57 class, the rhythm annotations
(``+`` with ``(AFIB``, ``(N``, ...) become episodes that last until the next rhythm change or the end of the record,
and anything a reader cannot use is a `RecordError` naming the file, never a silent drop.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ecglens.errors import RecordError
from ecglens.formats._guard import describe

# Annotator names PhysioNet databases use as file extensions (reference beats, detector output, rhythm, ST).
ANNOTATION_EXTENSIONS: tuple[str, ...] = (
    "atr",
    "ari",
    "ann",
    "all",
    "man",
    "qrs",
    "ecg",
    "pu",
    "pu0",
    "pu1",
    "apn",
    "st",
    "sta",
    "stb",
    "stc",
    "wqrs",
    "gqrs",
    "sqrs",
    "xqrs",
    "jqrs",
    "cnt",
    "event",
    "arou",
    "resp",
    "trigger",
)

# AAMI EC57 classes over every WFDB beat code (MIT-BIH's and the rarer ones: B, r, n, ?).
AAMI_CLASS: dict[str, str] = {
    "N": "N",
    "L": "N",
    "R": "N",
    "B": "N",
    "e": "N",
    "j": "N",
    "A": "S",
    "a": "S",
    "J": "S",
    "S": "S",
    "n": "S",
    "V": "V",
    "E": "V",
    "r": "V",
    "F": "F",
    "/": "Q",
    "f": "Q",
    "Q": "Q",
    "?": "Q",
}
RHYTHM_NAMES: dict[str, str] = {
    "AB": "atrial bigeminy",
    "AFIB": "atrial fibrillation",
    "AFL": "atrial flutter",
    "B": "ventricular bigeminy",
    "BII": "2° heart block",
    "IVR": "idioventricular rhythm",
    "N": "normal sinus rhythm",
    "NOD": "nodal rhythm",
    "P": "paced rhythm",
    "PREX": "pre-excitation (WPW)",
    "SBR": "sinus bradycardia",
    "SVTA": "SVT",
    "T": "ventricular trigeminy",
    "VFL": "ventricular flutter",
    "VT": "ventricular tachycardia",
}


def is_annotation_file(name: str) -> bool:
    """True for a file name whose extension is a known WFDB annotator (``100.atr``)."""
    return PurePath(name).suffix.lower().lstrip(".") in ANNOTATION_EXTENSIONS


@dataclass
class Annotations:
    """One annotation file's content, times in seconds from the record's start.

    beats : ``{"time_s", "symbol", "aami", "channel"}`` per beat annotation.
    rhythms : ``{"start_s", "end_s", "label", "name"}`` per rhythm episode (``label`` as written: ``AFIB``).
    events : every other annotation (noise, signal quality, comments): ``{"time_s", "symbol", "note"}``.
    warnings : what was read but looks wrong (annotations past the record's end).
    """

    filename: str
    annotator: str
    fs: float
    beats: list[dict[str, Any]] = field(default_factory=list)
    rhythms: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def beat_counts(self) -> dict[str, int]:
        """Beats per AAMI class (``{"N": 2239, "V": 1, ...}``), classes with none left out."""
        counts: dict[str, int] = {}
        for beat in self.beats:
            counts[beat["aami"]] = counts.get(beat["aami"], 0) + 1
        return counts

    def beats_between(self, start_s: float, end_s: float) -> list[dict[str, Any]]:
        """The beats annotated in ``[start_s, end_s)``."""
        return [b for b in self.beats if start_s <= b["time_s"] < end_s]

    def to_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "annotator": self.annotator,
            "fs": self.fs,
            "beats": self.beats,
            "rhythms": self.rhythms,
            "events": self.events,
            "beat_counts": self.beat_counts(),
            "warnings": self.warnings,
        }


def read_annotations(data: bytes, filename: str, fs: float, duration_s: float | None = None) -> Annotations:
    """Read one WFDB annotation file.

    Parameters
    ----------
    data : bytes
        The file's content.
    filename : str
        Its name; the extension is the annotator (``"100.atr"`` -> ``"atr"``).
    fs : float
        The record's frame rate in Hz (annotation sample numbers count frames), used unless the file states
        its own time resolution.
    duration_s : float, optional
        The record's length: annotations after it are counted in ``warnings``. Default: None (not checked).

    Raises
    ------
    RecordError
        The file is not a WFDB annotation file, or holds no annotations.
    """
    import wfdb

    path = PurePath(filename)
    annotator = path.suffix.lstrip(".")
    if not annotator:
        raise RecordError(filename, "an annotation file needs an annotator extension (.atr, .qrs, ...)")
    if not data:
        raise RecordError(filename, "annotation file is empty")
    # MIT-format annotations carry no signature, but always end with a zero word: without it, arbitrary bytes
    # would decode as annotations.
    if len(data) < 2 or len(data) % 2 or data[-2:] != b"\x00\x00":
        raise RecordError(
            filename, "not a WFDB annotation file: it does not end with the end-of-annotations marker (two zero bytes)"
        )
    with tempfile.TemporaryDirectory(prefix="ecglens-ann-") as folder:
        Path(folder, f"record.{annotator}").write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ann = wfdb.rdann(str(Path(folder, "record")), annotator)
        except Exception as exc:  # noqa: BLE001 - wfdb's own errors on bytes that are not annotations
            raise RecordError(filename, f"not a readable WFDB annotation file: {describe(exc)}") from exc
    samples = np.asarray(ann.sample, dtype=np.int64)
    if samples.size == 0:
        raise RecordError(filename, "annotation file holds no annotations")
    if np.any(samples < 0) or np.any(np.diff(samples) < 0):
        raise RecordError(filename, "annotation times are not in order: not a WFDB annotation file, or corrupt")
    rate = float(ann.fs) if getattr(ann, "fs", None) else float(fs)
    symbols = list(ann.symbol or [])
    notes = [str(n or "").strip("\x00 ") for n in (ann.aux_note or [""] * samples.size)]
    channels = list(ann.chan) if ann.chan is not None else [0] * samples.size
    out = Annotations(filename=path.name, annotator=annotator, fs=rate)
    current: dict[str, Any] | None = None
    for k, (sample, symbol) in enumerate(zip(samples.tolist(), symbols)):
        t = round(sample / rate, 4)
        if symbol in AAMI_CLASS:
            out.beats.append({"time_s": t, "symbol": symbol, "aami": AAMI_CLASS[symbol], "channel": int(channels[k])})
        elif symbol == "+" and notes[k].startswith("("):
            if current is not None:
                current["end_s"] = t
            label = notes[k][1:]
            current = {"start_s": t, "end_s": None, "label": label, "name": RHYTHM_NAMES.get(label, label)}
            out.rhythms.append(current)
        else:
            out.events.append({"time_s": t, "symbol": symbol, "note": notes[k]})
    end = duration_s if duration_s is not None else (samples[-1] / rate)
    if current is not None:
        current["end_s"] = round(float(end), 4)
    if duration_s is not None:
        late = int(np.sum(samples / rate > duration_s + 1e-9))
        if late:
            out.warnings.append(
                f"{late} annotation{'s' if late > 1 else ''} after the record's end "
                f"({duration_s:.1f} s): the file may belong to another record"
            )
    return out


def segment_coverage(annotations: list[Annotations], segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Which annotated beats (and rhythm) critical segments cover.

    Parameters
    ----------
    annotations : list of Annotations
        The record's annotation files.
    segments : list of dict
        Critical segments as `Segment.to_dict` writes them (``lead``, ``start_s``, ``end_s``, ...).

    Returns
    -------
    dict with ``segments`` (per segment, in order: ``beats`` [{file, time_s, symbol, aami}] whose annotation time
    falls in ``[start_s, end_s]``, and ``rhythm``, the episode label at the segment's middle or None),
    ``beat_counts`` (AAMI class -> covered beats, each beat once even when several segments cover it) and
    ``summary`` (one sentence).
    """
    out_segments = []
    covered: dict[tuple[str, float], str] = {}
    for seg in segments:
        a, b = float(seg["start_s"]), float(seg["end_s"])
        beats = []
        rhythm = None
        for ann in annotations:
            for beat in ann.beats:
                if a <= beat["time_s"] <= b:
                    beats.append(
                        {"file": ann.filename, "time_s": beat["time_s"], "symbol": beat["symbol"], "aami": beat["aami"]}
                    )
                    covered[(ann.filename, beat["time_s"])] = beat["aami"]
            mid = (a + b) / 2
            for episode in ann.rhythms:
                if rhythm is None and episode["start_s"] <= mid < episode["end_s"]:
                    rhythm = episode["label"]
        out_segments.append({"beats": beats, "rhythm": rhythm})
    counts: dict[str, int] = {}
    for aami in covered.values():
        counts[aami] = counts.get(aami, 0) + 1
    if counts:
        parts = ", ".join(f"{n} {c}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        total = sum(counts.values())
        summary = f"The critical segments cover {total} annotated beat{'s' if total > 1 else ''} ({parts})."
    else:
        summary = "The critical segments cover no annotated beat."
    return {"segments": out_segments, "beat_counts": counts, "summary": summary}
