"""The experiments' contract: a figure is an experiment (computes) and a pure drawing (draws);
`make_figure` writes it with a sidecar that holds no run time, so the same seed rewrites the
same file; the benchmarks' bookkeeping and the one timer."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from adamflow.experiments import FIGURES, FigureData, make_figure
from adamflow.experiments._timing import best_time, cold_and_warm, median_time, timed
from adamflow.experiments.figures import _resolve, run_experiment

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_is_an_experiment_and_a_drawing(name):
    experiment, drawing = (_resolve(path) for path in FIGURES[name])
    parameters = inspect.signature(experiment).parameters
    assert list(parameters) == ["quick", "seed"], name
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values()), name
    assert list(inspect.signature(drawing).parameters) == ["data"], name


def test_make_figure_rewrites_the_same_sidecar_without_pyplot(tmp_path):
    """Run in a fresh interpreter: the figure is made and saved without pyplot (no backend
    is chosen), and a second run with the same seed writes the same sidecar, byte for byte."""
    code = textwrap.dedent(
        f"""
        import sys, jax
        jax.config.update("jax_enable_x64", True)
        from adamflow.experiments import make_figure
        for out in ("a", "b"):
            make_figure("kadam_stability", {str(tmp_path)!r} + "/" + out, quick=True)
        assert "matplotlib.pyplot" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
    first = (tmp_path / "a" / "kadam_stability.json").read_bytes()
    assert first == (tmp_path / "b" / "kadam_stability.json").read_bytes()
    meta = json.loads(first)
    assert meta["seed"] == 0 and meta["parameters"]["quick"] is True
    assert "seconds" not in first.decode()
    # The results are the numbers the experiment returned.
    assert meta["bound_top"] == pytest.approx(7.27, rel=1e-3)  # C(0.9, 0.999)
    assert (tmp_path / "a" / "kadam_stability.png").read_bytes()[:4] == b"\x89PNG"


def test_kadam_stability_experiment_then_drawing():
    """The quick k-Adam stability run: a stable top level stays under C(β₁, β₂_k) while
    plain Adam with the lower level's β₂ explodes (theory/kadam.md §3); the drawing returns a
    Figure of two panels."""
    figure_data = run_experiment("kadam_stability", quick=True)
    assert isinstance(figure_data, FigureData)
    results = figure_data.results
    assert results["max_update"]["2-Adam_top"] <= results["bound_top"]
    assert results["max_update"]["3-Adam_top"] <= results["bound_top"]
    assert results["max_update"]["plain_adam_unstable"] > 100 * results["bound_top"]
    assert results["sweep_max_top_over_bound"] <= 1.0
    curves = figure_data.data["curves"]
    assert np.max(curves["2-Adam_top"]) == pytest.approx(
        results["max_update"]["2-Adam_top"], rel=1e-3
    )
    figure = _resolve(FIGURES["kadam_stability"][1])(figure_data.data)
    assert isinstance(figure, Figure) and len(figure.axes) == 2


def test_make_figure_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        make_figure("no_such_figure", tmp_path)


# --------------------------------------------------------------------------- timer


def test_timer_measures_and_returns_the_result(monkeypatch):
    """On a fake clock that advances 1 s per reading and 10 s per call of the function, each
    timed call is 11 s (two readings bracket it): the timers must report exactly that."""
    from adamflow.experiments import _timing

    clock = {"now": 0.0}

    def perf_counter() -> float:
        clock["now"] += 1.0
        return clock["now"]

    monkeypatch.setattr(_timing.time, "perf_counter", perf_counter)
    durations = iter([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0])
    calls = []

    def counted() -> int:
        calls.append(1)
        clock["now"] += next(durations)
        return len(calls)

    seconds, value = timed(counted)
    assert (seconds, value) == (11.0, 1)  # 10 s of work + the 1 s the second reading adds
    cold, warm = cold_and_warm(counted, 3)  # 21 s; then 31, 41, 51 -> median 41
    assert (cold, warm) == (21.0, 41.0) and len(calls) == 5
    assert median_time(counted, 2) == 66.0 and len(calls) == 7  # median of 61 and 71
    assert best_time(counted, 0) == 81.0 and len(calls) == 8  # at least one call


# --------------------------------------------------------------------------- benchmarks


def test_bench_goals_table_and_json(tmp_path):
    from adamflow.experiments.bench import BenchOptions, format_table, goal_status, save_results

    with pytest.raises(ValueError, match="gpu_grid"):
        BenchOptions(gpu_grid=0)
    assert BenchOptions(quick=True).repeats < BenchOptions().repeats
    results = {
        "phase_vs_optax_loop": 600.0,
        "diffrax_vs_scipy": 3.0,
        "scaling_grid_cost_ratio": math.nan,
        "devices": ["cpu"],
        "quick": True,
        "sections": {"phase": ["phase_vs_optax_loop"], "diffrax": ["diffrax_vs_scipy"]},
    }
    status = goal_status(results)
    assert status["phase_vs_optax_loop"]["met"] is True
    assert status["diffrax_vs_scipy"]["met"] is False
    assert status["scaling_grid_cost_ratio"]["met"] is False  # NaN never meets a goal
    results["goals"] = status
    table = format_table(results)
    assert "== goals" in table and "NO" in table and "600" in table
    path = save_results(tmp_path / "bench.json", results)
    assert json.loads(path.read_text())["scaling_grid_cost_ratio"] == "nan"
