"""The checkpoint folder of a sweep: ``meta.json`` (every parameter the chunks depend on)
and one ``chunk_<index>.npz`` per finished chunk, so a rerun with the same parameters loads
finished chunks instead of recomputing them (`adamflow.phase_diagram`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io

FORMAT = "adamflow.phase_checkpoint/1"


def checkpoint_meta(parameters: dict[str, Any], chunk_size: int) -> dict[str, Any]:
    """What a checkpoint must have been made with: the format, the package version, the
    chunk size and every sweep parameter."""
    from .. import __version__

    return {
        "format": FORMAT,
        "adamflow_version": __version__,
        "chunk_size": chunk_size,
        **parameters,
    }


def open_checkpoint(folder: Path, meta: dict[str, Any]) -> None:
    """Create the checkpoint folder, or check that the one there was made with ``meta``
    (a ``ValueError`` names the differing keys)."""
    meta_path = folder / "meta.json"
    expected = json.loads(json.dumps(_io._jsonable(meta)))
    if meta_path.exists():
        found = json.loads(meta_path.read_text())
        if found != expected:
            keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ValueError(
                f"checkpoint {folder} was made with other parameters (differing: "
                f"{', '.join(keys)}); pass another checkpoint folder or delete this one"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    _io.atomic_write_json(meta_path, meta)


def chunk_path(folder: Path, index: int) -> Path:
    """The file of chunk ``index``."""
    return folder / f"chunk_{index:05d}.npz"


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    """A finished chunk's arrays (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: np.asarray(data[key]) for key in data.files}


def write_chunk(path: Path, piece: dict[str, np.ndarray]) -> None:
    """Save a finished chunk atomically."""
    _io.atomic_save_npz(path, **piece)


def clear_checkpoint(folder: str | Path) -> None:
    """Delete a checkpoint folder written by `adamflow.phase_diagram` (its ``meta.json``
    and chunk files only; the folder itself is removed when nothing else is left in it)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in [folder / "meta.json", *folder.glob("chunk_*.npz")]:
        path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        shutil.rmtree(folder)
