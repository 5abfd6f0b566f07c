"""Phase diagrams (theory/stability.md): the measured stable region against β₂ > β₁², the
growth ln(β₁/√β₂), the continuous flow, sharding, checkpoints, divergence, the drawings and
the baselines."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamflow import _optimizers, problems
from adamflow.experiments.phase_baselines import element_steps, minimal_kernel, optax_loop_point
from adamflow.phase import (
    BAND_MARGIN,
    GROWTH_BLOCK,
    CheckpointExists,
    CheckpointMismatch,
    PhaseDiagram,
    SweepInterrupted,
    _kernel,
    _result,
    _sweep,
    clear_checkpoint,
    default_grid,
    grid,
    load_phase_diagram,
    phase_diagram,
    predicted_peak,
    silent_update,
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
    # ln(β₁/√β₂) computed independently, cell by cell, with Python's math.
    independent = np.array([[math.log(x / math.sqrt(y)) for y in d.b2s] for x in d.b1s])
    np.testing.assert_allclose(d.theory_growth, independent, rtol=1e-13, atol=1e-16)
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
        ({"threshold": 0.0}, "threshold must be finite and > 0"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
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
    with pytest.raises(TypeError, match="lr must be a number.*no schedule"):
        phase_diagram(SPARSE, [0.5], [0.9], steps=10, lr=lambda n: 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resume must be True or False"):
        phase_diagram(SPARSE, [0.5], [0.9], steps=10, lr=0.1, resume="yes")  # type: ignore[arg-type]


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
    with pytest.raises(SweepInterrupted) as info:
        phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, **TINY)
    assert isinstance(info.value, KeyboardInterrupt)  # Ctrl-C stays Ctrl-C
    assert (info.value.saved, info.value.total, info.value.folder) == (1, 4, folder)
    assert "1 of 4 chunks saved" in str(info.value)
    assert sorted(p.name for p in folder.glob("chunk_*.npz")) == ["chunk_00000.npz"]

    counted = []

    def counting(*args: object) -> object:
        counted.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_sweep, "compute_chunk", counting)
    # Without resume=True the finished chunk is neither deleted nor silently reused.
    with pytest.raises(CheckpointExists, match="holds 1 of 4 finished chunks.*resume=True"):
        phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, **TINY)
    assert (folder / "chunk_00000.npz").is_file() and not counted
    resumed = phase_diagram(
        SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, resume=True, **TINY
    )
    assert len(counted) == 3  # 20 cells in 4 chunks of 5: the first was not redone
    for name in ("max_update", "growth_rate", "diverged_step", "longest_silence", "final_loss"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name))
    # Read back without pickle.
    with np.load(folder / "chunk_00001.npz", allow_pickle=False) as data:
        assert data["max_update"].shape == (5,)
    # A checkpoint made with other parameters is refused, not mixed in, resume or not.
    with pytest.raises(CheckpointMismatch, match="other parameters.*steps"):
        phase_diagram(
            SPARSE,
            TINY_B1S,
            TINY_B2S,
            chunk_size=6,
            checkpoint=folder,
            resume=True,
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


def test_a_chunk_interrupted_while_being_written_is_saved_before_reraising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoint"
    real = _sweep.write_chunk
    calls = []

    def interrupted_write(path: Path, piece: dict[str, np.ndarray]) -> None:
        calls.append(path.name)
        if len(calls) == 2:  # Ctrl-C arrives while the second chunk is written
            raise KeyboardInterrupt
        real(path, piece)

    monkeypatch.setattr(_sweep, "write_chunk", interrupted_write)
    with pytest.raises(SweepInterrupted) as info:
        phase_diagram(SPARSE, TINY_B1S, TINY_B2S, chunk_size=6, checkpoint=folder, **TINY)
    assert info.value.saved == 2  # both finished chunks are on disk
    assert sorted(p.name for p in folder.glob("chunk_*.npz")) == [
        "chunk_00000.npz",
        "chunk_00001.npz",
    ]


def test_unusable_checkpoint_paths_are_refused_up_front(tmp_path: Path) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=f"checkpoint must be a folder, but {afile} is a file"):
        phase_diagram(SPARSE, [0.9], [0.99], checkpoint=afile, **TINY)
    below = afile / "sub"
    with pytest.raises(OSError, match=f"checkpoint folder {below} cannot be created"):
        phase_diagram(SPARSE, [0.9], [0.99], checkpoint=below, **TINY)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "chunk_00000.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="chunk files but no meta.json"):
        phase_diagram(SPARSE, [0.9], [0.99], checkpoint=stray, **TINY)
    assert afile.read_text() == "not a folder"


def test_cells_whose_gradient_goes_nonfinite_are_reported_and_left_out() -> None:
    # The gradient is NaN beyond θ = 1.2: only cells whose momentum overshoots get there.
    def grad(theta: jax.Array, key: jax.Array) -> jax.Array:
        return (theta - 1.0) + jnp.where(theta > 1.2, jnp.nan, 0.0)

    overshoot = problems.Problem("overshoot", np.zeros(1), grad)
    b1s, b2s = [0.0, 0.5, 0.9, 0.99], [0.9, 0.999]
    d = phase_diagram(overshoot, b1s, b2s, steps=300, lr=0.05, progress=False)
    np.testing.assert_array_equal(
        d.nonfinite, [[False, False], [False, False], [True, False], [True, True]]
    )
    assert np.all(d.nonfinite_step[d.nonfinite] > 0)
    assert np.all(d.nonfinite_step[~d.nonfinite] == -1)
    assert not d.diverged.any() and not d.measured_stable[d.nonfinite].any()
    # Left out of the comparison: the stable cell (0.99, 0.999) is no disagreement.
    summary = d.summary()
    assert summary["nonfinite_cells"] == 3 and summary["disagreements"] == 0
    assert d.agreement == 1.0 and not d.decided[d.nonfinite].any()
    assert summary["decided_cells"] == int(np.sum(~d.band & ~d.nonfinite))

    # A cell whose update had exceeded the threshold before the gradient broke keeps its
    # verdict (unstable): it diverged, it is not "non-finite".
    def wild(theta: jax.Array, key: jax.Array) -> jax.Array:
        return SPARSE.grad(theta, key) + jnp.where(jnp.abs(theta) > 30.0, jnp.nan, 0.0)

    sparse_nan = problems.Problem("sparse_nan", SPARSE.theta0, wild, support=SPARSE.support)
    b1s, b2s = default_grid(8)
    d = phase_diagram(sparse_nan, b1s, b2s, steps=1500, lr=1e-2, progress=False)
    assert d.diverged.sum() >= 10 and not (d.diverged & d.nonfinite).any()
    assert not (d.diverged & d.theory_stable).any() and d.agreement == 1.0


def test_a_grad_of_the_wrong_shape_or_signature_is_refused_before_compiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_compile(*args: object) -> None:
        raise AssertionError("compiled despite a bad problem")

    monkeypatch.setattr(_sweep, "compile_chunk_fn", no_compile)
    wrong = problems.Problem("x", np.zeros(3), lambda theta, key: jnp.zeros(2))
    with pytest.raises(ValueError, match=r"grad must return.*expected float64\[3\], got"):
        phase_diagram(wrong, [0.9], [0.99], **TINY)
    keyless = problems.Problem("x", np.zeros(3), lambda theta: theta)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"grad must be callable as grad\(theta, key\)"):
        phase_diagram(keyless, [0.9], [0.99], **TINY)


def test_segments_report_progress_and_change_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short chunk runs in one call; a long one in up to SEGMENTS_PER_CHUNK segments.
    assert _kernel.schedule(3000, 400 * 32).segments == 1  # the default run's chunks
    assert _kernel.schedule(3000, 10**9)[2:] == (25, 15, 0)  # 375 blocks: 15 x 25
    plan = _kernel.schedule(300, 10**9)
    assert plan.blocks == 37 and plan.tail == 4 and plan.segments > 1
    assert plan.segments * plan.segment_blocks + plan.remainder == plan.blocks
    b1, b2 = np.array([0.9, 0.99, 0.5]), np.array([0.999, 0.9, 0.1])
    pieces, reports = [], []
    for work in (1, 10**12):  # every chunk in segments, then in one call
        monkeypatch.setattr(_kernel, "SEGMENT_WORK", work)
        # A new problem object each time: nothing compiled before is reused.
        problem = problems.Problem(
            "sparse", SPARSE.theta0, SPARSE.grad, SPARSE.loss, support=SPARSE.support
        )
        config = _kernel.Config(problem, 300, 1e-2, 1e-8, 0, "discrete", 4, True)
        with jax.enable_x64(True):
            runner = _kernel.compile_chunk_fn(config, tuple(jax.devices()[:1]), 3)
            reported: list[int] = []
            pieces.append(
                _kernel.compute_chunk(runner, config, runner.tables(), b1, b2, 3, reported.append)
            )
        reports.append((runner.schedule.segments, reported))
    (segments, reported), (one, whole) = reports
    assert segments == plan.segments and len(reported) == segments + 1 and sum(reported) == 300
    assert one == 1 and sum(whole) == 300
    # Cut or not, the same numbers, bit for bit, and the same trace.
    segmented, single = pieces
    assert segmented.keys() == single.keys() and segmented["trace"].shape == (3, 37)
    for name, value in segmented.items():
        np.testing.assert_array_equal(value, single[name], err_msg=name)


def test_progress_bar_counts_cell_steps(capsys: pytest.CaptureFixture[str]) -> None:
    phase_diagram(SPARSE, TINY_B1S, TINY_B2S, steps=300, lr=1e-2, chunk_size=10)
    err = capsys.readouterr().err
    assert "phase diagram" in err and "6.00k/6.00k" in err  # 20 cells x 300 steps


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
    legend = ax.get_legend()
    assert legend is not None
    assert any("β₁²" in t.get_text() or r"\beta_1^2" in t.get_text() for t in legend.get_texts())
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
        # ln(β₁/√β₂) by hand: the value the experiment reports is the theory's.
        expected = math.log(slope["b1"]) - 0.5 * math.log(slope["b2"])
        assert slope["theory"] == pytest.approx(expected, rel=1e-12)
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


def test_silent_update_is_adams_own_update_without_gradient() -> None:
    """`silent_update` (theory/stability.md §2.1 from the run's moments) is exactly what the
    optimizer does when the gradient is zero after step n0."""
    from adamflow import Adam, cascade_step
    from adamflow._optimizers import CascadeState

    b1, b2, eps, n0 = 0.97, 0.9, 1e-3, 37
    m0, v0 = 0.4, 0.05
    opt = Adam(1e-2, b1, b2, eps)
    state = CascadeState(jnp.asarray(n0, jnp.int32), (jnp.asarray([m0]),), (jnp.asarray([v0]),))
    updates = []
    for _ in range(200):
        state, u = cascade_step(opt, state, jnp.zeros(1))
        updates.append(float(u[0]))
    expected = silent_update(b1, b2, m0, v0, n0, np.arange(1, 201), eps)
    np.testing.assert_allclose(updates, expected, rtol=1e-12)


def test_predicted_peak_is_a_tight_lower_bound_of_the_silence_peak() -> None:
    """The band logic: the predicted peak is the largest update of the silence, never more
    (so a cell outside the band must show it)."""
    rng = np.random.default_rng(0)
    for eps in (1e-8, 1e-3):
        for _ in range(200):
            b1 = 1 - 10 ** rng.uniform(-3, np.log10(0.5))
            b2 = 1 - 10 ** rng.uniform(-4, np.log10(0.9))
            m0 = 10 ** rng.uniform(-3, 1)
            v0 = m0**2 * 10 ** rng.uniform(-1, 3)
            n0, length = int(rng.integers(1, 5000)), int(rng.integers(0, 800))
            steps = np.arange(length + 1)
            brute = np.log10(np.max(silent_update(b1, b2, m0, v0, n0, steps, eps)))
            peak = predicted_peak(b1, b2, m0, v0, n0, length, eps)
            assert brute - 1e-9 <= peak <= brute + 1e-12, (b1, b2, m0, v0, n0, length)
    # No recorded silence: nothing predicted (NaN).
    assert np.isnan(predicted_peak(0.9, 0.5, np.nan, np.nan, 0, 0, 1e-8))
    # The ε cap: G/ε = 1e3 caps the growth of (0.99, 0.9) near (G/ε)^(1-p), whatever the length.
    capped = predicted_peak(0.99, 0.9, 1e-5, 1e-10, 10_000, 10_000, 1e-8)
    assert 2.0 < capped < 3.0


def test_band_holds_the_cells_whose_growth_the_run_cannot_show(sparse_map: PhaseDiagram) -> None:
    d = sparse_map
    # Outside the band every theory-unstable cell showed its growth: the peak predicted
    # along the longest silence is a value that silence really reached.
    unstable = ~d.theory_stable & np.isfinite(d.predicted_peak)
    assert np.all(np.log10(d.max_update[unstable]) >= d.predicted_peak[unstable] - 1e-9)
    decided_unstable = ~d.theory_stable & ~d.band
    assert np.all(d.max_update[decided_unstable] > d.threshold)
    assert np.all(d.predicted_peak[d.band] < np.log10(d.threshold * BAND_MARGIN))
    # Synthetic cells: the band follows the prediction (and NaN, no silence, is undecidable).
    b1s, b2s = np.array([0.99]), np.array([0.5, 0.9, 0.95, 0.999])
    raw: dict[str, np.ndarray] = {key: np.zeros(4) for key in _kernel.CellResult._fields}
    raw.update(
        max_update=np.array([1e9, 1e9, 50.0, 3.0]),
        diverged_step=np.full(4, -1),
        nonfinite_step=np.full(4, -1),
        silence_m=np.array([1.0, 1.0, np.nan, 1.0]),
        silence_v=np.ones(4),
        silence_start=np.full(4, 1000.0),
        silence_length=np.array([400.0, 1.0, 400.0, 400.0]),
        trace=np.zeros((4, 0)),
    )
    d = _result.analyse(
        b1s, b2s, raw, eps=1e-8, threshold=100.0, parameters={}, elapsed=0.0, trace_steps=None
    )
    np.testing.assert_array_equal(d.theory_stable[0], [False, False, False, True])
    np.testing.assert_array_equal(d.band[0], [False, True, True, False])
    assert d.agreement == 1.0 and d.band_cells == 2 and d.decided_cells == 2


@pytest.mark.slow
def test_long_default_sweep_agrees_everywhere_outside_the_band() -> None:
    """160 × 160 cells, 12 000 steps (a few minutes on 2 cores): near the boundary the
    growth is slow and starts from small updates; before the band was computed from the
    moments at the longest silence, 12 such cells fell outside it and disagreed."""
    b1s, b2s = default_grid(160)
    d = phase_diagram(SPARSE, b1s, b2s, steps=12_000, lr=1e-2, progress=False)
    assert d.agreement == 1.0, d.summary()
    assert d.summary()["nonfinite_cells"] == 0 and d.band_cells < 0.11 * d.cells


def test_weight_decay_runs_adamw_cells_and_is_recorded(tmp_path: Path) -> None:
    plain = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, **TINY)
    decayed = phase_diagram(SPARSE, TINY_B1S, TINY_B2S, weight_decay=0.5, **TINY)
    assert plain.parameters["weight_decay"] == 0.0
    assert decayed.parameters["weight_decay"] == 0.5
    assert not np.array_equal(plain.max_update, decayed.max_update)
    assert not np.array_equal(plain.final_loss, decayed.final_loss)
    np.testing.assert_array_equal(plain.theory_stable, decayed.theory_stable)
    # The cells are AdamW: one cell against adamflow's own AdamW loop.
    spec = _af_adamw(TINY_B1S[2], TINY_B2S[1], 0.5)
    theta = jnp.asarray(SPARSE.theta0, jnp.float64)
    with jax.enable_x64(True):
        state = _optimizers.init_state(1, theta)
        largest = 0.0
        for n in range(1, TINY["steps"] + 1):
            key = jax.random.fold_in(jax.random.PRNGKey(0), n)
            g = SPARSE.step_gradient(theta, key, jnp.int32(n))
            state, u = _optimizers.cascade_step(spec, state, g)
            theta = _optimizers.parameter_step(spec, theta, u)
            largest = max(largest, float(jnp.max(jnp.abs(u))))
    np.testing.assert_allclose(decayed.max_update[2, 1], largest, rtol=1e-9)
    # Recorded in the checkpoint: a folder made without weight decay is refused with it.
    folder = tmp_path / "ck"
    phase_diagram(SPARSE, TINY_B1S, TINY_B2S, checkpoint=folder, **TINY)
    with pytest.raises(CheckpointMismatch):
        phase_diagram(
            SPARSE, TINY_B1S, TINY_B2S, checkpoint=folder, resume=True, weight_decay=0.5, **TINY
        )
    with pytest.raises(ValueError, match="weight_decay"):
        phase_diagram(SPARSE, TINY_B1S, TINY_B2S, weight_decay=-1.0, **TINY)


def _af_adamw(b1: float, b2: float, weight_decay: float) -> Any:
    from adamflow import AdamW

    return AdamW(TINY["lr"], float(b1), float(b2), 1e-8, weight_decay)


def test_continuous_convention_sets_the_flow_rates_and_the_theory() -> None:
    from adamflow import stability

    # At β₁ = 0.5 the boundaries differ: β₂ > 0.25 (exact), > 0 (Euler), > 1/3 (paper).
    b1s, b2s = np.array([0.5, 0.9]), np.array([0.2, 0.3, 0.5])
    run = {"steps": 240, "lr": 1e-2, "eps": 0.0, "progress": False, "dynamics": "continuous"}
    run["substeps"] = 16  # the paper rate b = 4/η at β₂ = 0.2: RK4 needs short steps
    problem = problems.switch_off(n0=160)
    exact = phase_diagram(problem, b1s, b2s, **run)
    paper = phase_diagram(problem, b1s, b2s, convention="paper", **run)
    assert paper.parameters["convention"] == "paper"
    assert exact.parameters["convention"] == "exact"
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    np.testing.assert_array_equal(paper.theory_stable, stability.is_stable(b1, b2, "paper"))
    np.testing.assert_array_equal(paper.theory_growth, stability.log_growth(b1, b2, "paper"))
    # (0.5, 0.3): stable for the exact flow, growing at |C|/2 = 1/6 per step for the paper's.
    assert exact.growth_rate[0, 1] < 0 < paper.growth_rate[0, 1]
    np.testing.assert_allclose(paper.growth_rate[0, 1], 1 / 6, rtol=2e-3)
    np.testing.assert_allclose(exact.growth_rate, exact.theory_growth, rtol=2e-3)
    np.testing.assert_allclose(paper.growth_rate, paper.theory_growth, rtol=2e-3)
    assert exact.measured_stable[0, 1] and not paper.measured_stable[0, 1]
    with pytest.raises(ValueError, match="convention"):
        phase_diagram(problem, b1s, b2s, convention="paper", **{**run, "dynamics": "discrete"})
    with pytest.raises(ValueError, match="convention"):
        phase_diagram(problem, b1s, b2s, convention="backward", **run)
