"""Fitting records to a classifier's input: lead stand-ins from the card, resampling."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.classifiers.card import ModelCard
from ecglens.classifiers.fit import fit_record
from ecglens.ecg import Ecg


class _CardOnly:
    """A classifier's card fields (fit_record reads nothing else)."""

    def __init__(self, **card):
        c = ModelCard(name="t", classes=["a", "b"], sampling_rate=360, leads=["MLII", "V1"], window_s=10, **card)
        self.lead_names, self.sampling_rate, self.lead_stand_ins = tuple(c.leads), c.sampling_rate, c.lead_stand_ins


def _record(leads: tuple[str, ...]) -> Ecg:
    rng = np.random.default_rng(0)
    return Ecg(signal=rng.standard_normal((len(leads), 3600)).astype(np.float32), fs=360.0, leads=leads)


def test_card_stand_in_takes_a_missing_leads_place_and_is_recorded():
    ecg = _record(("MLII", "V5"))
    fitted = fit_record(ecg, _CardOnly(lead_stand_ins={"v1": ["V2", "V5"]}))
    assert fitted.leads == ("MLII", "V1")
    np.testing.assert_array_equal(fitted.signal[1], ecg.signal[1])
    assert fitted.metadata["lead_stand_ins"] == {"V1": "V5"}


def test_first_listed_stand_in_present_wins():
    ecg = _record(("V5", "MLII", "V2"))
    fitted = fit_record(ecg, _CardOnly(lead_stand_ins={"V1": ["V2", "V5"]}))
    np.testing.assert_array_equal(fitted.signal[1], ecg.signal[2])


def test_missing_lead_without_stand_in_names_the_lead():
    with pytest.raises(KeyError, match="V1"):
        fit_record(_record(("MLII", "V5")), _CardOnly())


def test_lead_present_by_name_needs_no_stand_in():
    fitted = fit_record(_record(("II", "V1", "V5")), _CardOnly(lead_stand_ins={"V1": ["V5"]}))
    assert "lead_stand_ins" not in fitted.metadata and fitted.leads == ("MLII", "V1")
