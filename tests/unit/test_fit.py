"""Fitting records to a classifier's input: lead stand-ins from the card, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from ecglens.classifiers.card import ModelCard
from ecglens.classifiers.fit import fit_record, input_leads
from ecglens.ecg import Ecg


class _CardOnly:
    """A classifier's card fields (fit_record reads nothing else)."""

    def __init__(self, **card):
        c = ModelCard(name="t", classes=["a", "b"], sampling_rate=360, leads=["MLII", "V1"], window_s=10, **card)
        self.lead_names, self.sampling_rate, self.lead_stand_ins = tuple(c.leads), c.sampling_rate, c.lead_stand_ins
        self.lead_rule = c.lead_rule


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


def test_any_lead_classifier_gets_the_records_own_leads_in_order():
    ecg = _record(("ECG",)).replace(fs=250.0)
    fitted = fit_record(ecg, _CardOnly(lead_rule="any"))
    assert fitted.leads == ("ECG",) and fitted.fs == 360 and fitted.n_samples == round(3600 * 360 / 250)
    three = _record(("V5", "lead ii", "I"))
    fitted = fit_record(three, _CardOnly(lead_rule="any"))
    assert fitted.leads == ("V5", "II", "I") and "lead_stand_ins" not in fitted.metadata
    np.testing.assert_array_equal(fitted.signal, three.signal)
    assert input_leads(three, _CardOnly(lead_rule="any")) == ("V5", "II", "I")
    assert input_leads(three, _CardOnly()) == ("MLII", "V1")
