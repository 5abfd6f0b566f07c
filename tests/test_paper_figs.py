"""The paper's Figs. 3-4 and the assumptions figure: the CNN, the CIFAR-10 reader, the
per-level strategies, the trainer that runs cascades of different k together, and tiny runs
of each experiment (the quick figures themselves are slow tests)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import adamflow as af
from adamflow.experiments import paper_figs as pf
from adamflow.experiments import paper_training as pt
from adamflow.experiments.scale_invariant import normalized_linear_classifier
from adamflow.experiments.training import cross_entropy, digits_mlp_task

# ----------------------------------------------------------------------------- the CNN


def test_conv3x3_is_a_same_padded_convolution():
    kx, kw, kb = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, 6, 4, 3))
    w = jax.random.normal(kw, (3, 3, 3, 5))
    b = jax.random.normal(kb, (5,))
    expected = (
        jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + b
    )
    np.testing.assert_allclose(pt.conv3x3(x, w, b), expected, rtol=1e-10, atol=1e-10)
    pooled = pt.avg_pool2(jnp.arange(16.0).reshape(1, 4, 4, 1))
    np.testing.assert_allclose(pooled[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("normalize", [False, True])
def test_cnn_gradient_shapes_and_one_training_step(normalize):
    task = pt.digits_cnn_task(0)
    assert task.data.x_train.shape[1:] == (8, 8, 1)
    model = task.model(normalize)
    params = model.init(jax.random.PRNGKey(1))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))
    x, y = task.data.x_train[:32], task.data.y_train[:32]
    assert jax.eval_shape(model.apply, params, x).shape == (32, 10)

    @jax.jit  # one compile, not one per primitive run eagerly
    def loss(p):
        return cross_entropy(model.apply(p, x), y)

    grads = jax.jit(jax.grad(loss))(params)
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    assert jax.tree_util.tree_map(jnp.shape, grads) == shapes
    assert shapes["conv1"]["w"] == (3, 3, 1, 8) and shapes["dense"]["w"] == (4 * 4 * 16, 64)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    opt = af.Adam(1e-2)
    state, u = af.cascade_step(opt, af.init_state(1, params), grads)
    new = af.parameter_step(opt, params, u)
    assert float(loss(new)) < float(loss(params))


def test_cnn_with_layernorm_makes_the_hidden_weight_scale_invariant():
    model = pt.cnn(8, 8, 1, 10, normalize=True)
    params = model.init(jax.random.PRNGKey(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 8, 8, 1))
    scaled = {**params, "dense": {k: 3.0 * v for k, v in params["dense"].items()}}
    np.testing.assert_allclose(model.apply(params, x), model.apply(scaled, x), rtol=2e-3)
    with pytest.raises(ValueError, match="even"):
        pt.cnn(7, 8, 1, 10)


# ----------------------------------------------------------------------------- CIFAR-10


def _records(labels, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)  # planes R, G, B
    raw = np.concatenate(
        [np.concatenate([[label], img.ravel()]) for label, img in zip(labels, images)]
    ).astype(np.uint8)
    return raw, images


def test_cifar10_reader_on_a_two_record_file(tmp_path):
    raw, planes = _records([3, 7])
    assert raw.size == 2 * pt.CIFAR10_RECORD == 2 * 3073
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(raw.tobytes())
    images, labels = pt.read_cifar10_bin(path)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [3, 7]
    # Channel c of pixel (row, col) is byte 1 + 1024 c + 32 row + col of its record.
    assert images[1, 5, 9, 2] == raw[pt.CIFAR10_RECORD + 1 + 2048 + 5 * 32 + 9]
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2), planes)

    bad = tmp_path / "bad.bin"
    bad.write_bytes(raw[:-1].tobytes())
    with pytest.raises(ValueError, match="3073"):
        pt.read_cifar10_bin(bad)


def test_load_cifar10_from_a_cache_folder(tmp_path, monkeypatch):
    (tmp_path / "data_batch_1.bin").write_bytes(_records([0, 1, 2], seed=1)[0].tobytes())
    (tmp_path / "test_batch.bin").write_bytes(_records([9, 4], seed=2)[0].tobytes())
    data = pt.load_cifar10(tmp_path, train_files=("data_batch_1.bin",))
    assert data.x_train.shape == (3, 32, 32, 3) and data.x_test.shape == (2, 32, 32, 3)
    assert data.y_train.tolist() == [0, 1, 2] and data.y_test.tolist() == [9, 4]
    assert data.n_classes == 10 and data.x_train.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(data.x_train).mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="data_batch_2.bin"):
        pt.load_cifar10(tmp_path)
    monkeypatch.setenv("ADAMFLOW_DATA", str(tmp_path))
    assert pt.default_cifar10_dir() == tmp_path / "cifar-10-batches-bin"


# ----------------------------------------------------------------------------- strategies


def test_strategies_give_the_documented_per_level_factors():
    assert pt.level_factors("equal", 3) == ((0.9,) * 3, (0.999,) * 3)
    assert pt.level_factors("tuned", 3) == ((0.9,) * 3, (0.999,) * 3)
    assert pt.level_factors("no_momentum", 4) == ((0.9, 0.0, 0.0, 0.0), (0.999,) * 4)
    b1s, b2s = pt.level_factors("decay", 10)
    assert b1s == (0.9,) * 10
    expected = [
        1 - (1e-3) ** (2.0 ** -(i - 1)) * 0.1 ** (1 - 2.0 ** -(i - 1)) for i in range(1, 11)
    ]
    np.testing.assert_allclose(b2s, expected, rtol=1e-12)
    np.testing.assert_allclose(b2s[:3], [0.999, 0.99, 1 - 10**-1.5], rtol=1e-12)
    assert all(a > b for a, b in zip(b2s, b2s[1:]))  # moving toward 0.9 ...
    assert all(b > 0.9 for b in b2s) and all(af.stability.is_stable(b1s, b2s))  # ... stably
    for strategy in pt.STRATEGIES:  # k = 1 is Adam under every strategy
        assert pt.level_factors(strategy, 1) == ((0.9,), (0.999,))
    spec = pt.strategy_spec("no_momentum", 1e-3, 3, weight_decay=0.1)
    assert spec.b1s == (0.9, 0.0, 0.0) and spec.weight_decay == 0.1
    with pytest.raises(ValueError):
        pt.level_factors("sideways", 2)


def test_depth_step_equals_the_k_level_cascade():
    spec = af.KAdam(1e-2, k=4, b1=(0.9, 0.0, 0.5, 0.8), b2=(0.999, 0.99, 0.9, 0.95), eps=1e-8)
    grads = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
    for depth in (1, 2, 4):
        short = spec.replace(k=depth, b1=spec.b1s[:depth], b2=spec.b2s[:depth])
        s_full, s_short = af.init_state(4, grads[0]), af.init_state(depth, grads[0])
        for g in grads:
            s_full, u_full = pt.depth_step(spec, jnp.asarray(depth), s_full, g)
            s_short, u_short = af.cascade_step(short, s_short, g)
            np.testing.assert_allclose(u_full, u_short, rtol=1e-13)
    padded = pt.pad_levels(af.Adam(1e-3, b1=0.8, b2=0.99), 3)
    assert padded.k == 3 and padded.b1s == (0.8,) * 3 and padded.b2s == (0.99,) * 3


@pytest.mark.slow  # vmapped specs in one program are also checked by test_kadam's trainer test
def test_train_grid_runs_different_k_in_one_program():
    task = digits_mlp_task(0)
    keys = pt.seed_keys(0, 2)
    specs = [af.Adam(3e-3), pt.strategy_spec("no_momentum", 3e-3, 2)]
    curves = pt.train_grid(
        task.model(False), task.data, specs, keys, steps=40, batch_size=32, eval_every=20
    )
    assert curves.test_loss.shape == (2, 2, 2) and curves.steps.tolist() == [20, 40]
    assert np.all(np.isfinite(curves.test_loss)) and np.all(curves.test_accuracy > 0.3)
    alone = pt.train_grid(
        task.model(False), task.data, specs[1:], keys, steps=40, batch_size=32, eval_every=20
    )
    np.testing.assert_allclose(alone.test_loss[0], curves.test_loss[1], rtol=1e-4)


# ----------------------------------------------------------------------------- measures


def test_steps_to_threshold_and_spearman():
    steps = np.array([10, 20, 30])
    curves = np.array([[0.5, 0.2, 0.1], [0.5, 0.4, 0.3], [np.nan, 0.1, 0.05]])
    np.testing.assert_array_equal(pf.steps_to_threshold(steps, curves, 0.2), [20, np.inf, 20])
    assert pf.spearman([1, 2, 3, 4], [10, 20, 30, np.inf]) == pytest.approx(1.0)
    assert pf.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pf.spearman([1, 2], [1, 2]) is None and pf.spearman([1, 2, 3], [5, 5, 5]) is None


def test_alignment_and_entry_spread():
    theta = np.array([[1.0, 0.0], [1.0, 1.0]])
    grad = np.array([[0.0, 2.0], [1.0, 0.0]])
    cos = pf.alignment_matrix(theta, grad)
    np.testing.assert_allclose(cos[1], [1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert cos[0, 0] == 0.0 and np.isnan(cos[0, 1])
    alike = pf.entry_spread(np.full((3, 4, 2), 2.0))
    np.testing.assert_allclose(alike["cv_v"], 0.0, atol=1e-15)
    np.testing.assert_allclose(alike["q90_q10_sqrt_v"], 1.0)
    v = np.array([[[1.0, 4.0, 0.0]], [[1.0, 4.0, 0.0]]])  # third entry never sees a gradient
    spread = pf.entry_spread(v)
    assert int(spread["live_entries"]) == 2 and int(spread["entries"]) == 3
    np.testing.assert_allclose(spread["cv_sqrt_v"], 0.5 / 1.5)


def test_weights_are_orthogonal_to_their_own_gradient():
    problem = normalized_linear_classifier(0)
    rec = pf.record_alignment(
        af.AdamW(0.01, weight_decay=0.1), problem.minibatch_grad(32), problem.theta0, 40, 10
    )
    assert rec["theta"]["W"].shape == (4, 64, 10) and rec["lag_cos"]["W"].shape == (40, 10)
    cos = pf.alignment_matrix(rec["theta"]["W"], rec["grad"]["W"])
    assert np.abs(np.diagonal(cos)).max() < 1e-12  # ⟨W(t), g_W(t)⟩ = 0: scale invariance
    # Step n has the lags 1..n: row n - 1 is finite up to lag n, NaN beyond.
    assert np.isfinite(rec["lag_cos"]["W"][5]).sum() == 6
    assert np.isfinite(rec["lag_cos"]["W"][9]).all()
    # The first step moves W along -u₁ = -sign(g): W(1) leans against g(0).
    assert rec["lag_cos"]["W"][0, 0] < 0


# ----------------------------------------------------------------------------- tiny runs


def test_tiny_generalization_grid_and_its_drawing():
    from adamflow.plotting.paper_figs import draw_paper_fig3_generalization

    out = pf.generalization_grid(
        digits_mlp_task(0),
        [0.01, 0.5],
        [0.001, 0.7],
        lr=3e-3,
        weight_decay=1e-2,
        steps=40,
        eval_every=10,
        n_seeds=2,
        threshold=1.5,
    )
    data, summary = out["data"], out["summary"]
    assert data["C"].shape == (2, 2) and data["final_test_loss"].shape == (2, 2)
    c = af.stability.paper_criterion(0.5, 0.3)  # β₁ = 0.5, β₂ = 1 − 0.7
    assert data["C"][1, 1] == pytest.approx(c)
    assert data["stable"].tolist() == [[True, False], [True, True]]
    assert summary["spearman_final_test_loss_vs_C"]["n_cells"]["all"] == 4
    figure = draw_paper_fig3_generalization([data])
    # (a) shows log10 of the final test loss cell by cell (white where it diverged).
    mesh = figure.axes[0].collections[0].get_array()
    loss = np.asarray(data["final_test_loss"], float)
    expected = np.log10(np.where(np.isfinite(loss), loss, np.nan)).T.ravel()
    np.testing.assert_allclose(np.ma.filled(mesh, np.nan).ravel(), expected, equal_nan=True)
    # (b) places every finite cell at (C, loss), coloured by exact stability.
    points = {
        (round(float(x), 12), round(float(y), 12))
        for collection in figure.axes[1].collections
        for x, y in collection.get_offsets()
    }
    for c_value, value in zip(np.ravel(data["C"]), loss.ravel(), strict=True):
        if np.isfinite(value):
            assert (round(float(c_value), 12), round(float(value), 12)) in points


def test_tiny_kadam_strategies_and_its_drawing():
    from adamflow.plotting.paper_figs import draw_paper_fig4_kadam

    task = pt.digits_cnn_task(0)
    task = task._replace(data=task.data._replace(x_train=task.data.x_train[:256]))
    task = task._replace(data=task.data._replace(y_train=task.data.y_train[:256]))
    out = pf.kadam_strategies(
        task,
        ks=(1, 2),
        lrs=(3e-3,),
        fixed_lr=3e-3,
        adamw_decays=(0.1,),
        steps=10,
        eval_every=10,
        n_seeds=2,
    )
    summary, data = out["summary"], out["data"]
    assert set(summary["final_test_accuracy"]) == {"equal", "no_momentum", "decay", "tuned"}
    assert summary["k2_beats_k1_count"]["of"] == 4
    # k = 1 is the same Adam run under every strategy (trained once).
    firsts = {name: entry["mean"][0] for name, entry in data["strategies"].items()}
    assert len(set(firsts.values())) == 1
    assert set(summary["ablation"]) >= {"2-Adam, level-2 b1=0 (no LN)", "Adam + LN", "AdamW + LN"}
    figure = draw_paper_fig4_kadam(data)
    # (a) draws each strategy's seed-mean accuracy at every k (one error-bar line each).
    drawn = [np.asarray(line.get_ydata(), float) for line in figure.axes[0].lines]
    for name, entry in data["strategies"].items():
        assert any(
            y.shape == np.shape(entry["mean"]) and np.allclose(y, entry["mean"]) for y in drawn
        ), name
    # The ablation panel has one bar per variant, as long as its mean.
    bars = figure.axes[-1].patches
    widths = sorted(round(bar.get_width(), 12) for bar in bars)
    assert widths == sorted(round(float(e["mean"]), 12) for e in data["ablation"].values())


def test_tiny_meta_assumptions_and_its_drawing():
    from adamflow.experiments.scale_invariant import normalized_mlp
    from adamflow.plotting.paper_figs import draw_paper_assumptions

    out = pf.meta_assumptions(
        normalized_mlp(0, hidden=8),
        b1s=(0.9, 0.0),
        lr=0.01,
        weight_decay=0.1,
        b2=0.999,
        batch_size=32,
        steps=60,
        every=10,
    )
    summary = out["summary"]["b1=0.9"]["W1"]
    assert summary["abs_cos_same_step_max"] < 1e-12
    assert summary["live_entries"] <= summary["entries"] == 64 * 8
    assert summary["cv_v_median"] > 0
    assert isinstance(draw_paper_assumptions(out["data"]), Figure)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["paper_fig3_generalization", "paper_fig4_kadam", "paper_assumptions"]
)
def test_quick_experiment_then_drawing(name):
    import json

    from adamflow.fileio import _jsonable
    from adamflow.plotting import paper_figs as drawings

    fd = getattr(pf, f"{name}_experiment")(quick=True)
    assert json.loads(json.dumps(_jsonable(fd.results))) == _jsonable(fd.results)
    assert fd.parameters["quick"] is True
    figure = getattr(drawings, f"draw_{name}")(fd.data)
    assert isinstance(figure, Figure) and figure.axes
    for axis in figure.axes:  # every panel draws something
        assert axis.lines or axis.collections or axis.patches or axis.images, axis
