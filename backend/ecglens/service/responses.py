"""JSON responses serialised where the endpoint runs, and a bounded cache of serialised bodies.

A synchronous endpoint that returns a pydantic model has FastAPI validate and serialise it on a second trip through
a request thread; `json_response` does it on the endpoint's own thread and returns the bytes (FastAPI passes a
`Response` through unchanged, and the route's ``response_model`` still documents it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from fastapi import Response
from pydantic import BaseModel


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as its JSON body (``model_dump_json``: what FastAPI would send for it)."""
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")


class BodyCache:
    """Serialised response bodies by key, least recently used dropped first past ``max_bytes`` in all.

    For bodies that never change once made (a finished analysis): the key must name everything the body depends
    on; access checks stay with the caller, before it asks. Thread-safe.

    Parameters
    ----------
    max_bytes : int
        Total size of the bodies kept. Default: 16 MiB. A body over a quarter of it is not kept.
    """

    def __init__(self, max_bytes: int = 16 * 2**20):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._bodies.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._bodies[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _key, dropped = self._bodies.popitem(last=False)
                self._size -= len(dropped)

    def __len__(self) -> int:
        return len(self._bodies)
