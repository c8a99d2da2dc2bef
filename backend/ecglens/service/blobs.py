"""Content-addressed blob store: uploaded bytes kept once per SHA-256, under ``<root>/<sha[:2]>/<sha>``.

The same upload twice is one blob (and two records). Writes go to a temporary file first and are renamed into
place, so a blob file is either complete or absent.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
from pathlib import Path

from ecglens.formats.mapped import chunks


class BlobStore:
    """Blobs under ``root``.

    Parameters
    ----------
    root : Path
        Folder of the store; created when missing.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(self.root, 0o700)

    def path(self, sha256: str) -> Path:
        """Where the blob with this hex digest lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes | mmap.mmap) -> str:
        """Store ``data`` (bytes, or a map of a file: `ecglens.formats.mapped`, read a chunk at a time and its
        pages released); return its SHA-256 hex digest. Storing the same bytes again is a no-op."""
        digest = hashlib.sha256()
        for piece in chunks(data):
            digest.update(piece)
        sha = digest.hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in chunks(data):
                    fh.write(piece)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha256: str) -> bytes:
        """The bytes of a blob. Raises FileNotFoundError when it is not in the store."""
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()


def _private(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # not ours to change (a mounted volume): the operator's choice
        pass
