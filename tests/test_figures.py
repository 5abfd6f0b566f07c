"""`scripts/make_figures.py --quick` regenerates every figure; the README shows each one."""

import json
import re
import subprocess
import sys
from pathlib import Path

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
    readme = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"figures/([\w-]+)\.png", readme))
    committed = {p.stem for p in (ROOT / "figures").glob("*.png")}
    assert committed == set(FIGURES), (committed, set(FIGURES))
    assert committed <= shown, committed - shown
