"""Hypothesis fuzz of ``POST /records``: file names with any characters, random and mutated bytes, zips whose
headers lie, with many or oddly named members, nested or in any compression method, records of implausible
rates and amplitudes. Never a 5xx, always 201, 413 or 422 with a reason, and memory stays bounded.
(benchmarks/service_load.py --fuzz runs the same generator for >= 1,000 cases against a real server.)"""

from __future__ import annotations

import resource

from hypothesis import HealthCheck, given, settings
from upload_cases import upload_case

_MAXRSS_KIB: list[int] = []


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=upload_case())
def test_fuzzed_uploads_never_give_a_server_error(sqlite_api, case):
    if not _MAXRSS_KIB:
        _MAXRSS_KIB.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    response = sqlite_api.client.post(
        "/api/v1/records", headers=sqlite_api.auth("clinician"), files=[("files", (name, data)) for name, data in case]
    )
    assert response.status_code in (201, 413, 422), (response.status_code, response.text[:300])
    if response.status_code != 201:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
    # 1 MiB upload limit: whatever the archives claim, the process never grows by more than a few hundred MiB.
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _MAXRSS_KIB[0]
    assert grown < 300 * 1024, f"max RSS grew {grown / 1024:.0f} MiB"
