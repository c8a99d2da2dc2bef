"""The peers on a synthetic record whose evidence is known: one bump on lead MLII at 2.6 s."""

from __future__ import annotations

import numpy as np
import pytest

from ecglens.baselines import (
    PEER_CLASSES,
    FeatureAblationBaseline,
    HopSkipJumpBaseline,
    OcclusionBaseline,
    OracleBaseline,
    RandomBaseline,
    ShapleyValueSamplingBaseline,
    SimBABaseline,
    SquareAttackBaseline,
    peer,
)
from ecglens.baselines.cells import fixed_grid, ranking_from_scores
from ecglens.ecg import Ecg
from ecglens.metrics import deletion_auc, pointing_game, snr_db

FS = 200.0
N = 800  # 4 s: 16 windows x 2 leads = 32 cells
BUMP_S = 2.6
_t = np.arange(N) / FS
TEMPLATE = np.exp(-(((_t - BUMP_S) / 0.03) ** 2))


class BumpDetector:
    """A known classifier: p(bump) = sigmoid(6 (template match on MLII - 1)); the bump is all the evidence."""

    class_names = ("other", "bump")
    sampling_rate = FS
    lead_names = ("MLII", "V1")
    window_s = N / FS
    multilabel = True
    thresholds = {"other": 0.5, "bump": 0.5}

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        z = (x[:, 0] * TEMPLATE).sum(axis=-1) / TEMPLATE.sum()
        p = 1.0 / (1.0 + np.exp(-6.0 * (z - 1.0)))
        return np.stack([1.0 - p, p], axis=1)


@pytest.fixture
def record() -> np.ndarray:
    rng = np.random.default_rng(7)
    signal = 0.1 * rng.standard_normal((2, N))
    signal[0] += 2.0 * TEMPLATE
    return signal.astype(np.float32)


def _explain(name: str, clf, signal: np.ndarray, **options):
    kwargs = {"beat_time_s": BUMP_S} if name == "oracle" else {}
    return peer(name)(clf, **options).explain(signal, "bump", **kwargs)


# Small budgets keep the sampling peers and attacks to a fraction of a second here.
FAST = {
    "shapley-sampling": {"query_budget": 200},
    "square-attack": {"query_budget": 150},
    "simba": {"query_budget": 150},
    "hopskipjump": {"query_budget": 150},
    "greedy-scan": {"query_budget": 300},
}


@pytest.mark.parametrize("name", list(PEER_CLASSES))
def test_every_peer_scores_the_full_grid_and_stays_within_its_budget(name, record):
    clf = BumpDetector()
    options = FAST.get(name, {})
    exp = _explain(name, clf, record, **options)
    grid = fixed_grid(record, FS)
    assert exp.method == name
    assert exp.cell_scores.shape == (grid.n_cells,)
    assert np.all(np.isfinite(exp.cell_scores))
    assert 1 <= exp.queries
    budget = options.get("query_budget", peer(name).default_budget)
    if budget is not None:
        assert exp.queries <= budget
    assert exp.saliency.shape == record.shape
    assert exp.diagnosis.label == "bump"


@pytest.mark.parametrize(
    "name", ["occlusion", "feature-ablation", "shapley-sampling", "kernel-shap", "lime", "greedy-scan", "oracle"]
)
def test_peer_points_at_the_bump(name, record):
    exp = _explain(name, BumpDetector(), record, **FAST.get(name, {}))
    assert pointing_game(exp, BUMP_S)
    if name != "oracle":  # the oracle distorts the beat on every lead alike
        assert exp.segments[0].lead == "MLII"


def test_query_counts_follow_the_documented_formulas(record):
    clf = BumpDetector()
    grid = fixed_grid(record, FS)
    # Occlusion: diagnosis + captum's clean look + leads x ((samples - 40) // 20 + 1) windows of 0.2 s / 0.1 s.
    assert OcclusionBaseline(clf).explain(record, "bump").queries == 2 + 2 * ((N - 40) // 20 + 1)
    assert FeatureAblationBaseline(clf).explain(record, "bump").queries == 2 + grid.n_cells
    shapley = ShapleyValueSamplingBaseline(clf, query_budget=500).explain(record, "bump")
    assert shapley.queries == 2 + ((500 - 2) // grid.n_cells) * grid.n_cells


def test_feature_ablation_beats_random_on_deletion_auc(record):
    clf = BumpDetector()
    grid = fixed_grid(record, FS)
    exp = FeatureAblationBaseline(clf).explain(record, "bump")
    ablation = deletion_auc(record, ranking_from_scores(exp.cell_scores), grid, clf, "bump")
    random = [
        deletion_auc(
            record,
            ranking_from_scores(RandomBaseline(clf, seed=s).explain(record, "bump").cell_scores),
            grid,
            clf,
            "bump",
        )
        for s in range(10)
    ]
    # The bump is 1 cell of 32: removed first, the curve drops at once; at random, about half way on average.
    assert ablation < 0.1 < 0.3 < np.mean(random)


def test_random_baseline_is_reproducible_from_its_seed(record):
    a = RandomBaseline(BumpDetector(), seed=3).explain(record, "bump").cell_scores
    b = RandomBaseline(BumpDetector(), seed=3).explain(record, "bump").cell_scores
    c = RandomBaseline(BumpDetector(), seed=4).explain(record, "bump").cell_scores
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [SquareAttackBaseline, SimBABaseline, HopSkipJumpBaseline])
def test_art_attacks_run_a_few_counted_queries_on_a_tiny_classifier(cls, record):
    exp = cls(BumpDetector(), query_budget=40).explain(record, "bump")
    assert 1 < exp.queries <= 40
    if exp.adversarial is not None:  # whatever they report, the classifier confirms
        assert BumpDetector().predict_proba(exp.adversarial.signal[None])[0, 1] < 0.5


def test_hopskipjump_reports_a_flip_the_classifier_confirms(record):
    clf = BumpDetector()
    exp = HopSkipJumpBaseline(clf, query_budget=600).explain(record, "bump")
    assert exp.adversarial is not None and exp.adversarial.flipped
    assert clf.predict_proba(exp.adversarial.signal[None])[0, 1] < 0.5
    assert exp.adversarial.snr_db == pytest.approx(snr_db(record, exp.adversarial.signal))
    assert exp.queries <= 600


def test_art_attacks_leave_numpys_global_generator_alone(record):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    SimBABaseline(BumpDetector(), query_budget=30).explain(record, "bump")
    assert np.random.random() == expected


def test_art_view_answers_non_finite_proposals_without_a_query(record):
    from ecglens.baselines.attacks import _BinaryView
    from ecglens.classifiers.base import QueryCounter
    from ecglens.targets import Target

    counter = QueryCounter(BumpDetector())
    view = _BinaryView(counter, record, Target(1, "bump", 0.5, True), lambda a: a)
    bad = record.copy()
    bad[0, 5] = np.nan
    flat = record.copy()
    flat[0] = 0.0  # no bump: flipped
    out = view(np.stack([bad, record, flat]))
    assert counter.queries == 2
    assert out[0, 0] == 1.0  # NaN row: "still holds", so ART rejects it
    assert out[1, 0] >= 0.5 > out[2, 0]  # arg-max agrees with the flip rule
    assert view.best is not None and np.array_equal(view.best, flat)


def test_oracle_flips_at_the_bisected_snr_and_not_much_above(record):
    clf = BumpDetector()
    exp = OracleBaseline(clf, kinds=("gaussian",)).explain(record, "bump", beat_time_s=BUMP_S)
    assert exp.adversarial is not None
    assert clf.predict_proba(exp.adversarial.signal[None])[0, 1] < 0.5
    # The same noise 1 dB weaker no longer flips: the SNR found is the boundary, within the bisection.
    weaker = record + exp.adversarial.noise * 10 ** (-1 / 20)
    assert clf.predict_proba(weaker[None])[0, 1] >= 0.5


class BandFlipper(BumpDetector):
    """Flips only while lead MLII's spread is between 1.5x and 3x the clean one: loud noise looks abnormal again."""

    def __init__(self, clean_sd: float):
        self.clean_sd = clean_sd

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        ratio = np.asarray(batch, dtype=np.float64)[:, 0].std(axis=-1) / self.clean_sd
        p = np.where((ratio > 1.5) & (ratio < 3.0), 0.1, 0.9)
        return np.stack([1.0 - p, p], axis=1)


def test_oracle_finds_a_flip_that_only_moderate_noise_causes(record):
    clf = BandFlipper(float(record[0].std()))
    exp = OracleBaseline(clf, kinds=("gaussian",)).explain(record, "bump", beat_time_s=BUMP_S)
    assert exp.adversarial is not None
    assert clf.predict_proba(exp.adversarial.signal[None])[0, 1] < 0.5


def test_oracle_without_the_beat_time_says_what_it_needs(record):
    with pytest.raises(ValueError, match="beat_time_s"):
        OracleBaseline(BumpDetector()).explain(record, "bump")


def test_peer_accepts_an_ecg_and_fits_it_to_the_classifier(record):
    ecg = Ecg(signal=np.repeat(record, 2, axis=1), fs=2 * FS, leads=("MLII", "V1"))  # 400 Hz, resampled
    exp = FeatureAblationBaseline(BumpDetector()).explain(ecg)
    assert exp.diagnosis.label == "bump"
    assert exp.saliency.shape == record.shape


def test_wrong_input_shape_is_a_clear_error(record):
    with pytest.raises(ValueError, match=r"\[leads, samples\] = \[2, 800\]"):
        FeatureAblationBaseline(BumpDetector()).explain(record[:, :700], "bump")


def test_unknown_peer_lists_the_valid_names():
    with pytest.raises(ValueError, match="occlusion"):
        peer("lrp")
