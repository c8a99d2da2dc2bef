"""Large files read through a read-only map (`ecglens.formats.mapped`): passes over it see the file's bytes
whole and in order, and the blob store keeps exactly those bytes under the same digest as for a bytes copy."""

from __future__ import annotations

import hashlib
import mmap

import numpy as np

from ecglens.formats.mapped import chunks, map_file, release
from ecglens.service.blobs import BlobStore


def _payload(n: int = 3 * 4096 + 123) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def _map(tmp_path, data: bytes) -> mmap.mmap:
    path = tmp_path / "signal.dat"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        return map_file(fh)  # valid after the file is closed


def test_chunks_of_a_map_and_of_bytes_are_the_file_in_order(tmp_path):
    data = _payload()
    mapped = _map(tmp_path, data)
    for source in (data, mapped):
        pieces = [bytes(p) for p in chunks(source, size=5000)]
        assert b"".join(bytes(p) for p in chunks(source, start=4321, size=4096)) == data[4321:]
        assert [len(p) for p in pieces] == [5000, 5000, 2411]
        assert b"".join(pieces) == data
    assert mapped[:] == data  # released pages read back from the file


def test_release_is_a_no_op_on_bytes_and_safe_anywhere_in_a_map(tmp_path):
    data = _payload()
    release(data, 0, len(data))
    mapped = _map(tmp_path, data)
    for start, stop in ((0, 1), (1, 4097), (4095, len(data) + 10), (len(data) - 1, len(data))):
        release(mapped, start, stop)
        assert mapped[start:stop] == data[start:stop]


def test_blob_of_a_map_is_the_blob_of_its_bytes(tmp_path):
    data = _payload(9 * 2**20 + 7)  # over two of the store's 4 MiB chunks
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(_map(tmp_path, data))
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.get(sha) == data
    assert store.put(data) == sha and len([p for p in store.root.rglob("*") if p.is_file()]) == 1


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_members_chosen_by_spool_if_come_as_maps_of_their_bytes():
    from ecglens.formats._source import iter_zip

    big, small = _payload(200_000), b"rec 2 360 100\n"
    archive = _zip({"rec.dat": big, "rec.hea": small})
    got = dict(iter_zip(archive, "up.zip", max_bytes=1 << 20, max_members=10, spool_if=lambda n, size: size > 1000))
    assert isinstance(got["rec.dat"], mmap.mmap) and got["rec.dat"][:] == big
    assert isinstance(got["rec.hea"], bytes) and got["rec.hea"] == small


def test_a_spooled_zip_member_is_still_checked_and_bounded():
    import pytest

    from ecglens.errors import RecordError
    from ecglens.formats._source import ZipTooLarge, iter_zip

    big = _payload(200_000)
    archive = bytearray(_zip({"rec.dat": big}))
    spool = dict(max_members=10, spool_if=lambda n, size: True)
    with pytest.raises(ZipTooLarge):
        list(iter_zip(bytes(archive), "up.zip", max_bytes=100_000, **spool))
    at = archive.find(b"PK\x01\x02")  # the central directory's CRC of the member: make it wrong
    archive[at + 16 : at + 20] = b"\x00\x00\x00\x00"
    with pytest.raises(RecordError, match="CRC-32"):
        list(iter_zip(bytes(archive), "up.zip", max_bytes=1 << 20, **spool))
