"""The `Ecg` value type and lead-name normalisation.

An `Ecg` is what every reader returns and every explainer consumes: a float32 ``[leads, samples]`` array in
millivolts, its sampling rate in Hz, canonical lead names, and the header metadata kept apart from the signal
(so nothing from the header ever has to travel with the samples into logs or classifiers).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Canonical names, in the standard 12-lead order first, then Holter / Frank / MIT-BIH names.
STANDARD_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_CANONICAL = STANDARD_12 + ("MLI", "MLII", "MLIII", "V", "X", "Y", "Z")

# Folded spellings (upper-cased, spaces/underscores/dashes removed) -> canonical name.
_ALIASES: dict[str, str] = {name.upper(): name for name in _CANONICAL}
_ALIASES.update(
    {
        "LEADI": "I",
        "LEADII": "II",
        "LEADIII": "III",
        "DI": "I",
        "DII": "II",
        "DIII": "III",
        "L1": "I",
        "L2": "II",
        "L3": "III",
        "1": "I",
        "2": "II",
        "3": "III",
        "AVR": "aVR",
        "AVL": "aVL",
        "AVF": "aVF",
        "LEADAVR": "aVR",
        "LEADAVL": "aVL",
        "LEADAVF": "aVF",
        "-AVR": "aVR",
        "ML2": "MLII",
        "MLII": "MLII",
        "MLIII": "MLIII",
        "ML3": "MLIII",
        "ML1": "MLI",
        "VX": "X",
        "VY": "Y",
        "VZ": "Z",
        # IEEE 11073 MDC codes as used by HL7 aECG and DICOM.
        "MDCECGLEADI": "I",
        "MDCECGLEADII": "II",
        "MDCECGLEADIII": "III",
        "MDCECGLEADAVR": "aVR",
        "MDCECGLEADAVL": "aVL",
        "MDCECGLEADAVF": "aVF",
        **{f"MDCECGLEADV{i}": f"V{i}" for i in range(1, 7)},
        **{f"LEADV{i}": f"V{i}" for i in range(1, 7)},
        **{f"PRECORDIALV{i}": f"V{i}" for i in range(1, 7)},
    }
)

# A lead a model asks for may be stood in for by a close equivalent when the record lacks it.
LEAD_STAND_INS: dict[str, tuple[str, ...]] = {
    "MLII": ("II",),
    "II": ("MLII",),
    "MLI": ("I",),
    "I": ("MLI",),
    "MLIII": ("III",),
    "III": ("MLIII",),
}


def normalize_lead(name: str) -> str:
    """Return the canonical spelling of a lead name (``"lead ii"`` -> ``"II"``, ``"AVR"`` -> ``"aVR"``).

    Unknown names are returned stripped but otherwise unchanged, so nothing a user sent is lost.
    """
    stripped = str(name).strip()
    key = re.sub(r"[\s_\-.:]", "", stripped).upper()
    if key.startswith("-") and key[1:] in _ALIASES:
        key = key[1:]
    return _ALIASES.get(key, stripped)


@dataclass(frozen=True)
class Ecg:
    """One ECG record.

    Attributes
    ----------
    signal : np.ndarray
        float32 array of shape ``[leads, samples]`` in millivolts (mV).
    fs : float
        Sampling rate in Hz.
    leads : tuple of str
        Canonical lead names, one per row of ``signal`` (see `normalize_lead`).
    metadata : dict
        Header fields (record name, date, age, sex, diagnosis codes, comments, source format). Never mixed into
        the signal; services must not write it to logs. Default: empty.
    name : str
        Record name (for WFDB, the record name in the header). Default: "".
    units : str
        Always "mV" for records produced by the readers. Default: "mV".
    """

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    units: str = "mV"

    def __post_init__(self) -> None:
        signal = np.asarray(self.signal, dtype=np.float32)
        if signal.ndim == 1:
            signal = signal[None, :]
        if signal.ndim != 2:
            raise ValueError(f"signal must be [leads, samples], got shape {signal.shape}")
        if len(self.leads) != signal.shape[0]:
            raise ValueError(f"{len(self.leads)} lead names for {signal.shape[0]} leads")
        if not np.isfinite(self.fs) or self.fs <= 0:
            raise ValueError(f"sampling rate must be positive, got {self.fs}")
        object.__setattr__(self, "signal", signal)
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "leads", tuple(normalize_lead(lead) for lead in self.leads))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def n_leads(self) -> int:
        return int(self.signal.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def replace(self, **changes: Any) -> Ecg:
        """A copy with some fields changed (``ecg.replace(signal=noisy)``)."""
        return dataclasses.replace(self, **changes)

    def lead_index(self, lead: str) -> int:
        """Row of ``lead`` in ``signal`` (stand-ins such as II for MLII allowed). Raises KeyError."""
        wanted = normalize_lead(lead)
        for candidate in (wanted, *LEAD_STAND_INS.get(wanted, ())):
            if candidate in self.leads:
                return self.leads.index(candidate)
        raise KeyError(f"record has no lead {wanted!r} (leads: {', '.join(self.leads)})")

    def select_leads(self, leads: Sequence[str]) -> Ecg:
        """The record restricted to ``leads`` in that order, stand-ins allowed; names become the requested ones."""
        rows = [self.lead_index(lead) for lead in leads]
        return self.replace(signal=self.signal[rows], leads=tuple(normalize_lead(x) for x in leads))

    def crop(self, start_s: float, end_s: float) -> Ecg:
        """The part of the record between ``start_s`` and ``end_s`` seconds."""
        a = max(0, int(round(start_s * self.fs)))
        b = min(self.n_samples, int(round(end_s * self.fs)))
        if b <= a:
            raise ValueError(f"empty crop [{start_s}, {end_s}) s of a {self.duration_s:.2f} s record")
        return self.replace(signal=self.signal[:, a:b])

    def resample(self, fs: float) -> Ecg:
        """The record resampled to ``fs`` Hz (polyphase filtering, scipy.signal.resample_poly)."""
        if abs(fs - self.fs) < 1e-9:
            return self
        from fractions import Fraction

        from scipy.signal import resample_poly

        ratio = Fraction(fs / self.fs).limit_denominator(1000)
        out = resample_poly(self.signal, ratio.numerator, ratio.denominator, axis=1)
        return self.replace(signal=out.astype(np.float32), fs=float(fs))


def stack_leads(leads: Iterable[str]) -> tuple[str, ...]:
    """Canonical names for a sequence of lead names."""
    return tuple(normalize_lead(lead) for lead in leads)
