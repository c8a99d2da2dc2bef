"""One router per resource, all mounted under ``/api/v1`` (health at the root too)."""
