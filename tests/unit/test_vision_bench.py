"""Issue 20's synthetic digits (`ecglens.datasets.digits_canvas`), the committed vision zoo, the vision peers and a
smoke run of benchmarks/vision.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ecglens.baselines import vision_peers as vp
from ecglens.classifiers import vision_zoo as vz
from ecglens.datasets import digits_canvas as dc

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------- data
def test_images_shapes_range_and_boxes():
    d = dc.make_images(12, split="test", seed=3)
    assert d.x.shape == (12, 3, 64, 64) and d.x.dtype == np.float32
    assert 0.0 <= d.x.min() and d.x.max() <= 1.0
    assert d.y.dtype == np.int64 and set(d.y) <= set(range(10))
    a, b = dc.SPLITS["test"]
    assert ((d.digit_index >= a) & (d.digit_index < b)).all()
    h = d.box[:, 2] - d.box[:, 0]
    w = d.box[:, 3] - d.box[:, 1]
    assert (d.box[:, :2] >= 0).all() and (d.box[:, 2:] <= 64).all()
    assert (h >= 4).all() and (h <= dc.DIGIT_SIZES[1]).all() and (w >= 2).all() and (w <= dc.DIGIT_SIZES[1]).all()
    _, labels = dc._digits()
    assert (labels[d.digit_index] == d.y).all()


def test_ink_lies_in_the_box_and_contrasts():
    """The ink departs from the background just outside its box by about the generator's contrast."""
    d = dc.make_images(6, split="train", seed=5)
    for i in range(6):
        y0, x0, y1, x1 = d.box[i]
        inside = d.x[i][:, y0:y1, x0:x1].mean(axis=0)
        ring = np.concatenate(
            [
                d.x[i][:, max(y0 - 3, 0) : y0, x0:x1].mean(axis=0).ravel(),
                d.x[i][:, y1 : y1 + 3, x0:x1].mean(axis=0).ravel(),
            ]
        )
        # The ink is at least MIN_CONTRAST from the background it sits on: some box pixel departs from the ring.
        if ring.size:
            assert np.abs(inside - np.median(ring)).max() > 0.2


def test_ink_box_is_tight():
    alpha = np.zeros((20, 20), np.float32)
    alpha[3:9, 5:7] = 0.9
    alpha[10, 10] = 0.1  # below INK_ALPHA: not ink
    assert dc._ink_box(alpha, 10, 20).tolist() == [13, 25, 19, 27]


def test_deterministic_prefixes_and_splits():
    a = dc.make_images(5, split="validation", seed=7)
    b = dc.make_images(9, split="validation", seed=7)
    np.testing.assert_array_equal(a.x, b.x[:5])
    np.testing.assert_array_equal(a.box, b.box[:5])
    c = dc.make_images(5, split="validation", seed=8)
    assert not np.array_equal(a.x, c.x)
    pools = [set(dc.split_indices(s)) for s in dc.SPLITS]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    assert sum(len(p) for p in pools) == dc.N_DIGITS
    with pytest.raises(ValueError):
        dc.split_indices("nope")


def test_grayscale_and_resized_follow_the_colour_render():
    colour = dc.make_images(3, split="test", seed=2)
    gray = dc.make_images(3, split="test", seed=2, channels=1)
    np.testing.assert_allclose(gray.x[:, 0], colour.x.mean(axis=1), atol=1e-6)
    small = dc.make_images(3, split="test", seed=2, channels=1, size=48)
    assert small.x.shape == (3, 1, 48, 48)
    assert (small.box[:, :2] <= np.floor(colour.box[:, :2] * 0.75) + 1e-9).all()
    assert (small.box[:, 2:] >= np.ceil(colour.box[:, 2:] * 0.75) - 1e-9).all()


def test_clips_move_the_digit_and_keep_the_canvas():
    c = dc.make_clips(4, split="test", seed=1)
    assert c.x.shape == (4, dc.FRAMES, 3, 64, 64) and c.box.shape == (4, dc.FRAMES, 4)
    for i in range(4):
        first, last = c.box[i, 0], c.box[i, -1]
        travel = np.hypot(*(last[:2] - first[:2]).astype(float))
        assert travel >= dc.MIN_TRAVEL - 2
        sizes = c.box[i, :, 2:] - c.box[i, :, :2]
        assert (sizes == sizes[0]).all()  # the same digit, only moved
    np.testing.assert_array_equal(dc.make_clips(2, split="test", seed=1).x, c.x[:2])


# ------------------------------------------------------------------------------------------------- zoo
CARD_KEYS = {
    "name",
    "modality",
    "input_shape",
    "classes",
    "output",
    "input_scale",
    "architecture",
    "description",
    "intended_use",
    "data",
    "metrics",
    "training",
    "extra",
}


def test_every_member_is_committed_with_a_contract_card():
    assert len(vz.members("heldout", "image")) >= 2 and len(vz.members("heldout", "video")) >= 1
    for spec in vz.ZOO:
        path = vz.member_path(spec.name)
        assert path.exists(), path
        assert path.stat().st_size < 1_000_000
        card = json.loads(path.with_suffix(".json").read_text())
        assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
        assert card["modality"] == spec.modality and card["input_shape"] == vz.input_shape(spec)
        assert card["classes"] == [str(d) for d in range(10)] and card["output"] == "logits"
        assert card["extra"]["split"] == spec.split and card["input_scale"] == spec.input_scale
        assert 0.0 <= card["metrics"]["test_accuracy"] <= 1.0
    assert any(vz.member_path(m.name, ".onnx").exists() for m in vz.ZOO)
    readme = (vz.vision_dir() / "README.md").read_text()
    assert all(m.name in readme for m in vz.ZOO)


@pytest.mark.parametrize("name", [m.name for m in vz.ZOO])
def test_committed_weights_load_and_classify_test_digits(name):
    """``ecglens.load_classifier`` takes each card; the weights label fresh test-split digits about as well as the
    card says (no retraining)."""
    from ecglens.classifiers import load_classifier

    spec = vz.spec_of(name)
    clf = load_classifier(vz.member_path(name), device="cpu")
    n = 40 if spec.modality == "image" else 12
    x, y = vz.dataset(spec, "test", n, seed=11)
    p = np.asarray(clf.predict_proba(x))
    assert p.shape == (n, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    card = json.loads(vz.member_path(name).with_suffix(".json").read_text())
    acc = float((p.argmax(axis=1) == y).mean())
    assert acc >= min(0.5, card["metrics"]["test_accuracy"] - 0.25), (acc, card["metrics"]["test_accuracy"])


@pytest.mark.parametrize("arch", sorted({m.arch for m in vz.ZOO}))
def test_every_architecture_scripts_as_train_vision_zoo_exports_it(arch):
    """`ecglens train-vision-zoo` saves ``torch.jit.script`` of the member (an untrained one here: no training)."""
    import torch

    spec = next(m for m in vz.ZOO if m.arch == arch)
    model = vz.Member(spec).eval()
    scripted = torch.jit.script(model)
    x = torch.rand(2, *vz.input_shape(spec)) * spec.input_scale
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


def test_onnx_copy_agrees_with_torchscript():
    from ecglens.classifiers import load_classifier

    for spec in vz.ZOO:
        onnx = vz.member_path(spec.name, ".onnx")
        if not onnx.exists():
            continue
        x, _ = vz.dataset(spec, "test", 6, seed=12)
        a = np.asarray(load_classifier(onnx, device="cpu").predict_proba(x))
        b = np.asarray(load_classifier(vz.member_path(spec.name), device="cpu").predict_proba(x))
        np.testing.assert_allclose(a, b, atol=1e-4)


# ------------------------------------------------------------------------------------------------- peers
def test_patch_grid_cells_and_removal():
    g = vp.PatchGrid((3, 64, 64))
    assert g.n_cells == 64 and g.mask.shape == (3, 64, 64)
    assert g.cell_box(9) == (0, 8, 8, 16, 16)
    v = vp.PatchGrid((8, 1, 48, 48))
    assert v.n_cells == 8 * 36 and v.cell_box(36 + 7) == (1, 8, 8, 16, 16)
    x = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    filled = vp.patch_mean(x, g)
    np.testing.assert_allclose(filled[:, :8, :8], x[:, :8, :8].mean(axis=(1, 2), keepdims=True) * np.ones((1, 8, 8)))
    y = vp.remove_cells(x, filled, g, [9])
    assert np.array_equal(y[:, :8, :8], x[:, :8, :8]) and np.allclose(y[:, 8:16, 8:16], filled[:, 8:16, 8:16])
    np.testing.assert_allclose(
        g.pool(np.broadcast_to(np.arange(64).reshape(8, 8).repeat(8, 0).repeat(8, 1), g.shape)), np.arange(64)
    )
    assert vp.psnr_db(x, x + 0.01) == pytest.approx(40.0, abs=1e-3)


def test_counted_black_box_refuses_past_its_budget():
    box = vp.CountedBlackBox(lambda a: np.tile([[0.9, 0.1]], (len(a), 1)), budget=5)
    box(np.zeros((3, 1, 8, 8)))
    with pytest.raises(vp.BudgetSpent):
        box(np.zeros((3, 1, 8, 8)))
    assert box.queries == 3 and box.remaining == 2


def _bright_patch_model(patch_cell: int, grid: vp.PatchGrid):
    """A black box answering class 1 while the patch ``patch_cell`` holds a bright pixel (its brightest one: the
    patch's mean, what removal leaves, does not count)."""
    sel = grid.mask == patch_cell

    def predict(a: np.ndarray) -> np.ndarray:
        s = a[:, sel].max(axis=1)
        p1 = 1 / (1 + np.exp(-(s - 0.5) * 20))
        return np.stack([1 - p1, p1], axis=1)

    return predict


@pytest.mark.parametrize("method", list(vp.PEERS))
def test_peers_find_the_patch_the_model_reads(method):
    g = vp.PatchGrid((1, 32, 32))
    x = np.full((1, 32, 32), 0.2, np.float32)
    _, y0, x0, _, _ = g.cell_box(5)
    x[0, y0 + 3 : y0 + 5, x0 + 3 : x0 + 5] = 0.95
    box = vp.CountedBlackBox(_bright_patch_model(5, g), budget=None if method in vp.STANDARD else 120)
    kw = {"seed": 0}
    if method in vp.BUDGETED:
        kw["budget"] = 120
    if method in ("square-attack", "hopskipjump"):
        kw["n_classes"] = 2
    res = vp.PEERS[method](x, 1, g, box, **kw)
    assert res.cell_scores.shape == (g.n_cells,)
    assert box.queries <= (g.n_cells + 1 if method in vp.STANDARD else 120)
    if method not in ("square-attack",):
        assert int(np.argmax(res.cell_scores)) == 5
    if res.adversarial is not None:
        assert res.adversarial.shape == x.shape
        assert _bright_patch_model(5, g)(res.adversarial[None])[0].argmax() == 0


# ------------------------------------------------------------------------------------------------- benchmark
def _benchmark_module():
    path = REPO / "benchmarks" / "vision.py"
    spec = importlib.util.spec_from_file_location("vision_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_runs_every_method(capsys):
    bench = _benchmark_module()
    assert bench.main(["--quick", "--modality", "image"]) == 0
    out = capsys.readouterr().out
    for method in bench.METHODS:
        assert bench.LABELS[method] in out
    assert "agent not available" not in out
    assert "Targets (image" in out


def test_art_layout_tiles_a_clip_into_a_square_image_and_back():
    to_art, from_art = vp.art_layout((8, 3, 16, 16))
    a = np.random.default_rng(1).random((2, 8, 3, 16, 16)).astype(np.float32)
    tiled = to_art(a)
    assert tiled.shape == (2, 3, 48, 48)
    np.testing.assert_array_equal(tiled[:, :, 16:32, 0:16], a[:, 3])  # frame 3: row 1, column 0
    np.testing.assert_array_equal(from_art(tiled), a)


def test_targets_table_pairs_the_agent_with_the_better_peer_case_by_case():
    bench = _benchmark_module()

    def row(method, budget, case, auc):
        return bench.Row("m", "image", case, method, budget, 1, 0.1, 0.1, True, auc, True, 35.0)

    peer = [0.30, 0.10, 0.50, 0.20]
    rows = [row("occlusion", None, c, a) for c, a in enumerate(peer)]
    rows += [row("feature-ablation", None, c, a + 0.01) for c, a in enumerate(peer)]
    # the agent's rows in another order: the pairing is by case, so every difference is -0.05
    rows += [row("agent", 500, c, peer[c] - 0.05) for c in (3, 1, 0, 2)]
    line = bench.targets_table(rows, ["m"]).splitlines()[-1]
    cols = [c.strip() for c in line.strip("|").split("|")]
    assert cols[2].endswith("(0.275)")  # Occlusion's mean, the better peer
    assert cols[3] == "-0.050 [-0.050, -0.050]"
