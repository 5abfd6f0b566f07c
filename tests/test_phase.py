"""Phase diagrams (theory/stability.md): the measured stable region against β₂ > β₁², the
growth ln(β₁/√β₂), the continuous flow, sharding, checkpoints, divergence, the drawings and
the baselines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from adamflow import problems
from adamflow.experiments.phase_baselines import element_steps, minimal_kernel, optax_loop_point
from adamflow.phase import (
    GROWTH_BLOCK,
    PhaseDiagram,
    _result,
    _sweep,
    clear_checkpoint,
    default_grid,
    grid,
    load_phase_diagram,
    phase_diagram,
    theory_growth,
)

ROOT = Path(__file__).resolve().parent.parent
SPARSE = problems.sparse()  # one object, so compiled sweeps are reused across tests
TINY = {"steps": 300, "lr": 1e-2, "progress": False}
TINY_B1S = np.array([0.5, 0.8, 0.9, 0.99, 0.999])
TINY_B2S = np.array([0.1, 0.9, 0.99, 0.999])


@pytest.fixture(scope="module")
def sparse_map() -> PhaseDiagram:
    """A reduced default map: 12 x 12 log grid, 1500 steps."""
    b1s, b2s = default_grid(12)
    return phase_diagram(SPARSE, b1s, b2s, steps=1500, lr=1e-2, progress=False)


def test_sparse_map_agrees_with_b2_greater_than_b1_squared(sparse_map: PhaseDiagram) -> None:
    d = sparse_map
    b1, b2 = np.meshgrid(d.b1s, d.b2s, indexing="ij")
    np.testing.assert_array_equal(d.theory_stable, b2 > b1**2)
    assert d.agreement >= 0.99
    assert d.band_cells < 0.25 * d.cells  # most cells are decidable
    assert not d.band[d.theory_stable].any()  # the band lies on the unstable side
    # Both phases are present and clearly separated: O(1) updates against huge ones.
    assert d.max_update[d.theory_stable].max() < 30
    decided_unstable = ~d.theory_stable & ~d.band
    assert decided_unstable.sum() >= 10
    assert np.log10(d.max_update[decided_unstable]).min() > 2
    assert np.log10(d.max_update).max() > 20
    # The measured growth per silent step follows ln(β₁/√β₂) (sign everywhere, size roughly).
    measured = np.isfinite(d.growth_rate) & (np.abs(d.theory_growth) > 0.01)
    assert np.all(np.sign(d.growth_rate[measured]) == np.sign(d.theory_growth[measured]))
    np.testing.assert_allclose(
        d.growth_rate[decided_unstable], d.theory_growth[decided_unstable], rtol=0.1
    )
    np.testing.assert_allclose(d.theory_growth, theory_growth(b1, b2))
    assert np.all(np.isfinite(d.final_loss))


def test_switch_off_growth_is_ln_b1_over_sqrt_b2_within_two_percent() -> None:
    n0 = 1000
    b1s = grid(0.5, 0.99, 8)  # β₁^n0 ≤ 4e-5: the bias corrections have settled
    b2s = grid(0.1, 0.999, 8)
    d = phase_diagram(
        problems.switch_off(n0=n0), b1s, b2s, steps=n0 + 1000, lr=1e-2, progress=False
    )
    unstable = ~d.theory_stable & ~d.band
    assert unstable.sum() >= 15
    relative = np.abs(d.growth_rate[unstable] / d.theory_growth[unstable] - 1.0)
    assert np.all(relative < 0.02), relative.max()
    assert d.agreement == 1.0
    # The silence after the switch-off is the whole rest of the run (to within a block).
    assert np.all(d.longest_silence >= 1000 - GROWTH_BLOCK)
    np.testing.assert_allclose(d.grad_scale, 1.0)


def test_continuous_flow_has_the_same_boundary_as_the_discrete_optimizer(
    sparse_map: PhaseDiagram,
) -> None:
    discrete = sparse_map
    flow = phase_diagram(
        SPARSE,
        discrete.b1s,
        discrete.b2s,
        steps=1500,
        lr=1e-2,
        dynamics="continuous",
        substeps=2,
        progress=False,
    )
    assert flow.agreement >= 0.99
    decided = ~discrete.band & ~flow.band
    assert decided.sum() >= 100
    np.testing.assert_array_equal(discrete.measured_stable[decided], flow.measured_stable[decided])
    # Same physics, not merely the same verdicts: max|u| within a factor 3 where it is O(1).
    stable = discrete.theory_stable
    ratio = flow.max_update[stable] / discrete.max_update[stable]
    assert np.all((ratio > 1 / 3) & (ratio < 3))
    assert np.array_equal(flow.theory_stable, discrete.theory_stable)


def test_bad_input_is_refused_before_anything_is_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compile(*args: object) -> None:
        raise AssertionError("compiled despite bad input")

    monkeypatch.setattr(_sweep, "compile_chunk_fn", no_compile)
    good = {"b1s": [0.5, 0.9], "b2s": [0.9, 0.99], "steps": 10, "lr": 0.1}
    cases = [
        ({"b1s": [0.5, 1.0]}, "b1s"),
        ({"b1s": [-0.1, 0.5]}, "b1s"),
        ({"b2s": [0.9, 1.2]}, "b2s"),
        ({"b2s": []}, "b2s must not be empty"),
        ({"b1s": [0.5, 0.9, 0.7]}, "b1s must be strictly"),
        ({"b2s": [0.9, 0.9]}, "b2s must be strictly"),
        ({"b1s": [[0.5, 0.9]]}, "b1s must be a 1-D"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"lr": 0.0}, "lr must be finite and > 0"),
        ({"lr": -1e-3}, "lr must be finite and > 0"),
        ({"eps": -1.0}, "eps must be finite and >= 0"),
        ({"dynamics": "euler"}, "dynamics must be one of"),
        ({"seed": -1}, "seed must be an integer"),
    ]
    for change, message in cases:
        arguments = {**good, **change}
        with pytest.raises(ValueError, match=message):
            phase_diagram(
                SPARSE,
                arguments.pop("b1s"),
                arguments.pop("b2s"),
                progress=False,
                **arguments,
            )
    with pytest.raises(TypeError, match="problem must be"):
        phase_diagram("sparse", [0.5], [0.9], steps=10, lr=0.1)  # type: ignore[arg-type]


def test_interrupted_sweep_resumes_without_redoing_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, **TINY)
    folder = tmp_path / "checkpoint"
    real = _sweep.compute_chunk
    calls = []

    def interrupted(*args: object) -> object:
        if len(calls) == 1:
            raise KeyboardInterrupt("stopped after the first chunk")
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_sweep, "compute_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, **TINY)
    assert sorted(p.name for p in folder.glob("chunk_*.npz")) == ["chunk_00000.npz"]

    counted = []

    def counting(*args: object) -> object:
        counted.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_sweep, "compute_chunk", counting)
    resumed = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, **TINY)
    assert len(counted) == 3  # 20 cells in 4 chunks of 5: the first was not redone
    for name in ("max_update", "growth_rate", "diverged_step", "longest_silence", "final_loss"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name))
    # Read back without pickle.
    with np.load(folder / "chunk_00001.npz", allow_pickle=False) as data:
        assert data["max_update"].shape == (5,)
    # A checkpoint made with other parameters is refused, not mixed in.
    with pytest.raises(ValueError, match="other parameters.*steps"):
        phase_diagram(
            SPARSE,
            TINY_B1S,
            TINY_B2S,
            chunk_size=6,
            checkpoint=folder,
            **{**TINY, "steps": 301},
        )
    with pytest.raises(ValueError, match="other parameters.*problem"):
        phase_diagram(
            problems.sparse(p=0.03),
            TINY_B1S,
            TINY_B2S,
            chunk_size=6,
            checkpoint=folder,
            **TINY,
        )
    clear_checkpoint(folder)
    assert not folder.exists()


@pytest.mark.slow
def test_sharding_over_four_devices_gives_identical_numbers(tmp_path: Path) -> None:
    reference = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, **TINY)
    script = textwrap.dedent(
        f"""
        import jax
        jax.config.update("jax_enable_x64", True)
        from adamflow import problems
        from adamflow import phase_diagram
        assert len(jax.devices()) == 4, jax.devices()
        d = phase_diagram(problems.sparse(), {TINY_B1S.tolist()}, {TINY_B2S.tolist()},
                          steps=300, lr=1e-2, progress=False, chunk_size=6)
        assert d.parameters["devices"] == 4
        d.save({str(tmp_path)!r}, "sharded")
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sharded = load_phase_diagram(tmp_path / "sharded.npz")
    for name in ("max_update", "growth_rate", "diverged_step", "longest_silence", "final_loss"):
        np.testing.assert_array_equal(getattr(sharded, name), getattr(reference, name))
    assert sharded.agreement == reference.agreement


def test_diverging_cells_are_recorded_and_do_not_poison_the_others() -> None:
    # ε = 0: after the switch-off v underflows before m and u becomes inf for β₂ < β₁².
    problem = problems.switch_off(n0=50)
    kwargs = {"steps": 1300, "lr": 1e-2, "eps": 0.0, "progress": False}
    d = phase_diagram(problem, [0.9], [0.1, 0.5, 0.999], chunk_size=1, **kwargs)
    np.testing.assert_array_equal(d.diverged[0], [True, True, False])
    assert np.all(d.diverged_step[0, :2] > 50) and d.diverged_step[0, 2] == -1
    assert np.isinf(d.max_update[0, :2]).all() and np.isfinite(d.max_update[0, 2])
    np.testing.assert_array_equal(d.measured_stable[0], [False, False, True])
    alone = phase_diagram(problem, [0.9], [0.999], chunk_size=1, **kwargs)
    np.testing.assert_array_equal(alone.max_update[0, 0], d.max_update[0, 2])
    np.testing.assert_array_equal(alone.growth_rate[0, 0], d.growth_rate[0, 2])


def test_save_and_load_round_trip_without_pickle(sparse_map: PhaseDiagram, tmp_path: Path) -> None:
    path = sparse_map.save(tmp_path)
    assert path.name == "phase_diagram.npz"
    loaded = load_phase_diagram(tmp_path)
    for name in _result.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(sparse_map, name))
    assert loaded.agreement == sparse_map.agreement
    assert loaded.band_cells == sparse_map.band_cells
    meta = json.loads((tmp_path / "phase_diagram.json").read_text())
    assert meta["seed"] == 0 and "adamflow_version" in meta
    assert meta["parameters"]["problem"]["name"] == "sparse"
    assert meta["parameters"]["steps"] == 1500
    assert meta["summary"]["cells"] == 144
    assert "elapsed_s" not in meta["summary"]  # no run time: a rerun rewrites the same file


def test_plot_draws_the_map(sparse_map: PhaseDiagram) -> None:
    from matplotlib.figure import Figure

    from adamflow.plotting.phase import draw_phase_diagram_figure, plot_phase_diagram

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_phase_diagram(sparse_map, ax) is fig
    assert ax.get_xscale() == "log" and r"$1-\beta_1$" in ax.get_xlabel()
    assert r"$1-\beta_2$" in ax.get_ylabel()
    assert any(
        "β₁²" in t.get_text() or r"\beta_1^2" in t.get_text() for t in ax.get_legend().get_texts()
    )
    drawn = draw_phase_diagram_figure(sparse_map)
    assert isinstance(drawn, Figure) and drawn.axes[0].get_xlabel() == ax.get_xlabel()


def test_phase_diagram_figure_is_the_default_map(sparse_map: PhaseDiagram) -> None:
    from adamflow.experiments.phase_figures import phase_diagram_experiment

    figure_data = phase_diagram_experiment(quick=True)
    assert figure_data.results == json.loads(json.dumps({"summary": sparse_map.summary()}))
    np.testing.assert_array_equal(figure_data.data.max_update, sparse_map.max_update)
    assert figure_data.parameters["steps"] == 1500 and figure_data.parameters["seed"] == 0


def test_switch_off_figure_measures_ln_b1_over_sqrt_b2() -> None:
    from matplotlib.figure import Figure

    from adamflow.experiments.phase_figures import switch_off_growth_experiment
    from adamflow.plotting.phase import draw_switch_off_growth

    figure_data = switch_off_growth_experiment(quick=True)
    results = json.loads(json.dumps(figure_data.results))  # JSON-able as it is
    assert results == figure_data.results
    assert set(results) == {"slopes", "growth_cells", "growth_max_rel_error"}
    assert results["growth_cells"] >= 15 and results["growth_max_rel_error"] < 0.025
    assert len(results["slopes"]) == 5
    for slope in results["slopes"]:
        np.testing.assert_allclose(slope["theory"], theory_growth(slope["b1"], slope["b2"]))
        assert abs(slope["measured"] / slope["theory"] - 1.0) < 0.03, slope
    assert set(figure_data.parameters) == {"traces", "grid"}
    fig = draw_switch_off_growth(figure_data.data)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_baselines_compute_the_same_max_update() -> None:
    steps = TINY["steps"]
    sweep = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, **TINY)
    b1, b2 = np.meshgrid(TINY_B1S, TINY_B2S, indexing="ij")
    with jax.enable_x64(True):
        kernel = minimal_kernel(SPARSE, steps=steps, lr=1e-2)(b1.ravel(), b2.ravel())
    np.testing.assert_allclose(kernel.reshape(b1.shape), sweep.max_update, rtol=1e-9)
    point = optax_loop_point(SPARSE, 0.9, 0.999, steps=steps, lr=1e-2)
    np.testing.assert_allclose(point, sweep.max_update[2, 3], rtol=1e-9)
    assert element_steps(SPARSE, 20, steps) == 32 * 20 * steps


def test_grid_helpers() -> None:
    values = grid(0.5, 0.999, 4)
    np.testing.assert_allclose(
        1 - values, [0.5, 0.5 * (0.002 ** (1 / 3)), 0.5 * 0.002 ** (2 / 3), 0.001]
    )
    np.testing.assert_allclose(grid(0.1, 0.4, 4, spacing="linear"), [0.1, 0.2, 0.3, 0.4])
    b1s, b2s = default_grid(40)
    assert b1s.size == b2s.size == 40
    # the default grid holds Adam's default and the boundary crosses it
    assert b1s.min() < 0.9 < b1s.max() and b2s.min() < 0.999 < b2s.max()
    with pytest.raises(ValueError, match="high must be in"):
        grid(0.5, 1.0, 3)
    with pytest.raises(ValueError, match="spacing must be"):
        grid(0.5, 0.9, 3, spacing="geometric")
