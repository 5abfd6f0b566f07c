"""`phase_diagram` across processes (jax.distributed, `adamflow.phase._distributed`): local
CPU processes launched as subprocesses give the one-process arrays bit for bit, and a run
that loses a process mid-way resumes -- with any number of processes -- without losing a
finished chunk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import adamflow as af
from adamflow import phase, problems
from adamflow.phase import _distributed
from adamflow.phase._checkpoint import read_chunk

ROOT = Path(__file__).resolve().parent.parent
GRID = 4
STEPS = 200
CHUNK = 4  # 16 cells: 4 chunks

WORKER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from adamflow.phase import _distributed

    _distributed.initialize_distributed()
    import jax
    import adamflow as af
    from adamflow import phase, problems
    from adamflow.phase import _sweep

    folder, out, fail = sys.argv[1], sys.argv[2], sys.argv[3] == "fail"
    original = _sweep.compute_chunk
    calls = []

    def failing(*args, **kwargs):
        if fail and jax.process_index() == 1 and calls:
            raise RuntimeError("process 1 fails after its first chunk")
        calls.append(1)
        return original(*args, **kwargs)

    _sweep.compute_chunk = failing
    b1s, b2s = phase.default_grid({grid})

    def run():
        diagram = af.phase_diagram(
            problems.sparse(), b1s, b2s, steps={steps}, lr=1e-2, chunk_size={chunk},
            checkpoint=folder, resume=True, progress=False,
        )
        if jax.process_index() == 0:
            np.savez(out, max_update=diagram.max_update, growth_rate=diagram.growth_rate,
                     final_loss=diagram.final_loss, diverged_step=diagram.diverged_step)

    _distributed.exit_hard_on_error(run)
    """
).format(grid=GRID, steps=STEPS, chunk=CHUNK)


def reference(checkpoint: Path | None = None, resume: bool = False) -> af.PhaseDiagram:
    b1s, b2s = phase.default_grid(GRID)
    return af.phase_diagram(
        problems.sparse(),
        b1s,
        b2s,
        steps=STEPS,
        lr=1e-2,
        chunk_size=CHUNK,
        checkpoint=checkpoint,
        resume=resume,
        progress=False,
    )


def launch(tmp_path: Path, folder: Path, out: Path, *, fail: bool = False) -> int:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    command = [sys.executable, str(worker), str(folder), str(out), "fail" if fail else "ok"]
    return _distributed.launch_local(command, 2)


def assert_same(out: Path, diagram: af.PhaseDiagram) -> None:
    with np.load(out) as got:
        for key in got.files:
            expected = np.asarray(getattr(diagram, key))
            assert got[key].dtype == expected.dtype, key
            assert got[key].tobytes() == expected.tobytes(), key  # bit for bit


def test_two_processes_give_the_one_process_arrays_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "two"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "phase_diagram.py"),
        "--processes",
        "2",
        "--grid",
        str(GRID),
        "--steps",
        str(STEPS),
        "--lr",
        "0.01",
        "--chunk-size",
        str(CHUNK),
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = phase.load_phase_diagram(out / "phase_diagram.npz")
    one = reference()
    for key in ("max_update", "growth_rate", "final_loss", "diverged", "longest_silence"):
        a, b = np.asarray(getattr(two, key)), np.asarray(getattr(one, key))
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), key
    assert two.parameters["processes"] == 2
    assert not (out / ".phase_diagram_checkpoint").exists()


@pytest.mark.slow
def test_a_lost_process_loses_no_finished_chunk_and_any_count_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    out = tmp_path / "out.npz"
    status = launch(tmp_path, folder, out, fail=True)
    assert status != 0 and not out.exists()
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk_*.npz")}
    # Round 0 (chunks 0 and 1) was gathered and written before process 1 failed in round 1.
    assert {"chunk_00000.npz", "chunk_00001.npz"} <= set(before)
    assert len(before) < 4
    saved = {name: read_chunk(folder / name) for name in before}

    resumed = reference(folder, resume=True)  # one process resumes the two-process run
    assert_files_kept(folder, before, saved)
    whole = reference()
    np.savez(tmp_path / "resumed.npz", max_update=resumed.max_update)
    assert_same(tmp_path / "resumed.npz", whole)
    assert len(list(folder.glob("chunk_*.npz"))) == 4


def assert_files_kept(folder: Path, before: dict[str, int], saved: dict[str, dict]) -> None:
    for name, mtime in before.items():
        assert (folder / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"
        again = read_chunk(folder / name)
        assert all(np.array_equal(again[k], saved[name][k], equal_nan=True) for k in again)


@pytest.mark.slow
def test_two_processes_resume_a_one_process_run(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    whole = reference(folder)
    for name in ("chunk_00001.npz", "chunk_00003.npz"):
        (folder / name).unlink()  # as if the one-process run had stopped early
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk_*.npz")}
    saved = {name: read_chunk(folder / name) for name in before}
    out = tmp_path / "out.npz"
    assert launch(tmp_path, folder, out) == 0
    assert_files_kept(folder, before, saved)
    assert len(list(folder.glob("chunk_*.npz"))) == 4
    assert_same(out, whole)


def test_launch_local_reports_the_first_failure_and_stops_the_others(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.environ['JAX_PROCESS_ID'] == '1':\n"
        "    sys.exit(3)\n"
        "time.sleep(120)\n"
    )
    assert _distributed.launch_local([sys.executable, str(script)], 2) == 3


def test_launch_local_refuses_a_bad_count_and_an_unknown_program(tmp_path: Path) -> None:
    for count in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="count must be an integer >= 1"):
            _distributed.launch_local([sys.executable, "-c", "pass"], count)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        _distributed.launch_local([str(tmp_path / "no-such-program")], 2)
