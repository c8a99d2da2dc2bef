"""The agent's grid and environment: cells, features, actions, reward, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, bump_ecg

from ecglens.agent.env import (
    CELL_FEATURES,
    GLOBAL_FEATURES,
    LEVELS_DB,
    Episode,
    RewardConfig,
    VecSegmentGridEnv,
    diagnosed_targets,
    lead_power,
)
from ecglens.agent.grid import SIGNAL_FEATURES, cell_features, detect_r_peaks, make_grid
from ecglens.agent.localize import coarse_to_fine


def _episode(seed: int = 0, **kw) -> tuple[Episode, BumpClassifier]:
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    target = diagnosed_targets(probs, clf)[0]
    return Episode(x, FS, probs, target, np.random.default_rng(seed), **kw), clf


def test_fixed_grid_partitions_the_input_lead_major():
    x = bump_ecg().signal
    grid = make_grid(x, FS, segment_s=0.25)
    assert grid.n_windows == 40 and grid.n_cells == 80
    assert grid.bounds[0, 0] == 0 and grid.bounds[-1, 1] == x.shape[1]
    assert np.all(grid.bounds[1:, 0] == grid.bounds[:-1, 1])
    assert grid.cell_span(41) == (1, 50, 100)


def test_beat_aligned_grid_puts_each_r_peak_in_a_qrs_cell():
    x = bump_ecg().signal
    grid = make_grid(x, FS, beat_aligned=True)
    assert grid.beat_aligned and len(grid.r_peaks) >= 10
    assert np.all(grid.bounds[1:, 0] == grid.bounds[:-1, 1]) and grid.bounds[-1, 1] == x.shape[1]
    for r in grid.r_peaks:
        w = int(np.flatnonzero((grid.bounds[:, 0] <= r) & (r < grid.bounds[:, 1]))[0])
        a, b = grid.bounds[w]
        assert r - a <= int(0.10 * FS) + 1 and b - r <= int(0.15 * FS) + 1


def test_cell_features_single_out_the_odd_beat():
    # A premature, wide, tall beat among regular ones: its cells must stand out on morphology and prematurity.
    ecg = bump_ecg(bump_at_s=None)
    x = ecg.signal.copy()
    peaks = detect_r_peaks(x, FS)
    t = np.arange(x.shape[1]) / FS
    odd_r = (peaks[5] + peaks[6]) // 2 / FS
    x[0] += 2.0 * np.exp(-0.5 * ((t - odd_r) / 0.04) ** 2)
    grid = make_grid(x, FS)
    feats = cell_features(x, grid)
    assert feats.shape == (grid.n_cells, len(SIGNAL_FEATURES))
    dev = feats[: grid.n_windows, SIGNAL_FEATURES.index("beat_deviation")]
    odd_window = int(odd_r * FS) // grid.bounds[0, 1]
    assert np.argmax(dev) in (odd_window - 1, odd_window, odd_window + 1)
    prem = feats[: grid.n_windows, SIGNAL_FEATURES.index("beat_prematurity")]
    assert prem[odd_window] > 0.3


def test_adding_distortion_touches_only_its_cell_at_the_requested_snr():
    ep, _ = _episode()
    cell, kind, level = 24, 4, 2  # MLII window 24, gaussian, 0 dB
    ep.set_cell(cell, kind, level)
    noise = ep.signal() - ep.clean
    lead, a, b = ep.grid.cell_span(cell)
    outside = np.ones_like(noise, dtype=bool)
    outside[lead, a:b] = False
    assert np.all(noise[outside] == 0) and np.any(noise[lead, a:b] != 0)
    power = lead_power(ep.clean, FS)[lead]
    snr = 10 * np.log10(power / np.mean(noise[lead, a:b].astype(np.float64) ** 2))
    assert snr == pytest.approx(LEVELS_DB[level], abs=0.01)


def test_removing_distortion_restores_the_clean_cell_and_snr_is_inf():
    ep, _ = _episode()
    ep.set_cell(10, 0, 3)
    ep.set_cell(50, 1, 1)
    ep.set_cell(10, -1)
    ep.set_cell(50, -1)
    assert np.array_equal(ep.signal(), ep.clean) and ep.snr_db() == float("inf") and ep.l2() == 0.0


def test_array_writes_match_the_per_cell_ones():
    # region_noise, add_redrawn and cell_masks write many cells at once; each must equal its one-cell counterpart.
    ep, _ = _episode()
    region = [3, 24, 41, 79]
    expected = np.zeros_like(ep.clean)
    for c in region:
        lead, a, b = ep.grid.cell_span(c)
        expected[lead, a:b] = ep.cell_noise(c, 2, 1)
    assert np.array_equal(ep.region_noise(region, 2, 1), expected)
    masks = ep.grid.cell_masks([region, np.asarray([0, 40]), []])
    assert all(np.array_equal(m, ep.grid.cell_mask(g)) for m, g in zip(masks, [region, [0, 40], []]))
    for c, kind in zip(region, (0, 2, 2, 4)):
        ep.set_cell(c, kind, 1)
    ep.gain[24] = 0.5
    noise = np.zeros_like(ep.clean)
    ep.add_redrawn(noise, region, np.random.default_rng(1), 0.8)
    for c in region:
        lead, a, b = ep.grid.cell_span(c)
        rms = np.sqrt(np.mean(noise[lead, a:b].astype(np.float64) ** 2))
        assert rms == pytest.approx(ep.cell_rms(c) * 0.8, rel=1e-4)
        assert not np.array_equal(noise[lead, a:b], ep.noise[lead, a:b] * np.float32(0.8))  # a fresh draw
        noise[lead, a:b] = 0.0
    assert not noise.any()  # nothing outside the cells


def test_an_episode_with_its_own_cell_noise_keeps_it_in_the_array_writes():
    # Image and video episodes redefine cell_noise and redrawn_units; the many-cell writes must use theirs.
    class Marked(Episode):
        def cell_noise(self, cell, kind, level):
            _, a, b = self.grid.cell_span(cell)
            return np.full(b - a, kind + 1.0, dtype=np.float32)

        def redrawn_units(self, cells, rng):
            return {
                int(c): np.full(self.grid.cell_span(c)[2] - self.grid.cell_span(c)[1], 3.0, np.float32) for c in cells
            }

    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    ep = Marked(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    noise = ep.region_noise([3, 41], 1, 0)
    assert set(np.unique(noise).tolist()) == {0.0, 2.0} and np.count_nonzero(noise) == 2 * 50
    ep.set_cell(3, 0, 1)
    ep.set_cell(41, 2, 0)
    out = np.zeros_like(ep.clean)
    ep.add_redrawn(out, [3, 41], np.random.default_rng(1), 0.5)
    for c in (3, 41):
        lead, a, b = ep.grid.cell_span(c)
        assert np.allclose(out[lead, a:b], 3.0 * ep.cell_rms(c) * 0.5)


def test_episode_snr_and_l2_match_their_definitions():
    ep, _ = _episode()
    for cell in (3, 24, 60):
        ep.set_cell(cell, 2, 2)
    noise = (ep.signal() - ep.clean).astype(np.float64)
    centred = ep.clean - ep.clean.mean(axis=1, keepdims=True)
    assert ep.l2() == pytest.approx(np.linalg.norm(noise), rel=1e-4)
    assert ep.snr_db() == pytest.approx(
        10 * np.log10(np.sum(centred.astype(np.float64) ** 2) / np.sum(noise**2)), abs=1e-3
    )


def test_step_reward_is_drop_per_l2_minus_costs_plus_flip_bonus():
    clf = BumpClassifier()
    x = bump_ecg().signal
    cfg = RewardConfig()
    env = VecSegmentGridEnv(clf, x[None], n_envs=1, seed=0, reward=cfg, max_steps=5)
    env.reset(seed=0)
    ep = env.episodes[0]
    bump_cell = int(6.1 * FS) // 50  # lead 0
    p_prev = ep.p
    strongest_gaussian = 4 * len(LEVELS_DB) + len(LEVELS_DB) - 1
    obs, reward, done, info = env.step(np.array([[bump_cell, strongest_gaussian]]))
    p_new = clf.predict_proba(ep.signal()[None])[0, 1]
    d_l2 = ep.l2() / ep.signal_l2
    expected = (
        cfg.ratio_weight * np.clip((p_prev - p_new) / (cfg.l2_floor + d_l2), -cfg.ratio_clip, cfg.ratio_clip)
        - cfg.energy_cost * d_l2
        - cfg.query_cost
    )
    assert p_new < 0.5, "the strongest Gaussian noise on the bump must flip the bump finding"
    snr = ep.snr_db()
    bonus = cfg.flip_bonus * (0.25 + 0.75 * np.clip(snr / cfg.flip_snr_full_db, 0, 1))
    assert 0.25 * cfg.flip_bonus <= bonus < cfg.flip_bonus
    assert reward[0] == pytest.approx(expected + bonus, abs=1e-6)
    assert done[0] and info[0]["flipped"] and np.isfinite(info[0]["snr_db"])
    assert obs["cells"].shape == (1, 80, len(CELL_FEATURES)) and obs["globals"].shape == (1, len(GLOBAL_FEATURES))


def test_useless_distortion_is_penalised_and_remove_is_masked_state():
    clf = BumpClassifier()
    x = bump_ecg().signal
    env = VecSegmentGridEnv(clf, x[None], n_envs=1, seed=0, max_steps=5)
    env.reset(seed=0)
    far_cell = 41  # lead V1, 0.25 s: nowhere near the bump
    obs, reward, done, _ = env.step(np.array([[far_cell, 3]]))
    assert reward[0] < 0 and not done[0]
    cells = obs["cells"][0]
    assert cells[far_cell, CELL_FEATURES.index("distorted")] == 1.0
    assert cells[far_cell, CELL_FEATURES.index("probed")] == 1.0
    remove = env.n_types - 1
    obs, reward, _, _ = env.step(np.array([[far_cell, remove]]))
    assert obs["cells"][0, far_cell, CELL_FEATURES.index("distorted")] == 0.0
    assert reward[0] > -RewardConfig().query_cost - 0.05  # saving the energy back nearly pays the query


def test_each_step_is_one_batched_classifier_call_for_all_envs():
    clf = BumpClassifier()
    x = np.stack([bump_ecg(s).signal for s in range(3)])
    env = VecSegmentGridEnv(clf, x, n_envs=4, seed=0, probs=clf.predict_proba(x))
    env.reset(seed=1)
    before = clf.rows
    env.step(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]))
    assert clf.rows - before == 4


def test_reset_with_the_same_seed_gives_the_same_episodes():
    clf = BumpClassifier()
    x = np.stack([bump_ecg(s).signal for s in range(3)])
    env = VecSegmentGridEnv(clf, x, n_envs=3, seed=0)
    first = env.reset(seed=7)
    a = env.step(np.array([[5, 2], [30, 7], [60, 12]]))
    second = env.reset(seed=7)
    b = env.step(np.array([[5, 2], [30, 7], [60, 12]]))
    assert np.array_equal(first["cells"], second["cells"])
    assert np.array_equal(a[0]["cells"], b[0]["cells"]) and np.array_equal(a[1], b[1])


def test_multilabel_target_flips_below_threshold_and_argmax_target_on_class_change():
    clf = BumpClassifier()
    t = diagnosed_targets(np.array([0.2, 0.9]), clf)[0]
    assert t.label == "bump" and t.multilabel
    assert t.flipped(np.array([[0.8, 0.49]]))[0] and not t.flipped(np.array([[0.8, 0.51]]))[0]
    clf.multilabel = False
    t = diagnosed_targets(np.array([0.3, 0.7]), clf)[0]
    assert not t.multilabel and t.flipped(np.array([[0.6, 0.4]]))[0]


def test_training_episodes_start_localised_and_measure_each_input_once():
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])
    env = VecSegmentGridEnv(
        clf, x[None], n_envs=2, seed=0, max_steps=5, probs=probs, localize_budget=23, localize=coarse_to_fine
    )
    clf.rows = 0
    obs = env.reset()
    probed = CELL_FEATURES.index("probed")
    assert obs["cells"][:, :, probed].any(axis=1).all()  # both episodes see the localisation's probes
    assert 0 < clf.rows <= 23  # one input: measured once, the second episode reuses it
    drop = obs["cells"][0, :, CELL_FEATURES.index("last_drop")]
    lead, a, b = env.episodes[0].grid.cell_times(int(np.argmax(drop)))
    assert lead == 0 and a - 0.15 <= BUMP_AT_S <= b + 0.15  # the bump
