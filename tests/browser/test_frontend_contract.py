"""Checks of the static frontend against the Python side, without a browser: the distortion kinds and the
robustness score's meaning stay in step with the backend, the palette stays distinct for colour-blind readers,
and nothing is loaded from a CDN."""

from __future__ import annotations

import importlib
import itertools
import re
from pathlib import Path

import numpy as np

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
VIEWER = (FRONTEND / "js" / "viewer.js").read_text()

# Machado, Oliveira & Fernandes (2009), "A physiologically-based model for simulation of color vision
# deficiency", IEEE TVCG 15(6): linear-RGB matrices at severity 1.0 (complete dichromacy).
_DICHROMACY = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}
# CIE76 colour difference: about 2.3 is just noticeable; we ask for clearly different hues on a white page.
MIN_DELTA_E = 15.0


def _js_object(name: str) -> dict[str, str]:
    body = re.search(rf"export const {name} = \{{(.*?)\n\}};", VIEWER, re.S).group(1)
    return dict(re.findall(r'(\w+):\s*"([^"]+)"', body))


def _lab(hex_colour: str, matrix=None) -> np.ndarray:
    srgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    rgb = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    if matrix is not None:
        rgb = np.clip(np.asarray(matrix) @ rgb, 0.0, 1.0)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_the_page_takes_the_kinds_from_the_api_and_has_a_colour_and_label_for_each():
    from ecglens.distortions import KINDS

    analysis = (FRONTEND / "js" / "analysis.js").read_text()
    assert 'api("/distortions")' in analysis
    for kind in KINDS:  # no list of kinds of its own, only their colours and labels
        assert f'"{kind}"' not in analysis and not re.search(rf"\[[^\]]*\"{kind}\"", VIEWER)
    assert set(KINDS) <= set(_js_object("DISTORTION_COLOURS")) and set(KINDS) <= set(_js_object("DISTORTION_LABELS"))


def test_distortion_colours_stay_distinct_for_colour_blind_readers():
    colours = _js_object("DISTORTION_COLOURS")
    assert len(set(colours.values())) == len(colours)
    for vision, matrix in {"typical": None, **_DICHROMACY}.items():
        labs = {kind: _lab(hex_colour, matrix) for kind, hex_colour in colours.items()}
        worst = min((float(np.linalg.norm(labs[a] - labs[b])), a, b) for a, b in itertools.combinations(labs, 2))
        assert worst[0] >= MIN_DELTA_E, f"{vision}: {worst[1]} and {worst[2]} look alike (ΔE {worst[0]:.1f})"


def test_robustness_score_meaning_is_the_robustness_modules_own():
    # The module, not the `ecglens.robustness` function the package exports under the same name.
    module = importlib.import_module("ecglens.robustness")
    js = (FRONTEND / "js" / "robustness.js").read_text()
    parts = re.search(r"export const SCORE_MEANING = (.*?);\n", js, re.S).group(1)
    meaning = "".join(re.findall(r'"([^"]*)"', parts))
    doc = " ".join(module.__doc__.replace("*", "").split())
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", meaning) if s.strip()]
    assert len(sentences) == 2
    for sentence in sentences:
        assert sentence.lower() in doc.lower(), sentence


def test_frontend_loads_nothing_from_other_hosts():
    for path in FRONTEND.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            text = path.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
            assert not re.search(r"""(import|fetch)\s*\(?\s*["'](https?:)?//""", text), path
    html = (FRONTEND / "index.html").read_text()
    assert 'src="/static/vendor/plotly.min.js"' in html
