"""Hundreds of generated malformed uploads (seeded): never a 5xx, always 201, 413 or 422."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

EXTENSIONS = [".hea", ".dat", ".edf", ".csv", ".json", ".xml", ".dcm", ".zip", ".txt", ".mat", "", ".EDF", ".atr"]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncate, flip bytes, insert junk or duplicate a slice."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 4))
        if op == 0 and buf:
            del buf[int(rng.integers(0, len(buf))) :]
        elif op == 1 and buf:
            i = int(rng.integers(0, len(buf)))
            buf[i] = int(rng.integers(0, 256))
        elif op == 2:
            i = int(rng.integers(0, len(buf) + 1))
            buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif buf:
            i = int(rng.integers(0, len(buf)))
            buf[i:i] = buf[i : i + int(rng.integers(1, 200))]
    return bytes(buf)


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def _case(i: int, rng: np.random.Generator, valid: dict[str, bytes]) -> dict[str, bytes]:
    kind = i % 8
    hea, dat = valid["syn.hea"], valid["syn.dat"]
    if kind == 0:  # random bytes with a random extension
        ext = EXTENSIONS[int(rng.integers(0, len(EXTENSIONS)))]
        return {f"r{i}{ext}": rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()}
    if kind == 1:  # mutated header with its data
        return {"syn.hea": _mutate(hea, rng), "syn.dat": dat}
    if kind == 2:  # header with mutated / truncated data
        return {"syn.hea": hea, "syn.dat": _mutate(dat, rng)}
    if kind == 3:  # mutated zip of a valid record
        return {"rec.zip": _mutate(_zip(valid), rng)}
    if kind == 4:  # text formats with junk
        ext = [".csv", ".json", ".xml"][int(rng.integers(0, 3))]
        text = ",".join(str(x) for x in rng.normal(size=int(rng.integers(0, 50))))
        return {f"t{i}{ext}": _mutate(text.encode() + b"\n{<[", rng)}
    if kind == 5:  # mismatched names
        return {f"a{i}.hea": hea, f"b{i}.dat": dat}
    if kind == 6:  # a zip holding junk and a lone data file
        return {"junk.zip": _zip({"x/y.dat": _mutate(dat, rng), "notes.txt": b"hello"})}
    return {
        "h.hea": _mutate(b"h 2 360 3600\nh.dat 16 200/mV 16 0 0 0 0 MLII\nh.dat 16 200 16 0 0 0 0 V1\n", rng),
        "h.dat": _mutate(dat[:2000], rng),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_malformed_uploads_never_give_a_server_error(sqlite_api, wfdb_record, seed):
    rng = np.random.default_rng(seed)
    statuses = []
    for i in range(100):
        files = _case(i, rng, wfdb_record)
        response = sqlite_api.upload(files)
        assert response.status_code < 500, (i, list(files), response.text[:300])
        assert response.status_code in (201, 413, 422), (i, response.status_code, response.text[:300])
        if response.status_code == 422:
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]
        statuses.append(response.status_code)
    assert statuses.count(422) > 50  # most of them are bad, and said so


def test_malformed_multipart_is_422(sqlite_api):
    headers = {**sqlite_api.auth("clinician"), "Content-Type": "multipart/form-data; boundary=zz"}
    response = sqlite_api.client.post("/api/v1/records", headers=headers, content=b"--zz\r\ngarbage without end")
    assert response.status_code == 422


@pytest.mark.parametrize("path,role,limit", [("/api/v1/records", "clinician", 1000), ("/api/v1/models", "admin", 4)])
def test_both_form_routes_refuse_a_bad_form_alike(sqlite_api, path, role, limit):
    """`service.multipart.read_form` reads both forms: the same 422 for a body without a boundary and for more
    files than the route takes."""
    headers = {**sqlite_api.auth(role), "Content-Type": "multipart/form-data"}
    response = sqlite_api.client.post(path, headers=headers, content=b"no boundary")
    assert response.status_code == 422 and response.json()["detail"].startswith("malformed multipart body")
    files = [("files", (f"f{i}.csv", b"x")) for i in range(limit + 1)]
    response = sqlite_api.client.post(path, headers=sqlite_api.auth(role), files=files)
    assert response.status_code == 422 and "malformed multipart body: Too many files" in response.json()["detail"]
