"""`ecglens serve` caps glibc's malloc arenas unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

from ecglens.service.cli import limit_malloc_arenas


def test_an_operators_malloc_arena_max_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is False


def test_the_arena_cap_is_applied_or_reported_as_not_applicable(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() in (True, False)  # True on glibc, False elsewhere; never raises
