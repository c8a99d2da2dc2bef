"""The anytime agent's learned action policy: masked greedy choice, save / load, a few steps of MaskablePPO."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import FS, BumpClassifier, bump_ecg

from ecglens.agent.action_policy import ActionPolicy, ActionPolicyCard, default_action_policy_path, load_action_policy
from ecglens.agent.anytime import ACTIONS, FEATURES, AnytimeEpisode
from ecglens.agent.env import Episode
from ecglens.agent.explain import explain, resolve_policy
from ecglens.agent.grid import cell_features, make_grid
from ecglens.classifiers.base import QueryCounter
from ecglens.targets import diagnosed_targets


def _policy(seed: int = 0) -> ActionPolicy:
    rng = np.random.default_rng(seed)
    sizes = [len(FEATURES), 8, len(ACTIONS)]
    weights = [(rng.normal(size=(b, a)), rng.normal(size=b)) for a, b in zip(sizes, sizes[1:])]
    return ActionPolicy(weights, ActionPolicyCard(list(FEATURES), list(ACTIONS), [8]))


def _episode(budget: int = 200) -> AnytimeEpisode:
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    return AnytimeEpisode(ep, QueryCounter(clf, budget=budget))


def test_the_policy_only_ever_takes_a_legal_action():
    run, policy = _episode(), _policy()
    for _ in range(40):
        legal = run.legal()
        action = policy(run)
        assert legal[action]
        if action == "stop":
            break
        run.step(action)


def test_a_saved_policy_loads_with_its_card_and_chooses_the_same(tmp_path):
    policy = _policy(3)
    path = policy.save(tmp_path / "p.pt")
    again = load_action_policy(path)
    feats = _episode().features()
    np.testing.assert_allclose(again.logits(feats), policy.logits(feats))
    assert again.card.actions == list(ACTIONS)


def test_a_policy_for_other_actions_is_refused():
    with pytest.raises(ValueError, match="other features or actions"):
        ActionPolicy([(np.zeros((2, 2)), np.zeros(2))], ActionPolicyCard(["x"], ["localise"], []))


def test_explain_says_who_chose_the_actions():
    e = explain(bump_ecg(), BumpClassifier(), query_budget=60, policy=_policy())
    assert e.method == "agent" and e.fallback_reason is None
    e = explain(bump_ecg(), BumpClassifier(), query_budget=60, policy="hand")
    assert e.method == "anytime" and e.fallback_reason is None
    assert default_action_policy_path().exists()  # committed: the learned policy is the ECG default
    e = explain(bump_ecg(), BumpClassifier(), query_budget=60)
    assert e.method == "agent" and e.fallback_reason is None
    assert resolve_policy(None, default="hand")[1] == "anytime"  # images and video: the fixed order
    with pytest.raises(FileNotFoundError):
        explain(bump_ecg(), BumpClassifier(), query_budget=60, policy="no/such/policy.pt")


def test_a_few_steps_of_maskable_ppo_give_a_policy_the_loop_can_run():
    pytest.importorskip("sb3_contrib")
    from ecglens.agent.train_actions import Case, train_action_policy

    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    grid = make_grid(x, FS, segment_s=0.25)
    case = Case(clf, x, probs, diagnosed_targets(probs, clf)[0], "bump", grid, cell_features(x, grid))
    policy, info = train_action_policy([case], timesteps=64, seed=0)
    assert info["seconds"] >= 0 and policy.card.trained_on["timesteps"] == 64
    e = explain(bump_ecg(), clf, query_budget=40, policy=policy)
    assert e.method == "agent" and e.queries <= 40
