"""The checkpoint folder of a sweep: ``meta.json`` (every parameter the chunks depend on)
and one ``chunk_<index>.npz`` per finished chunk, so that a rerun with the same parameters
and ``resume=True`` loads finished chunks instead of recomputing them
(`adamflow.phase_diagram`).

The rules, so that no finished work is ever lost or mixed silently:

- the folder must be a folder that can be written (a file, or a place that cannot be
  created or written, is refused up front with an error naming ``checkpoint``);
- a folder made with other parameters is refused (`CheckpointMismatch`, a ``ValueError``
  naming the differing keys);
- a folder holding finished chunks of the same sweep is reused only with ``resume=True``;
  without it the sweep refuses to start (`CheckpointExists`) rather than delete or quietly
  reuse them (a folder with no finished chunk yet is simply reused: nothing is lost);
- an interrupted sweep (``KeyboardInterrupt``) leaves every finished chunk on disk and
  raises `SweepInterrupted`, a ``KeyboardInterrupt`` that says how many are saved.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import fileio

FORMAT = "adamflow.phase_checkpoint/1"


class CheckpointExists(FileExistsError):
    """The checkpoint folder already holds finished chunks of this very sweep and
    ``resume=True`` was not given: reuse them with ``resume=True`` or remove the folder
    (`clear_checkpoint`). ``folder``, ``saved`` and ``total`` say where and how many.

    A ``FileExistsError``; `adamflow.phase_diagram` raises it.

    Parameters
    ----------
    folder : pathlib.Path
        The checkpoint folder (kept as the attribute ``folder``).
    saved : int
        How many chunks are finished there (``saved``).
    total : int
        How many chunks the sweep has (``total``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from adamflow.phase import CheckpointExists
    >>> error = CheckpointExists(Path("sweep"), 2, 5)
    >>> isinstance(error, FileExistsError), error.saved, error.total
    (True, 2, 5)
    >>> print(error)
    checkpoint sweep already holds 2 of 5 finished chunks of this sweep: pass resume=True ...
    """

    def __init__(self, folder: Path, saved: int, total: int) -> None:
        super().__init__(
            f"checkpoint {folder} already holds {saved} of {total} finished chunks of this "
            "sweep: pass resume=True to reuse them, or remove the folder "
            "(adamflow.phase.clear_checkpoint) to start over"
        )
        self.folder = folder
        self.saved = saved
        self.total = total


class CheckpointMismatch(ValueError):
    """The checkpoint folder holds a checkpoint made with other parameters (``differing``
    lists them); it is never mixed in: pass another folder or remove this one.

    A ``ValueError``; `adamflow.phase_diagram` raises it.

    Parameters
    ----------
    folder : pathlib.Path
        The checkpoint folder (kept as the attribute ``folder``).
    differing : list[str]
        The keys of ``meta.json`` whose values differ (``differing``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from adamflow.phase import CheckpointMismatch
    >>> error = CheckpointMismatch(Path("sweep"), ["lr", "steps"])
    >>> isinstance(error, ValueError), error.differing
    (True, ['lr', 'steps'])
    """

    def __init__(self, folder: Path, differing: list[str]) -> None:
        super().__init__(
            f"checkpoint {folder} was made with other parameters (differing: "
            f"{', '.join(differing)}); pass another checkpoint folder or remove this one"
        )
        self.folder = folder
        self.differing = differing


class SweepInterrupted(KeyboardInterrupt):
    """A sweep with a checkpoint was interrupted (Ctrl-C); the ``saved`` finished chunks of
    ``total`` are in ``folder`` and a rerun with ``resume=True`` continues from them.

    A ``KeyboardInterrupt``; `adamflow.phase_diagram` raises it.

    Parameters
    ----------
    folder : pathlib.Path
        The checkpoint folder (kept as the attribute ``folder``).
    saved : int
        How many chunks are finished there (``saved``).
    total : int
        How many chunks the sweep has (``total``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from adamflow.phase import SweepInterrupted
    >>> error = SweepInterrupted(Path("sweep"), 3, 8)
    >>> isinstance(error, KeyboardInterrupt), isinstance(error, Exception)
    (True, False)
    >>> print(error)
    sweep interrupted: 3 of 8 chunks saved in sweep; rerun with resume=True to continue
    """

    def __init__(self, folder: Path, saved: int, total: int) -> None:
        super().__init__(
            f"sweep interrupted: {saved} of {total} chunks saved in {folder}; rerun with "
            "resume=True to continue"
        )
        self.folder = folder
        self.saved = saved
        self.total = total


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


def _unusable(folder: Path, error: OSError, doing: str) -> OSError:
    """``error`` again (same class, errno) with a message naming ``checkpoint``."""
    reason = error.strerror or str(error)
    return type(error)(error.errno, f"checkpoint folder {folder} cannot be {doing}: {reason}")


def open_checkpoint(folder: Path, meta: dict[str, Any], *, chunks: int, resume: bool) -> int:
    """Create the checkpoint folder, or check that the one there was made with ``meta``
    (a ``ValueError`` names the differing keys), and that it can be written. Returns how
    many of the ``chunks`` chunks are already finished there; finished chunks without
    ``resume`` raise `CheckpointExists`."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint must be a folder, but {folder} is a file")
    meta_path = folder / "meta.json"
    expected = json.loads(json.dumps(fileio._jsonable(meta)))
    if meta_path.is_file():
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"checkpoint {folder} has an unreadable meta.json ({error}); remove the folder"
            ) from error
        if found != expected:
            keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise CheckpointMismatch(folder, keys)
    elif folder.is_dir() and any(folder.glob("chunk_*.npz")):
        raise ValueError(
            f"checkpoint {folder} holds chunk files but no meta.json, so they cannot be "
            "trusted; pass another checkpoint folder or remove this one"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unusable(folder, error, "created") from error
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise _unusable(folder, error, "written") from error
    saved = saved_chunks(folder, chunks)
    if saved and not resume:
        raise CheckpointExists(folder, saved, chunks)
    if not meta_path.is_file():
        try:
            fileio.atomic_write_json(meta_path, meta)
        except OSError as error:
            raise _unusable(folder, error, "written") from error
    return saved


def chunk_path(folder: Path, index: int) -> Path:
    """The file of chunk ``index``."""
    return folder / f"chunk_{index:05d}.npz"


def saved_chunks(folder: Path, chunks: int) -> int:
    """How many of the ``chunks`` chunks are finished in ``folder``."""
    return sum(chunk_path(folder, index).is_file() for index in range(chunks))


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    """A finished chunk's arrays (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: np.asarray(data[key]) for key in data.files}


def write_chunk(path: Path, piece: dict[str, np.ndarray]) -> None:
    """Save a finished chunk atomically."""
    fileio.atomic_save_npz(path, **piece)


def clear_checkpoint(folder: str | Path) -> None:
    """Delete a checkpoint folder written by `adamflow.phase_diagram` (its ``meta.json``
    and chunk files only; the folder itself is removed when nothing else is left in it).

    Parameters
    ----------
    folder : str | pathlib.Path
        The checkpoint folder; one that does not exist (or is not a folder) is left alone.

    Returns
    -------
    None
        Nothing.

    Raises
    ------
    OSError
        A file or the folder cannot be removed (e.g. no write permission).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from adamflow.phase import clear_checkpoint
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = Path(tmp) / "sweep"
    ...     folder.mkdir()
    ...     for name in ("meta.json", "chunk_00000.npz"):
    ...         (folder / name).touch()
    ...     clear_checkpoint(folder)
    ...     print(folder.exists())
    False
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in [folder / "meta.json", *folder.glob("chunk_*.npz")]:
        path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        shutil.rmtree(folder)
