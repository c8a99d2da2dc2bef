"""MIT-BIH Arrhythmia Database: the inter-patient DS1 / DS2 split, AAMI beat classes and labelled 10-s windows.

Records are read with `wfdb.rdrecord` / `wfdb.rdann` from ``../shared/data/mitdb`` (or ``$ECGLENS_SHARED_DATA/mitdb``)
and never copied into the repository. `load_windows` cuts them into classifier inputs with multi-label targets and
keeps, per window, the beats (sample positions and symbols) and the rhythm, which the explainer benchmarks need
(e.g. "windows with exactly one ventricular beat" and that beat's time for a pointing game).

References: Moody & Mark, IEEE Eng. Med. Biol. Mag. 20(3):45-50 (2001); de Chazal, O'Dwyer & Reilly, IEEE TBME
51(7):1196-1206 (2004) for the DS1 / DS2 split; ANSI/AAMI EC57 for the beat classes; PhysioNet, Goldberger et
al., Circulation 101(23):e215-e220 (2000). Licence of the data: ODC-By 1.0.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecglens.ecg import Ecg, normalize_lead

# Inter-patient split (de Chazal et al. 2004); the four paced records 102, 104, 107, 217 are in neither.
DS1: tuple[str, ...] = (
    "101",
    "106",
    "108",
    "109",
    "112",
    "114",
    "115",
    "116",
    "118",
    "119",
    "122",
    "124",
    "201",
    "203",
    "205",
    "207",
    "208",
    "209",
    "215",
    "220",
    "223",
    "230",
)
DS2: tuple[str, ...] = (
    "100",
    "103",
    "105",
    "111",
    "113",
    "117",
    "121",
    "123",
    "200",
    "202",
    "210",
    "212",
    "213",
    "214",
    "219",
    "221",
    "222",
    "228",
    "231",
    "232",
    "233",
    "234",
)
PACED: tuple[str, ...] = ("102", "104", "107", "217")

# AAMI EC57 beat classes over the MIT-BIH beat annotation symbols.
AAMI_CLASSES: dict[str, tuple[str, ...]] = {
    "N": ("N", "L", "R", "e", "j"),
    "S": ("A", "a", "J", "S"),
    "V": ("V", "E"),
    "F": ("F",),
    "Q": ("/", "f", "Q"),
}
BEAT_SYMBOLS: frozenset[str] = frozenset(s for group in AAMI_CLASSES.values() for s in group)

# The built-in classifier's outputs, in this order (the columns of `MitdbWindows.Y`).
CLASS_NAMES: tuple[str, ...] = (
    "normal",
    "ventricular ectopy",
    "supraventricular ectopy",
    "atrial fibrillation/flutter",
)
AF_RHYTHMS: tuple[str, ...] = ("AFIB", "AFL")
FS_HZ = 360.0
_CACHE_VERSION = 1


def default_data_dir() -> Path:
    """The folder holding the MIT-BIH records (``100.hea``, ``100.dat``, ``100.atr``, ...).

    ``$ECGLENS_SHARED_DATA/mitdb`` when that variable is set (it names the shared ``data`` folder, as in
    tests/conftest.py), else ``../shared/data/mitdb`` beside the repository. Raises FileNotFoundError naming the
    folders looked in when neither exists.
    """
    candidates = []
    env = os.environ.get("ECGLENS_SHARED_DATA")
    if env:
        candidates += [Path(env) / "mitdb", Path(env)]
    repo = Path(__file__).resolve().parents[3]
    candidates.append(repo.parent / "shared" / "data" / "mitdb")
    for path in candidates:
        if (path / "100.hea").exists():
            return path
    raise FileNotFoundError(
        "MIT-BIH records not found in "
        + ", ".join(str(p) for p in candidates)
        + " (set ECGLENS_SHARED_DATA to the shared data folder)"
    )


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecglens"


@dataclass
class MitdbRecord:
    """One whole MIT-BIH record with its beat and rhythm annotations.

    Attributes
    ----------
    name : str
        Record name ("208").
    signal : np.ndarray
        float32 ``[len(leads), samples]`` in mV at `fs` Hz (360).
    fs : float
        Sampling rate in Hz.
    leads : tuple of str
        The lead names asked for (rows of `signal`).
    source_leads : tuple of str
        The lead actually recorded in each row: the requested lead when the record has it, else the first unused
        channel (e.g. record 100 has V5 where V1 was asked for; 114 has MLII in its second channel and is mapped
        by name).
    beat_sample : np.ndarray
        int64 ``[beats]`` sample index of each beat annotation (only beat symbols, see `BEAT_SYMBOLS`).
    beat_symbol : np.ndarray
        ``<U1`` ``[beats]`` the MIT-BIH beat symbol (N, L, R, e, j, A, a, J, S, V, E, F, /, f, Q).
    rhythm_sample, rhythm_label : np.ndarray
        Rhythm changes: from ``rhythm_sample[k]`` on, the rhythm is ``rhythm_label[k]`` (without the leading "(",
        e.g. "N", "AFIB", "AFL", "B", "VT"). Samples before the first change have rhythm "".
    flutter_wave_sample : np.ndarray
        int64 sample index of ventricular flutter wave annotations ("!"), which are not beats.
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    source_leads: tuple[str, ...]
    beat_sample: np.ndarray
    beat_symbol: np.ndarray
    rhythm_sample: np.ndarray
    rhythm_label: np.ndarray
    flutter_wave_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    def rhythm_per_sample(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """``(codes, labels)``: int16 ``[samples]`` index into ``labels`` of the rhythm in effect at each sample."""
        labels = ("",) + tuple(sorted(set(self.rhythm_label.tolist())))
        codes = np.zeros(self.n_samples, dtype=np.int16)
        for k, start in enumerate(self.rhythm_sample):
            end = self.rhythm_sample[k + 1] if k + 1 < len(self.rhythm_sample) else self.n_samples
            codes[max(0, int(start)) : max(0, int(end))] = labels.index(str(self.rhythm_label[k]))
        return codes, labels

    def labels(self, start: int, n: int) -> np.ndarray:
        """float32 ``[4]`` targets of the window ``[start, start + n)`` (see `load_windows` for the definition)."""
        codes, names = self.rhythm_per_sample()
        return _window_labels(self, start, n, codes, names)


def load_record(name: str, data_dir: str | Path | None = None, *, leads: Sequence[str] = ("MLII", "V1")) -> MitdbRecord:
    """Read one MIT-BIH record and its reference annotations (``.atr``).

    Parameters
    ----------
    name : str
        Record name, e.g. "100".
    data_dir : str or Path or None
        Folder with the WFDB files. Default: `default_data_dir()`.
    leads : sequence of str
        Leads to return, in order, matched by name; a lead the record lacks is replaced by the first channel not
        otherwise used (recorded in `MitdbRecord.source_leads`). Default: ("MLII", "V1").

    Raises
    ------
    FileNotFoundError
        When the record's files are not in ``data_dir`` (the message names the path).
    ValueError
        When a file is there but cannot be read (empty or corrupt; the message names the record's path).
    """
    import wfdb

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    base = data_dir / str(name)
    if not base.with_suffix(".hea").exists():
        raise FileNotFoundError(f"{base}.hea: MIT-BIH record {name} not found")
    try:
        rec = wfdb.rdrecord(str(base))
        ann = wfdb.rdann(str(base), "atr")
    except FileNotFoundError:
        raise
    except Exception as exc:  # wfdb raises IndexError / ValueError on an empty or corrupt header or annotation
        raise ValueError(f"{base}: MIT-BIH record {name} cannot be read ({type(exc).__name__}: {exc})") from None
    channels = [normalize_lead(s) for s in rec.sig_name]
    wanted = [normalize_lead(lead) for lead in leads]
    rows: list[int] = []
    for lead in wanted:  # by name first
        rows.append(channels.index(lead) if lead in channels else -1)
    for i, row in enumerate(rows):  # then stand-ins: the first channel not used by name
        if row < 0:
            free = [c for c in range(len(channels)) if c not in rows]
            if not free:
                raise ValueError(f"{base}.hea: no channel left to stand in for lead {wanted[i]}")
            rows[i] = free[0]
    signal = np.nan_to_num(rec.p_signal[:, rows].T.astype(np.float32))
    symbols = np.asarray(ann.symbol)
    samples = np.asarray(ann.sample, dtype=np.int64)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    aux = np.asarray([(a or "").strip("\x00 ") for a in ann.aux_note])
    is_rhythm = (symbols == "+") & np.char.startswith(aux.astype(str), "(")
    return MitdbRecord(
        name=str(name),
        signal=signal,
        fs=float(rec.fs),
        leads=tuple(wanted),
        source_leads=tuple(channels[r] for r in rows),
        beat_sample=samples[is_beat],
        beat_symbol=symbols[is_beat].astype("<U1"),
        rhythm_sample=samples[is_rhythm],
        rhythm_label=np.char.lstrip(aux[is_rhythm].astype(str), "("),
        flutter_wave_sample=samples[symbols == "!"],
    )


def _window_labels(rec: MitdbRecord, start: int, n: int, codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    lo, hi = np.searchsorted(rec.beat_sample, [start, start + n])
    symbols = set(rec.beat_symbol[lo:hi].tolist())
    af_codes = [names.index(r) for r in AF_RHYTHMS if r in names]
    af = bool(af_codes) and float(np.isin(codes[start : start + n], af_codes).mean()) > 0.5
    v = bool(symbols & set(AAMI_CLASSES["V"]))
    s = bool(symbols & set(AAMI_CLASSES["S"]))
    fl_lo, fl_hi = np.searchsorted(rec.flutter_wave_sample, [start, start + n])
    normal = bool(symbols) and symbols <= set(AAMI_CLASSES["N"]) and not af and fl_hi == fl_lo
    return np.asarray([normal, v, s, af], dtype=np.float32)


@dataclass
class MitdbWindows:
    """Labelled fixed-length windows cut from MIT-BIH records.

    Attributes
    ----------
    X : np.ndarray
        float32 ``[n, leads, samples]`` in mV at `fs` Hz (``[n, 2, 3600]`` for 10-s, 2-lead windows).
    Y : np.ndarray
        float32 ``[n, 4]`` multi-label targets, columns as `CLASS_NAMES` (see `load_windows`).
    record : np.ndarray
        ``<U8`` ``[n]`` source record of each window.
    start : np.ndarray
        int64 ``[n]`` first sample of each window in its record.
    rhythm : np.ndarray
        ``[n]`` the rhythm covering most of the window ("N", "AFIB", "B", ...; "" before the first annotation).
    beat_offsets : np.ndarray
        int64 ``[n + 1]``: the beats of window ``i`` are ``beat_sample[beat_offsets[i]:beat_offsets[i + 1]]``.
    beat_sample : np.ndarray
        int64 beat positions in samples relative to the window's start (all windows concatenated).
    beat_symbol : np.ndarray
        ``<U1`` MIT-BIH beat symbols, aligned with `beat_sample`.
    source_leads : np.ndarray
        ``[n]`` the leads actually recorded, comma-joined ("MLII,V1"; "MLII,V5" for record 100).
    fs : float
        Sampling rate in Hz. Default: 360.
    leads : tuple of str
        Lead names of the rows of each window (the requested ones). Default: ("MLII", "V1").
    """

    X: np.ndarray
    Y: np.ndarray
    record: np.ndarray
    start: np.ndarray
    rhythm: np.ndarray
    beat_offsets: np.ndarray
    beat_sample: np.ndarray
    beat_symbol: np.ndarray
    source_leads: np.ndarray
    fs: float = FS_HZ
    leads: tuple[str, ...] = ("MLII", "V1")
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def beats(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(samples, symbols)`` of the beats in window ``i``; samples relative to the window's start."""
        a, b = self.beat_offsets[i], self.beat_offsets[i + 1]
        return self.beat_sample[a:b], self.beat_symbol[a:b]

    def count_beats(self, symbols: Sequence[str]) -> np.ndarray:
        """int64 ``[n]``: how many beats with one of ``symbols`` each window holds (e.g. ``("V", "E")``)."""
        hit = np.isin(self.beat_symbol, list(symbols)).astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(hit)])
        return cum[self.beat_offsets[1:]] - cum[self.beat_offsets[:-1]]

    def ecg(self, i: int) -> Ecg:
        """Window ``i`` as an `Ecg` named ``"<record>@<start sample>"`` (metadata: record, start, beats)."""
        samples, symbols = self.beats(i)
        meta = {
            "record": str(self.record[i]),
            "start_sample": int(self.start[i]),
            "rhythm": str(self.rhythm[i]),
            "beat_samples": samples.tolist(),
            "beat_symbols": symbols.tolist(),
            "source_leads": str(self.source_leads[i]),
            "source": "mitdb",
        }
        return Ecg(
            signal=self.X[i], fs=self.fs, leads=self.leads, metadata=meta, name=f"{self.record[i]}@{int(self.start[i])}"
        )

    def subset(self, index: np.ndarray | Sequence[int]) -> MitdbWindows:
        """The windows at ``index`` (integer indices or a boolean mask), beats carried along."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        parts = [np.arange(self.beat_offsets[i], self.beat_offsets[i + 1]) for i in index]
        flat = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        counts = np.asarray([len(p) for p in parts], dtype=np.int64)
        return MitdbWindows(
            X=self.X[index],
            Y=self.Y[index],
            record=self.record[index],
            start=self.start[index],
            rhythm=self.rhythm[index],
            beat_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            beat_sample=self.beat_sample[flat],
            beat_symbol=self.beat_symbol[flat],
            source_leads=self.source_leads[index],
            fs=self.fs,
            leads=self.leads,
            class_names=self.class_names,
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            k: getattr(self, k)
            for k in (
                "X",
                "Y",
                "record",
                "start",
                "rhythm",
                "beat_offsets",
                "beat_sample",
                "beat_symbol",
                "source_leads",
            )
        }


def record_windows(rec: MitdbRecord, window: int, hop: int) -> MitdbWindows:
    """All full windows of ``window`` samples every ``hop`` samples of one record, labelled."""
    starts = np.arange(0, rec.n_samples - window + 1, hop, dtype=np.int64)
    codes, names = rec.rhythm_per_sample()
    X = np.stack([rec.signal[:, a : a + window] for a in starts]).astype(np.float32)
    Y = np.stack([_window_labels(rec, int(a), window, codes, names) for a in starts])
    rhythm = []
    offsets = [0]
    beat_parts, symbol_parts = [], []
    for a in starts:
        counts = np.bincount(codes[a : a + window], minlength=len(names))
        rhythm.append(names[int(np.argmax(counts))])
        lo, hi = np.searchsorted(rec.beat_sample, [a, a + window])
        beat_parts.append(rec.beat_sample[lo:hi] - a)
        symbol_parts.append(rec.beat_symbol[lo:hi])
        offsets.append(offsets[-1] + hi - lo)
    n = len(starts)
    return MitdbWindows(
        X=X,
        Y=Y,
        record=np.full(n, rec.name, dtype="<U8"),
        start=starts,
        rhythm=np.asarray(rhythm, dtype="<U8"),
        beat_offsets=np.asarray(offsets, dtype=np.int64),
        beat_sample=np.concatenate(beat_parts).astype(np.int64) if n else np.zeros(0, np.int64),
        beat_symbol=np.concatenate(symbol_parts).astype("<U1") if n else np.zeros(0, "<U1"),
        source_leads=np.full(n, ",".join(rec.source_leads), dtype="<U16"),
        fs=rec.fs,
        leads=rec.leads,
    )


def concat_windows(parts: Sequence[MitdbWindows]) -> MitdbWindows:
    """Windows of several records, one after the other."""
    if not parts:
        raise ValueError("no windows to concatenate")
    offsets, total = [np.zeros(1, np.int64)], 0
    for p in parts:
        offsets.append(p.beat_offsets[1:] + total)
        total += int(p.beat_offsets[-1])
    first = parts[0]
    return MitdbWindows(
        X=np.concatenate([p.X for p in parts]),
        Y=np.concatenate([p.Y for p in parts]),
        record=np.concatenate([p.record for p in parts]),
        start=np.concatenate([p.start for p in parts]),
        rhythm=np.concatenate([p.rhythm for p in parts]),
        beat_offsets=np.concatenate(offsets),
        beat_sample=np.concatenate([p.beat_sample for p in parts]),
        beat_symbol=np.concatenate([p.beat_symbol for p in parts]),
        source_leads=np.concatenate([p.source_leads for p in parts]),
        fs=first.fs,
        leads=first.leads,
    )


def load_windows(
    records: Sequence[str],
    data_dir: str | Path | None = None,
    *,
    window_s: float = 10.0,
    hop_s: float | None = None,
    leads: Sequence[str] = ("MLII", "V1"),
    cache_dir: str | Path | None = None,
    cache: bool = True,
) -> MitdbWindows:
    """Labelled windows of MIT-BIH records.

    Each record is cut into full windows of ``window_s`` seconds every ``hop_s`` seconds (the tail shorter than a
    window is dropped). Targets, one column per `CLASS_NAMES` entry, for the window ``[start, start + window)``:

    - "ventricular ectopy": at least one V or E beat annotation inside the window.
    - "supraventricular ectopy": at least one A, a, J or S beat annotation inside the window.
    - "atrial fibrillation/flutter": rhythm (AFIB or (AFL in effect over more than 50% of the window's samples.
    - "normal": the window holds at least one beat, every beat in it is of AAMI class N (N, L, R, e, j: bundle
      branch block beats count as normal beats, as in AAMI EC57), it is not AF/flutter by the rule above, and it
      has no ventricular flutter wave ("!"). Windows with a fusion (F) or unclassifiable (Q, /, f) beat and no
      ectopy are therefore all-zero.

    Parameters
    ----------
    records : sequence of str
        Record names, e.g. `DS1`.
    data_dir : str or Path or None
        Folder with the WFDB files. Default: `default_data_dir()`.
    window_s : float
        Window length in seconds. Default: 10.0 (3600 samples).
    hop_s : float or None
        Step between window starts in seconds. Default: None (= ``window_s``, no overlap).
    leads : sequence of str
        Leads per window. MLII is found by name (record 114 stores it second); a lead a record lacks is stood in
        for by its other channel (V1 by V2 in 103 and 117, V4 in 124, V5 in 100 and 123; see ``source_leads``).
        Default: ("MLII", "V1").
    cache_dir : str or Path or None
        Where the ``.npz`` cache goes. Default: ``$XDG_CACHE_HOME/ecglens`` or ``~/.cache/ecglens``.
    cache : bool
        Read / write the cache. Default: True.

    Returns
    -------
    MitdbWindows
        ``X`` float32 ``[n, len(leads), window_s * 360]`` in mV, ``Y`` float32 ``[n, 4]``, and per window the
        record, start sample, rhythm and beats.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    hop_s = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window_s and hop_s must be positive, got {window_s} and {hop_s}")
    leads = tuple(normalize_lead(lead) for lead in leads)
    key = json.dumps(
        {
            "v": _CACHE_VERSION,
            "records": [str(r) for r in records],
            "window_s": window_s,
            "hop_s": hop_s,
            "leads": leads,
            "data": str(data_dir.resolve()),
        },
        sort_keys=True,
    )
    path = (
        Path(cache_dir or _default_cache_dir()) / "mitdb" / f"windows-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    )
    if cache and path.exists():
        try:
            with np.load(path) as z:
                return MitdbWindows(**{k: z[k] for k in z.files}, leads=leads)
        except (OSError, ValueError, KeyError):
            pass  # a truncated or stale cache file is rebuilt below
    parts = []
    for name in records:
        rec = load_record(name, data_dir, leads=leads)
        window = int(round(window_s * rec.fs))
        parts.append(record_windows(rec, window, max(1, int(round(hop_s * rec.fs)))))
    out = concat_windows(parts)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **out._arrays())
        os.replace(tmp, path)
    return out
