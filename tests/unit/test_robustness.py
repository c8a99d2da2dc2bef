"""The robustness report against a real (small, fixed-weight) torch classifier whose evidence is known.

The classifier detects one wavelet (a 6 Hz oscillation under a 50 ms Gaussian envelope) on lead II by the
maximum normalised cross-correlation with it over the window; p(bump) = sigmoid(15 (ncc - 0.85)). The test
record is a 30-s, 250 Hz simulated ECG with that wavelet at 14.2 s (ncc ~0.97 there, ~0.72 elsewhere), so the
diagnosis "bump" is made in the window 10-20 s and realistic noise, by lowering the correlation, flips it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecglens.classifiers.base import QueryCounter
from ecglens.ecg import Ecg
from ecglens.errors import QueryBudgetExceeded
from ecglens.robustness import robustness

FS = 250.0
BUMP_AT_S = 14.2


def wavelet(t: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * 6.0 * t) * np.exp(-0.5 * (t / 0.05) ** 2)


class BumpNet(torch.nn.Module):
    """Two logits (normal, bump) from the best normalised cross-correlation of lead 0 with the wavelet."""

    def __init__(self, fs: float):
        super().__init__()
        self.width = int(0.3 * fs) | 1
        t = (np.arange(self.width) - self.width // 2) / fs
        template = wavelet(t)
        template -= template.mean()
        template /= np.linalg.norm(template)
        self.register_buffer("template", torch.tensor(template, dtype=torch.float32)[None, None])
        self.register_buffer("box", torch.ones(1, 1, self.width) / self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x[:, :1]
        num = torch.nn.functional.conv1d(lead, self.template)
        mean = torch.nn.functional.conv1d(lead, self.box)
        mean_sq = torch.nn.functional.conv1d(lead * lead, self.box)
        sd = torch.sqrt(torch.clamp(mean_sq - mean * mean, min=1e-8) * self.width)
        z = 15.0 * ((num / sd).amax(dim=2)[:, 0] - 0.85)
        return torch.stack([-z / 2, z / 2], dim=1)


class BumpClassifier:
    """The Classifier protocol around `BumpNet` (mutually exclusive classes, or multilabel with thresholds)."""

    class_names = ("normal", "bump")
    lead_names = ("II", "V1")
    window_s = 10.0

    def __init__(self, fs: float = FS, multilabel: bool = False):
        self.sampling_rate = fs
        self.multilabel = multilabel
        self.thresholds = {"normal": 0.5, "bump": 0.5}
        self.net = BumpNet(fs).eval()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.net(torch.as_tensor(np.asarray(batch, dtype=np.float32)))
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
        return probs.double().numpy()


def bump_record(fs: float = FS, bump: bool = True) -> Ecg:
    import neurokit2 as nk

    a = nk.ecg_simulate(duration=30, sampling_rate=int(fs), heart_rate=70, random_state=1)
    b = nk.ecg_simulate(duration=30, sampling_rate=int(fs), heart_rate=70, random_state=2) * 0.6
    if bump:
        a = a + 0.5 * wavelet(np.arange(len(a)) / fs - BUMP_AT_S)
    return Ecg(signal=np.stack([a, b]).astype(np.float32), fs=fs, leads=("II", "V1"), name="bump")


@pytest.fixture(scope="module")
def record() -> Ecg:
    return bump_record()


@pytest.fixture(scope="module")
def report(record: Ecg):
    return robustness(record, BumpClassifier(), seed=0)


def test_window_with_the_finding_is_tested(report) -> None:
    assert report.label == "bump"
    assert report.extra["start_s"] == 10.0 and report.extra["held_on_clean"]
    assert report.extra["diagnosis"]["probabilities"]["bump"] > 0.8


def test_more_noise_lowers_probability_on_average(report) -> None:
    """Per kind, the mean probability of "bump" over seeds does not rise as SNR falls (2 % slack for
    sampling noise), and averaged over kinds it falls clearly from 24 to -6 dB."""
    levels = report.snr_levels_db
    assert levels == [24.0, 18.0, 12.0, 6.0, 0.0, -6.0]
    curves = np.array([[d.probability_at_snr[lv] for lv in levels] for d in report.distortions])
    assert np.all(np.diff(curves, axis=1) <= 0.02), curves.round(3)
    mean = curves.mean(axis=0)
    assert np.all(np.diff(mean) <= 0) and mean[0] - mean[-1] > 0.3


def test_broadband_noise_flips_and_flip_snr_is_consistent_with_levels(report) -> None:
    by_kind = {d.distortion: d for d in report.distortions}
    assert [d.distortion for d in report.distortions] == [
        "baseline_wander",
        "powerline",
        "muscle",
        "electrode_motion",
        "gaussian",
    ]
    for kind in ("muscle", "gaussian", "powerline"):
        d = by_kind[kind]
        assert d.flip_snr_db is not None and -12.0 <= d.flip_snr_db <= 40.0
        # Every level below the (median) flip SNR flips for at least some seeds; levels well above hold.
        assert all(d.flip_rate_at_snr[lv] > 0 for lv in report.snr_levels_db if lv < d.flip_snr_db - 3)
        assert all(d.flip_rate_at_snr[lv] < 1 for lv in report.snr_levels_db if lv > d.flip_snr_db + 3)
    # The wavelet detector hardly sees slow noise (a zero-mean template over 0.3 s): baseline wander holds
    # down to 0 dB and its flip SNR, if any, is at least 12 dB below white noise's.
    bw = by_kind["baseline_wander"]
    assert all(rate == 0 for lv, rate in bw.flip_rate_at_snr.items() if lv >= 0)
    assert bw.flip_snr_db is None or bw.flip_snr_db <= by_kind["gaussian"].flip_snr_db - 12


def test_score_is_share_of_trials_that_held(report) -> None:
    rates = [d.flip_rate_at_snr[lv] for d in report.distortions for lv in report.snr_levels_db]
    assert 0.0 <= report.score <= 1.0
    assert report.score == pytest.approx(1.0 - np.mean(rates))


@pytest.mark.parametrize("multilabel", [False, True])
def test_bisection_flip_snr_matches_brute_force_scan(record: Ecg, multilabel: bool) -> None:
    """The noise of a (kind, seed) does not depend on the levels asked for, so a run with one seed over a
    0.5 dB grid from 40 to -12 dB is a brute-force scan of the very trial the bisection searched: its flip
    rate per level is that trial's outcome (0 or 1).

    Bisection assumes the diagnosis holds above some SNR and flips below it. Where the scan shows exactly that
    (one transition), the bisection must find the transition within 0.5 dB; where it does not (a trial that
    flips only in a narrow band of SNRs), its answer must still be an SNR at which the scan flips, or None.
    """
    kinds = ["muscle", "gaussian", "powerline", "electrode_motion"]
    clf = BumpClassifier(multilabel=multilabel)
    fast = robustness(record, clf, distortions=kinds, seeds=1, seed=5, start_s=10.0)
    grid = [float(x) for x in np.arange(40.0, -12.01, -0.5)]
    scan = robustness(record, clf, distortions=kinds, seeds=1, seed=5, start_s=10.0, snr_levels_db=grid)
    matched = 0
    for found, brute_force in zip(fast.distortions, scan.distortions):
        outcome = np.array([brute_force.flip_rate_at_snr[lv] == 1.0 for lv in grid])  # high to low SNR
        transitions = int(np.count_nonzero(outcome[1:] != outcome[:-1]))
        if transitions <= 1:
            if outcome.any():
                highest = grid[int(np.argmax(outcome))]
                assert found.flip_snr_db is not None and abs(found.flip_snr_db - highest) <= 0.5, (
                    found.distortion,
                    found.flip_snr_db,
                    highest,
                )
                matched += 1
            else:
                assert found.flip_snr_db is None
        elif found.flip_snr_db is not None:
            near = [lv for lv, f in zip(grid, outcome) if f and abs(lv - found.flip_snr_db) <= 0.5]
            assert near, (found.distortion, found.flip_snr_db)
    assert matched >= 3
    assert fast.queries * 5 < scan.queries


def test_same_seed_same_report_other_seed_differs(record: Ecg) -> None:
    a = robustness(record, BumpClassifier(), seeds=2, seed=3, distortions=["muscle", "em"]).to_dict()
    b = robustness(record, BumpClassifier(), seeds=2, seed=3, distortions=["muscle", "em"]).to_dict()
    c = robustness(record, BumpClassifier(), seeds=2, seed=4, distortions=["muscle", "em"]).to_dict()
    for out in (a, b, c):
        out.pop("elapsed_s")
    assert a == b
    assert a["distortions"] != c["distortions"]


def test_queries_are_counted_and_batched(record: Ecg) -> None:
    counter = QueryCounter(BumpClassifier())
    out = robustness(record, counter, seeds=3)
    trials, levels, windows = 5 * 3, 6, 3
    assert out.queries == counter.queries
    # window choice + level grid + open ends + at most 5 bisection steps, each over all trials at once
    assert counter.queries <= windows + trials * (levels + 1 + 5)
    assert counter.calls <= 1 + 1 + 1 + 5


def test_budget_too_small_for_the_level_grid_raises(record: Ecg) -> None:
    with pytest.raises(QueryBudgetExceeded, match="robustness needs"):
        robustness(record, BumpClassifier(), query_budget=50)


def test_bisection_stops_at_the_budget(record: Ecg) -> None:
    budget = 3 + 15 * 6 + 10
    out = robustness(record, BumpClassifier(), query_budget=budget)
    assert out.queries <= budget and out.extra["budget_exhausted"]
    full = robustness(record, BumpClassifier())
    # Cut short, the search reports the highest SNR known to flip: never above the full search's answer.
    for d, f in zip(out.distortions, full.distortions):
        if f.flip_snr_db is None:
            assert d.flip_snr_db is None
        if d.flip_snr_db is not None:
            assert f.flip_snr_db is not None and d.flip_snr_db <= f.flip_snr_db


def test_powerline_skipped_when_mains_cannot_exist_at_classifier_rate() -> None:
    rec = bump_record(fs=100.0)
    out = robustness(rec, BumpClassifier(fs=100.0), mains_hz=60.0, seeds=1, distortions=["powerline", "gaussian"])
    assert [d.distortion for d in out.distortions] == ["gaussian"]
    assert "Nyquist" in out.extra["skipped"]["powerline"]


def test_record_is_fitted_to_the_classifier(record: Ecg) -> None:
    """A 500 Hz record with the leads in another order is resampled and mapped; the same window is found."""
    swapped = Ecg(signal=record.signal[::-1], fs=FS, leads=("V1", "II")).resample(500.0)
    out = robustness(swapped, BumpClassifier(), seeds=1, distortions=["gaussian"])
    assert out.label == "bump" and out.extra["start_s"] == 10.0 and out.extra["fs"] == FS


def test_unknown_label_and_kind_are_clear_errors(record: Ecg) -> None:
    with pytest.raises(ValueError, match="not a class"):
        robustness(record, BumpClassifier(), label="afib")
    with pytest.raises(ValueError, match="valid kinds"):
        robustness(record, BumpClassifier(), distortions=["hum"])


def test_progress_reports_rising_fractions_to_one(record: Ecg) -> None:
    seen: list[float] = []
    robustness(record, BumpClassifier(), seeds=1, distortions=["gaussian"], progress=seen.append)
    assert seen[-1] == 1.0 and all(0.0 <= x <= 1.0 for x in seen) and seen == sorted(seen)


def test_explicit_label_tests_that_class(record: Ecg) -> None:
    """Asking about "normal" on the bump window: it is not the diagnosis, so it is already flipped."""
    out = robustness(record, BumpClassifier(), label="normal", start_s=10.0, seeds=1, distortions=["gaussian"])
    assert out.label == "normal" and not out.extra["held_on_clean"]


def test_json_form_has_the_contract_fields(report) -> None:
    data = report.to_dict()
    assert set(data) >= {"label", "score", "snr_levels_db", "distortions", "queries", "elapsed_s", "extra"}
    assert set(data["distortions"][0]) == {"distortion", "flip_snr_db", "probability_at_snr", "flip_rate_at_snr"}
    flip = [d["flip_snr_db"] for d in data["distortions"]]
    assert all(f is None or isinstance(f, float) for f in flip)  # "never flipped" is JSON null


def test_builtin_model_report_on_a_real_record() -> None:
    """With the committed built-in model (skipped until it exists) on 30 s of MIT-BIH 119 (ventricular
    bigeminy): a finding is tested, the noise lowers its probability on average, queries stay bounded."""
    from ecglens.classifiers import load_classifier, models_dir
    from tests.conftest import shared_path

    if not (models_dir() / "builtin.pt").exists():
        pytest.skip("models/builtin.pt not trained yet")
    import wfdb

    raw = wfdb.rdrecord(str(shared_path("mitdb") / "119"), sampfrom=int(360 * 60), sampto=int(360 * 90))
    ecg = Ecg(signal=raw.p_signal.T.astype(np.float32), fs=360.0, leads=tuple(raw.sig_name), name="119")
    clf = load_classifier("builtin", device="cpu")
    counter = QueryCounter(clf)
    out = robustness(ecg, counter, seeds=2)
    assert out.queries == counter.queries <= 30 + 5 * 2 * (6 + 1 + 5)
    assert 0.0 <= out.score <= 1.0 and out.label in clf.class_names
    mean = np.mean([[d.probability_at_snr[lv] for lv in out.snr_levels_db] for d in out.distortions], axis=0)
    assert mean[0] >= mean[-1]


def test_record_shorter_than_the_window_is_tested_padded(record: Ecg) -> None:
    out = robustness(record.crop(10.0, 15.0), BumpClassifier(), seeds=1, distortions=["gaussian"])
    assert out.label == "bump" and out.extra["start_s"] == 0.0
    assert out.distortions[0].flip_snr_db is not None
