"""Container healthcheck: exit 0 when ``GET /api/v1/healthz`` answers 200 within 4 s, else 1.

Standard library only (the slim image has no curl). The port is ``API_PORT`` (default 8000).
"""
from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = int(os.environ.get("API_PORT", "8000"))
    url = f"http://127.0.0.1:{port}/api/v1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (fixed local URL)
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
