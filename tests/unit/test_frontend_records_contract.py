"""The browser groups uploads as the server does: the same annotation extensions and signal-file extensions, and
the picker offers every one of them (checked on the source, without a browser)."""

from __future__ import annotations

import re
from pathlib import Path

from ecglens.formats.annotations import ANNOTATION_EXTENSIONS
from ecglens.service.grouping import SIGNAL_EXTENSIONS

UPLOAD_JS = (Path(__file__).resolve().parents[2] / "frontend" / "js" / "upload.js").read_text()


def _js_list(name: str) -> list[str]:
    body = re.search(rf"const {name} = \[(.*?)\];", UPLOAD_JS, re.S).group(1)
    return re.findall(r'"([^"]+)"', body)


def test_the_browser_knows_the_servers_annotation_and_signal_extensions():
    assert _js_list("ANNOTATION_EXTENSIONS") == list(ANNOTATION_EXTENSIONS)
    assert _js_list("SIGNAL_PARTS") == list(SIGNAL_EXTENSIONS)
