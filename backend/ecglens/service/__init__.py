"""The ECG Lens REST service: ``create_app(settings=None)`` builds the FastAPI app (docs/api.md)."""

from __future__ import annotations

from ecglens.service.app import create_app
from ecglens.service.config import Settings

__all__ = ["create_app", "Settings"]
