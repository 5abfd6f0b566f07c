"""The command lines of scripts/: bad flags exit with status 2 naming the flag, --help names
public functions only, and the main job's checkpoint, Ctrl-C and rerun behaviour."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("phase_diagram", "make_figures", "bench", "corrected_table")
SMALL = ["--grid", "4", "--steps", "200", "--chunk-size", "4", "--no-progress"]


def script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (not run)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_of(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the script's ``main(argv)`` to its ``SystemExit``: (status, stdout + stderr)."""
    with pytest.raises(SystemExit) as info:
        script(name).main(argv)
    out = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out.out + out.err


@pytest.mark.parametrize(
    ("name", "argv", "flag"),
    [
        ("phase_diagram", ["--grid", "0"], "--grid"),
        ("phase_diagram", ["--grid", "ten"], "--grid"),
        ("phase_diagram", ["--b1-range", "0.9", "1.0"], "--b1-range"),
        ("phase_diagram", ["--b2-range", "-0.1", "0.9"], "--b2-range"),
        ("phase_diagram", ["--b2-range", "0.5", "0.5"], "--b2-range"),
        ("phase_diagram", ["--steps", "-5"], "--steps"),
        ("phase_diagram", ["--steps", "0"], "--steps"),
        ("phase_diagram", ["--lr", "0"], "--lr"),
        ("phase_diagram", ["--lr", "nan"], "--lr"),
        ("phase_diagram", ["--eps", "-1e-8"], "--eps"),
        ("phase_diagram", ["--seed", "-1"], "--seed"),
        ("phase_diagram", ["--threshold", "0"], "--threshold"),
        ("phase_diagram", ["--chunk-size", "0"], "--chunk-size"),
        ("phase_diagram", ["--substeps", "0"], "--substeps"),
        ("phase_diagram", ["--p", "0"], "--p"),
        ("phase_diagram", ["--p", "1.5"], "--p"),
        ("phase_diagram", ["--dim", "0"], "--dim"),
        ("phase_diagram", ["--problem", "quadratic", "--p", "0.1"], "--p"),
        ("phase_diagram", ["--problem", "switch_off", "--n0", "0"], "--n0"),
        ("phase_diagram", ["--problem-seed", "-3"], "--problem-seed"),
        ("phase_diagram", ["--problem", "rosenbrock"], "--problem"),
        ("make_figures", ["--seed", "-1"], "--seed"),
        ("make_figures", ["--only", "nonexistent"], "--only"),
        ("bench", ["--gpu-grid", "0"], "--gpu-grid"),
        ("bench", ["--gpu-steps", "1.5"], "--gpu-steps"),
        ("bench", ["--only", "nonexistent"], "--only"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    name: str, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = exit_of(name, argv, capsys)
    assert code == 2, text
    assert f"argument {flag}" in text and "Traceback" not in text, text


@pytest.mark.parametrize("name", ["phase_diagram", "make_figures", "bench", "corrected_table"])
def test_output_paths_that_cannot_be_written_exit_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    if name in ("phase_diagram", "make_figures"):
        # /proc takes no new file even for root, whose permission bits say it may.
        bad = [["--out", str(afile)], ["--out", str(afile / "below")], ["--out", "/proc/nope"]]
        for argv in bad:
            code, text = exit_of(name, argv, capsys)
            assert code == 2 and text.count("\n") == 1, text  # one line, before any compute
            assert text.startswith(f"{name}.py: error: --out {argv[1]}: cannot write"), text
        assert not Path("/proc/nope").exists()
        return
    bad = [["--json", str(tmp_path)], ["--json", str(afile / "below.json")]]
    for argv in bad:
        code, text = exit_of(name, argv, capsys)
        assert code == 2 and "argument --json" in text, text


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_names_public_functions_only(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = exit_of(name, ["--help"], capsys)
    assert code == 0
    assert not re.search(r"\._\w|\b_[a-z]", text), text
    # Every dotted adamflow name the help mentions exists.
    for dotted in set(re.findall(r"adamflow(?:\.\w+)+", text)):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: object = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
    if name == "phase_diagram":
        for flag in ("--p", "--dim", "--threshold", "--chunk-size", "--resume", "--n0"):
            assert flag in text


def test_problem_flags_reach_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    module = script("phase_diagram")
    parser = module.build_parser()
    args = parser.parse_args(["--p", "0.05", "--dim", "8", "--problem-seed", "3"])
    problem = module.make_problem(parser, args)
    assert dict(problem.params) == {"dim": 8, "p": 0.05, "condition": 1.0, "seed": 3}


def test_interrupt_resume_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C after the first chunk: one line with the resume command, status 130, no
    traceback (a real process); a rerun without --resume refuses; the printed command
    finishes the run; a fresh run writes the very same files (no run time in them)."""
    out = tmp_path / "maps"
    argv = [*SMALL, "--out", str(out)]
    code = textwrap.dedent(
        f"""
        import runpy, sys
        import adamflow.phase._sweep as sweep
        real, calls = sweep.compute_chunk, []
        def interrupted(*args):
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
            return real(*args)
        sweep.compute_chunk = interrupted
        sys.argv = ["scripts/phase_diagram.py", *{argv!r}]
        runpy.run_path("scripts/phase_diagram.py", run_name="__main__")
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 130, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, done.stderr[-3000:]
    checkpoint = out / ".phase_diagram_checkpoint"
    assert lines[0].startswith(f"interrupted: 1 of 4 chunks saved in {checkpoint}; resume with: ")
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[:2] == ["python", "scripts/phase_diagram.py"] and command[-1] == "--resume"
    assert command[2:-1] == argv

    # Without --resume the finished chunk is kept and the run refused.
    status, text = exit_of("phase_diagram", argv, capsys)
    assert status == 2 and "add --resume" in text and str(checkpoint) in text, text
    assert (checkpoint / "chunk_00000.npz").is_file()

    # The printed command completes the run and removes the checkpoint.
    summary = script("phase_diagram").main(command[2:])
    assert summary["cells"] == 16 and not checkpoint.exists()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(first) == {"phase_diagram.npz", "phase_diagram.json", "phase_diagram.png"}

    # A fresh run rewrites the same bytes: no run time or path is written.
    script("phase_diagram").main(argv)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    capsys.readouterr()


def test_interrupt_in_process_prints_one_line_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adamflow.phase import _sweep

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_sweep, "compute_chunk", interrupted)
    status, text = exit_of("phase_diagram", [*SMALL, "--out", str(tmp_path)], capsys)
    assert status == 130
    lines = [line for line in text.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "0 of 4 chunks saved" in lines[0] and "--resume" in lines[0]


def test_phase_diagram_writes_figures_only_for_its_default_configuration() -> None:
    module = script("phase_diagram")
    parser = module.build_parser()
    default = parser.parse_args([])
    assert module.output_folder(parser, default) == ROOT / "figures"
    # Flags that change nothing in the result keep the committed folder.
    quiet = parser.parse_args(["--no-progress", "--resume"])
    assert module.output_folder(parser, quiet) == ROOT / "figures"
    for argv in (
        ["--problem", "quadratic", "--grid", "24"],
        ["--chunk-size", "100"],
        ["--p", "0.05"],
    ):
        folder = module.output_folder(parser, parser.parse_args(argv))
        assert folder.parent == ROOT / "runs" / "phase_diagram", folder
        assert not (ROOT / ".gitignore").read_text().count(str(folder)), folder
    folder = module.output_folder(
        parser, parser.parse_args(["--problem", "quadratic", "--grid", "24"])
    )
    assert folder.name == "grid-24_problem-quadratic"
    explicit = parser.parse_args(["--grid", "24", "--out", "/tmp/x"])
    assert module.output_folder(parser, explicit) == Path("/tmp/x")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(ROOT / "runs" / "phase_diagram" / "a" / "b.png")],
        cwd=ROOT,
    )
    assert ignored.returncode == 0  # runs/ is ignored by git


def test_phase_diagram_names_its_folder_and_cost_before_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = script("phase_diagram")
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    summary = module.main([*SMALL, "--problem", "quadratic"])
    text = capsys.readouterr().out
    folder = tmp_path / "runs" / "chunk-size-4_grid-4_problem-quadratic_steps-200"
    lines = text.splitlines()
    assert lines[0].startswith("sweep: 16 cells × 200 steps = 3.2e+03 cell-steps (dim 16)"), text
    assert "estimated" in lines[0] and lines[0].endswith(f"writing to {folder}"), text
    assert summary["cells"] == 16 and f"wrote {folder / 'phase_diagram.png'}" in text, text
    assert sorted(p.name for p in folder.iterdir()) == [
        "phase_diagram.json",
        "phase_diagram.npz",
        "phase_diagram.png",
    ]


def test_phase_diagram_refuses_a_grid_that_cannot_fit_in_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text = exit_of("phase_diagram", ["--grid", "100000"], capsys)
    assert code == 2 and text.count("\n") == 1, text
    assert "--grid 100000: 10,000,000,000 cells need about" in text and "memory" in text, text


def test_sweep_cost_scales_with_cells_steps_and_dim() -> None:
    module = script("phase_diagram")
    one = module.sweep_cost(100, 1000, 32, "discrete", 4)
    assert one["cell_steps"] == 1e5 and one["bytes"] == 100 * module.RESULT_BYTES_PER_CELL
    assert module.sweep_cost(200, 1000, 32, "discrete", 4)["seconds"] == 2 * one["seconds"]
    assert module.sweep_cost(100, 1000, 32, "continuous", 4)["seconds"] == 16 * one["seconds"]


def test_phase_diagram_help_keeps_the_launcher_examples_line_by_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text = exit_of("phase_diagram", ["--help"], capsys)
    assert code == 0
    assert "--distributed \\\n        --grid 256 --steps 10000 --out /shared/maps" in text, text
    assert "0.9999 \\\n        --spacing log" in text, text


def test_make_figures_quick_writes_a_scratch_folder_never_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = script("make_figures")
    assert module.QUICK_OUT == ROOT / "runs" / "figures-quick"
    for out in ("figures", str(ROOT / "figures"), str(ROOT / "figures" / ".." / "figures")):
        code, text = exit_of("make_figures", ["--quick", "--out", out], capsys)
        assert code == 2 and "quick figures never go into" in text, text
    made: list[tuple[str, Path, bool]] = []

    def fake_make_figure(name: str, out: Path, *, quick: bool, seed: int) -> dict[str, float]:
        made.append((name, Path(out), quick))
        return {"x": 1.0}

    monkeypatch.setattr(module, "make_figure", fake_make_figure)
    monkeypatch.setattr(module, "QUICK_OUT", tmp_path / "scratch")
    module.main(["--quick", "--only", "trajectories"])
    assert made == [("trajectories", tmp_path / "scratch", True)]
    assert f"wrote 1 quick (scratch) figures to {tmp_path / 'scratch'}" in capsys.readouterr().out
    made.clear()
    module.main(["--only", "trajectories"])
    assert made == [("trajectories", ROOT / "figures", False)]


def test_update_results_refuses_quick_sidecars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    folder = tmp_path / "figures"
    shutil.copytree(ROOT / "figures", folder)
    page = tmp_path / "results.md"
    shutil.copy(ROOT / "docs" / "results.md", page)
    module = script("update_results")
    assert module.main(["--check", "--page", str(page), "--figures", str(folder)]) == 0
    sidecar = json.loads((folder / "corrected_orders.json").read_text())
    (folder / "corrected_orders.json").write_text(json.dumps({**sidecar, "quick": True}))
    before = page.read_bytes()
    for argv in (["--check"], []):
        status = module.main([*argv, "--page", str(page), "--figures", str(folder)])
        err = capsys.readouterr().err
        assert status == 2 and "quick sidecars (corrected_orders)" in err, err
        assert "without --quick" in err
    assert page.read_bytes() == before
