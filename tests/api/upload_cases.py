"""A hypothesis strategy of hostile uploads: a list of ``(file name, bytes)`` for ``POST /records``.

Shared by tests/api/test_upload_fuzz.py and benchmarks/service_load.py (``--fuzz``)."""

from __future__ import annotations

import io
import json
import struct
import zipfile

from hypothesis import strategies as st

EXTENSIONS = ["", ".hea", ".dat", ".edf", ".csv", ".json", ".xml", ".dcm", ".zip", ".txt", ".mat", ".atr", ".ZIP"]
METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
# Characters that break naive handling: NUL and other controls, separators, bidi overrides, surrogate-free
# unicode, dots.
NASTY = "\x00\x01\n\r\t\x7f/\\.:\u202e\u200b é中"
names = st.text(alphabet=st.sampled_from(list(NASTY) + list("abcXYZ019_-")), max_size=24)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.just(2.0**70),
)


def _zip(members: list[tuple[str, bytes]], method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for i, (_name, data) in enumerate(members):
            info = zipfile.ZipInfo(f"m{i:03d}", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, data)
    raw = out.getvalue()
    # zipfile will not write control characters in names: put the wanted names in byte for byte, same length.
    for i, (name, _data) in enumerate(members):
        wanted = (name.encode("utf-8", "replace") + b"____")[:4] if name else b"\x00\x00\x00\x00"
        raw = raw.replace(f"m{i:03d}".encode(), wanted)
    return raw


def _lie(raw: bytes, declared: int) -> bytes:
    """Make the first member's local and central headers declare ``declared`` uncompressed bytes."""
    data = bytearray(raw)
    central = data.find(b"PK\x01\x02")
    if data[:4] != b"PK\x03\x04" or central < 0:
        return raw
    struct.pack_into("<I", data, 22, declared & 0xFFFFFFFF)
    struct.pack_into("<I", data, central + 24, declared & 0xFFFFFFFF)
    return bytes(data)


@st.composite
def record_text(draw) -> tuple[str, bytes]:
    """A CSV or JSON record with a drawn rate, lead name and samples."""
    fs = draw(numbers)
    n = draw(st.integers(min_value=0, max_value=300))
    values = draw(st.lists(numbers, min_size=1, max_size=8))
    samples = [values[i % len(values)] for i in range(n)]
    lead = draw(st.one_of(names, st.sampled_from(["II", "None", "nan", "V1", ""]), st.none()))
    if draw(st.booleans()):
        doc = {"fs": fs, "leads": [{"name": lead, "samples": samples}]}
        if draw(st.booleans()):
            doc["units"] = draw(st.sampled_from(["mV", "uV", "V", "mmHg", "", "µV"]))
        return "r.json", json.dumps(doc, allow_nan=True).encode()
    header = f"time,{lead}\n"
    rows = "".join(f"{i / (fs if isinstance(fs, (int, float)) and fs else 1)!r},{v!r}\n" for i, v in enumerate(samples))
    return "r.csv", (header + rows).encode()


@st.composite
def zip_file(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["members", "bomb", "many", "nested"]))
    method = draw(st.sampled_from(METHODS))
    if kind == "bomb":  # zeros that inflate ~1000:1, the header declaring far less (or more)
        mib = draw(st.integers(min_value=1, max_value=6))
        raw = _zip([("z.csv", bytes(mib << 20))], zipfile.ZIP_DEFLATED)
        raw = _lie(raw, draw(st.sampled_from([0, 1000, 1 << 31, (mib << 20) - 1])))
    elif kind == "many":
        raw = _zip([(f"{i}", b"") for i in range(draw(st.integers(min_value=500, max_value=700)))], zipfile.ZIP_STORED)
    elif kind == "nested":
        raw = _zip([("in.z", _zip([("a.csv", b"II\n1\n")], method))], method)
    else:
        members = draw(
            st.lists(
                st.tuples(names, st.one_of(st.binary(max_size=600), record_text().map(lambda nb: nb[1]))),
                min_size=0,
                max_size=4,
            )
        )
        raw = _zip(members, method)
        if draw(st.booleans()):
            raw = _lie(raw, draw(st.integers(min_value=0, max_value=2**32 - 1)))
    if draw(st.booleans()):  # flip a few bytes
        data = bytearray(raw)
        for at in draw(st.lists(st.integers(min_value=0, max_value=max(0, len(data) - 1)), max_size=3)):
            data[at] ^= 0xFF
        raw = bytes(data)
    return draw(st.sampled_from(["a.zip", "b.ZIP", "c.dat", "d"])), raw


@st.composite
def one_file(draw) -> tuple[str, bytes]:
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0:
        return draw(names) + draw(st.sampled_from(EXTENSIONS)), draw(st.binary(max_size=3000))
    if choice == 1:
        return draw(record_text())
    if choice == 2:
        return draw(zip_file())
    hea = draw(
        st.sampled_from(
            [
                b"h 1 360 100\nh.dat 16 200/mV 16 0 0 0 0 II\n",
                b"h 1 0.0016 100\nh.dat 16 200/mV 16 0 0 0 0 None\n",
                b"h 1 360 100\nh.dat 16 1e-30/mV 16 0 0 0 0 II\n",
            ]
        )
    )
    return "h.hea", hea


def upload_case():
    """1-3 files, each a hostile (or now and then valid) record file or archive."""
    return st.lists(one_file(), min_size=1, max_size=3)
