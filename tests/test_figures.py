"""`scripts/make_figures.py --quick` regenerates every figure; the Results page shows each
one."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adamflow.experiments import FIGURES

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _keys(tree):
    """Every key of a nested JSON object."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key
            yield from _keys(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _keys(value)


@pytest.mark.slow
def test_quick_mode_writes_every_figure_with_a_sidecar(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_figures.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        check=True,
        cwd=ROOT,
        timeout=900,
    )
    for name in FIGURES:
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert png.stat().st_size > 10_000, f"{name}.png looks empty"
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["seed"] == 0 and "adamflow_version" in meta, name
        # Sidecars are committed: no run times, so the same seed gives the same file.
        assert not any("seconds" in key or key.endswith("_s") for key in _keys(meta)), name


def test_gallery_lists_every_committed_figure():
    page = (ROOT / "docs" / "results.md").read_text()
    shown = set(re.findall(r"figures/([\w-]+)\.png", page))
    committed = {p.stem for p in (ROOT / "figures").glob("*.png")}
    assert committed == set(FIGURES), (committed, set(FIGURES))
    assert committed <= shown, committed - shown


# ----------------------------------------------------------------------------- convergence


def _two_term_errors(lrs, e1, e2):
    """Final error vectors η e₁ + η² e₂ and their lengths."""
    vectors = [lr * np.asarray(e1) + lr**2 * np.asarray(e2) for lr in lrs]
    return vectors, [float(np.linalg.norm(v)) for v in vectors]


def test_asymptotic_fit_skips_the_pre_asymptotic_stretch():
    from adamflow.experiments.convergence import LEADING_LRS, asymptotic_fit, error_expansion

    # Like AdamW's leading flow: e₂ nearly opposite to e₁, cancelling near η* ≈ 2.2e-3.
    e1, e2 = [0.03, 0.0, 0.0], [-13.5, 3.0, 0.0]
    vectors, errors = _two_term_errors(LEADING_LRS, e1, e2)
    fit = asymptotic_fit(LEADING_LRS, errors)
    assert fit["order"] == pytest.approx(1.0, abs=0.03), fit
    assert fit["lr_max"] <= 2.5e-4 and fit["lr_min"] == min(LEADING_LRS), fit
    assert fit["n_lrs"] >= 3
    expansion = error_expansion(LEADING_LRS, vectors)
    assert expansion is not None
    np.testing.assert_allclose(expansion["e1"], e1, atol=1e-9)
    np.testing.assert_allclose(expansion["e2"], e2, rtol=1e-6, atol=1e-6)
    star = -np.dot(e1, e2) / np.dot(e2, e2)
    assert expansion["cancellation_lr"] == pytest.approx(star, rel=1e-6)
    assert expansion["cosine"] < -0.9


def test_asymptotic_fit_floor_and_minimum_length():
    from adamflow.experiments.convergence import asymptotic_fit, error_expansion

    lrs = [0.02 / 2**k for k in range(8)]
    # Second order, but the two smallest lrs sit below the rounding floor: left out.
    errors = [3.0 * lr**2 for lr in lrs[:6]] + [1e-12, 2e-12]
    fit = asymptotic_fit(lrs, errors, floor=1e-11)
    assert fit["order"] == pytest.approx(2.0, abs=1e-9) and fit["lr_min"] == lrs[5]
    # No agreeing run of local slopes: the smallest three lrs are fitted.
    zigzag = [1e-3, 1e-4, 5e-5, 1e-6, 9e-7]
    fit = asymptotic_fit(lrs[:5], zigzag)
    assert fit["n_lrs"] == 3 and fit["lr_max"] == lrs[2]
    # An unresolved e₁ (second-order errors) gives no cosine and no η*.
    vectors, _ = _two_term_errors(lrs, [0.0, 0.0], [3.0, 1.0])
    expansion = error_expansion(lrs, vectors, lr_max=0.01)
    assert expansion is not None
    assert expansion["cancellation_lr"] is None and expansion["cosine"] is None
    assert error_expansion(lrs[:3], vectors[:3], lr_max=0.02) is None


def test_convergence_drawing_draws_the_committed_sidecar():
    # The sidecar's results are the drawing's data: the committed JSON draws as is.
    from adamflow.plotting.convergence import draw_convergence

    meta = json.loads((ROOT / "figures" / "convergence.json").read_text())
    fig = draw_convergence(meta)
    axes = fig.get_axes()
    assert len(axes) == len(meta["fits"]) == 3
    for ax, (name, entry) in zip(axes, meta["fits"].items()):
        assert name in ax.get_title()
        legend = ax.get_legend()
        assert legend is not None
        labels = [text.get_text() for text in legend.get_texts()]
        order = entry["leading"]["asymptotic"]["order"]
        assert any(f"order {order:.2f}" in label for label in labels), labels
