"""DICOM ECG waveforms (12-lead, general and ambulatory ECG Waveform Storage), parsed by pydicom.

Samples come from one multiplex group of the WaveformSequence (the one labelled RHYTHM, else the longest):
``value = raw * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline`` in the units of
ChannelSensitivityUnitsSequence (UCUM ``uV`` / ``mV``), as DICOM PS3.3 C.10.9.1.4 defines them. Lead names come
from ChannelSourceSequence: MDC (``2:1`` = lead I) and SCP-ECG (``5.6.3-9-1``) code values, else the code
meaning (``Lead aVR``), else the channel label. Patient names and IDs are not copied into the metadata.
"""

from __future__ import annotations

import io
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, build_ecg, check_fs, check_size, lead_label
from ecglens.formats._guard import guarded
from ecglens.formats._header import parse_age, parse_date, parse_sex, parse_time
from ecglens.formats._source import basename, read_bytes, record_stem

# IEEE 11073-10102 MDC lead numbers (DICOM CID 3001 writes them as "2:<n>", SCP-ECG as "5.6.3-9-<n>").
_MDC_LEADS = {
    1: "I",
    2: "II",
    3: "V1",
    4: "V2",
    5: "V3",
    6: "V4",
    7: "V5",
    8: "V6",
    16: "X",
    17: "Y",
    18: "Z",
    61: "III",
    62: "aVR",
    63: "aVL",
    64: "aVF",
}
_LEAD_CODES = {lead: n for n, lead in _MDC_LEADS.items()}
_SOP_12_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
_SOP_GENERAL = "1.2.840.10008.5.1.4.1.1.9.1.2"
_DTYPES = {
    (8, "SB"): np.int8,
    (8, "UB"): np.uint8,
    (16, "SS"): np.int16,
    (16, "US"): np.uint16,
    (32, "SL"): np.int32,
    (32, "UL"): np.uint32,
}


def is_dicom(data: bytes) -> bool:
    """True for bytes with the DICOM preamble (128 bytes, then ``DICM``)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _lead_from_code(code: Any) -> str | None:
    value = str(getattr(code, "CodeValue", "") or "").strip()
    match = re.fullmatch(r"(?:2:|5\.6\.3-9-)(\d+)", value)
    if match:
        return _MDC_LEADS.get(int(match.group(1)))
    return None


def _channel_name(channel: Any, index: int) -> str:
    sources = channel.get("ChannelSourceSequence") or []
    if sources:
        lead = _lead_from_code(sources[0])
        if lead:
            return lead
        meaning = str(sources[0].get("CodeMeaning", "") or "").strip()
        if meaning:
            return lead_label(meaning, index)
    label = str(channel.get("ChannelLabel", "") or "").strip()
    return lead_label(label, index)


def _number(value: Any, default: float, what: str, display: str) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError(display, f"{what} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise RecordError(display, f"{what} is not finite")
    return number


def _pick_group(groups: list[Any], display: str) -> int:
    if not groups:
        raise RecordError(display, "WaveformSequence is empty")
    labels = [str(g.get("MultiplexGroupLabel", "") or "").upper() for g in groups]
    rhythm = [i for i, label in enumerate(labels) if "RHYTHM" in label]
    if rhythm:
        return rhythm[0]

    def duration(i: int) -> float:
        g = groups[i]
        try:
            return float(g.get("NumberOfWaveformSamples", 0) or 0) / float(g.get("SamplingFrequency", 1) or 1)
        except (TypeError, ValueError, ZeroDivisionError):
            return 0.0

    return max(range(len(groups)), key=duration)


@guarded("DICOM")
def read_dicom(source: Any, filename: str | None = None) -> Ecg:
    """Read a DICOM ECG waveform into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The DICOM file (Part 10, with or without the 128-byte preamble).
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.

    Returns
    -------
    Ecg
        ``metadata``: ``format="DICOM"``, ``date``, ``time``, ``age``, ``sex``, ``multiplex_group``,
        ``sop_class``, ``source_files``, ``original_units``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    display, data, _ = read_bytes(source, filename)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on every odd value; what matters is raised below
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=not is_dicom(data))
        except InvalidDicomError as exc:
            raise RecordError(display, f"not a DICOM file: {exc}") from None
        return _read_dataset(ds, display)


def _read_dataset(ds: Any, display: str) -> Ecg:
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        raise RecordError(
            display, "DICOM file has no waveform (WaveformSequence is missing); only ECG waveform objects are supported"
        )
    index = _pick_group(groups, display)
    group = groups[index]
    n_channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
    n_samples = int(group.get("NumberOfWaveformSamples", 0) or 0)
    fs = check_fs(group.get("SamplingFrequency"), display)
    check_size(display, n_channels, n_samples, fs)
    bits = int(group.get("WaveformBitsAllocated", 0) or 0)
    interpretation = str(group.get("WaveformSampleInterpretation", "") or "")
    dtype = _DTYPES.get((bits, interpretation))
    if dtype is None:
        raise RecordError(
            display,
            f"waveform sample encoding {bits} bits / {interpretation!r} is not supported "
            "(8/16/32-bit SB, UB, SS, US, SL, UL)",
        )
    raw_bytes = group.get("WaveformData")
    need = n_channels * n_samples * np.dtype(dtype).itemsize
    if raw_bytes is None or len(raw_bytes) < need:
        raise RecordError(
            display,
            f"WaveformData holds {len(raw_bytes or b'')} bytes, {n_channels} channels x "
            f"{n_samples} samples need {need}",
        )
    raw = np.frombuffer(bytes(raw_bytes[:need]), dtype=np.dtype(dtype).newbyteorder("<"))
    raw = raw.reshape(n_samples, n_channels).astype(np.float64)
    definitions = list(group.get("ChannelDefinitionSequence") or [])
    if len(definitions) != n_channels:
        raise RecordError(display, f"{n_channels} waveform channels but {len(definitions)} channel definitions")

    channels, labels, units = [], [], []
    for i, channel in enumerate(definitions):
        sensitivity = _number(channel.get("ChannelSensitivity"), 1.0, f"channel {i + 1} sensitivity", display)
        correction = _number(
            channel.get("ChannelSensitivityCorrectionFactor"),
            1.0,
            f"channel {i + 1} sensitivity correction factor",
            display,
        )
        baseline = _number(channel.get("ChannelBaseline"), 0.0, f"channel {i + 1} baseline", display)
        unit_seq = channel.get("ChannelSensitivityUnitsSequence") or []
        unit = str(unit_seq[0].get("CodeValue", "") or "") if unit_seq else ""
        channels.append(raw[:, i] * sensitivity * correction + baseline)
        labels.append(_channel_name(channel, i))
        units.append(unit)

    meta = _metadata(ds, display)
    meta["multiplex_group"] = str(group.get("MultiplexGroupLabel", "") or index)
    if len(groups) > 1:
        meta["multiplex_groups"] = len(groups)
    return build_ecg(
        channels, fs, labels, units, filename=display, fmt="DICOM", name=record_stem(display), metadata=meta
    )


def _metadata(ds: Any, display: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source_files": [basename(display)]}
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop:
        meta["sop_class"] = sop
    stamp = str(ds.get("AcquisitionDateTime", "") or "")
    day = stamp[:8] or str(ds.get("ContentDate", "") or ds.get("StudyDate", "") or "")
    clock = stamp[8:14] or str(ds.get("ContentTime", "") or ds.get("StudyTime", "") or "")[:6]
    if day:
        meta["date"] = parse_date(day) or day
    if len(clock) == 6 and clock.isdigit():
        meta["time"] = parse_time(f"{clock[:2]}:{clock[2:4]}:{clock[4:]}") or clock
    sex = parse_sex(str(ds.get("PatientSex", "") or ""))
    if sex:
        meta["sex"] = sex
    age = str(ds.get("PatientAge", "") or "")
    if age.upper().endswith("Y"):
        meta["age"] = parse_age(age[:-1].lstrip("0") or "0")
    return meta


def write_dicom(ecg: Ecg, path: str | Path | None = None) -> bytes:
    """Write ``ecg`` as a DICOM ECG waveform (one RHYTHM multiplex group, 16-bit, uV) and return the bytes.

    Each lead gets its own ChannelSensitivity (uV per count) so its largest value uses the full 16-bit range.
    12-lead ECG Waveform Storage for up to 13 leads and 16384 samples, General ECG Waveform Storage beyond.

    Parameters
    ----------
    ecg : Ecg
        The record (at most 64 leads).
    path : path, optional
        Where to write the file as well. Default: None.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if ecg.n_leads > MAX_LEADS:
        raise ValueError(f"at most {MAX_LEADS} leads, got {ecg.n_leads}")
    sop_class = _SOP_12_LEAD if ecg.n_leads <= 13 and ecg.n_samples <= 16384 else _SOP_GENERAL
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "ECG"
    day, clock = str(ecg.metadata.get("date", "")), str(ecg.metadata.get("time", ""))
    now = datetime.now()
    ds.ContentDate = (day if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) else now.strftime("%Y-%m-%d")).replace("-", "")
    ds.ContentTime = (clock[:8] if re.fullmatch(r"\d{2}:\d{2}:\d{2}.*", clock) else now.strftime("%H:%M:%S")).replace(
        ":", ""
    )
    if ecg.metadata.get("sex") in ("M", "F"):
        ds.PatientSex = ecg.metadata["sex"]

    signal_uv = ecg.signal.astype(np.float64) * 1000.0
    peak = np.maximum(np.abs(signal_uv).max(axis=1), 1e-3)
    sensitivity = peak / 32000.0
    counts = np.round(signal_uv / sensitivity[:, None]).astype("<i2")
    channels = []
    for lead, sens in zip(ecg.leads, sensitivity):
        channel = Dataset()
        source = Dataset()
        if lead in _LEAD_CODES:
            source.CodeValue = f"2:{_LEAD_CODES[lead]}"
            source.CodingSchemeDesignator = "MDC"
            source.CodeMeaning = f"Lead {lead}"
        else:
            source.CodeValue = lead[:16]
            source.CodingSchemeDesignator = "99ECGLENS"
            source.CodeMeaning = lead[:64]
        channel.ChannelSourceSequence = Sequence([source])
        channel.ChannelLabel = lead[:16]
        channel.ChannelSensitivity = f"{sens:.9g}"[:16]
        unit = Dataset()
        unit.CodeValue = "uV"
        unit.CodingSchemeDesignator = "UCUM"
        unit.CodeMeaning = "microvolt"
        channel.ChannelSensitivityUnitsSequence = Sequence([unit])
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.ChannelSampleSkew = "0"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group = Dataset()
    group.MultiplexGroupLabel = "RHYTHM"
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = ecg.n_leads
    group.NumberOfWaveformSamples = ecg.n_samples
    group.SamplingFrequency = f"{ecg.fs:.9g}"[:16]
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformData = counts.T.tobytes()  # interleaved: sample 1 of every channel, then sample 2...
    ds.WaveformSequence = Sequence([group])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
