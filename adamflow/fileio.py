"""Atomic, pickle-free writing of figures, data and their JSON sidecars (public: the
experiments and scripts write their results with it)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npz",
    "sidecar",
    "save_figure",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename,
    so a reader (or an interrupted run) never sees a half-written file.

    Parameters
    ----------
    path : str | os.PathLike[str]
        The file to write; missing parent folders are created.
    data : bytes
        The file's whole content.

    Returns
    -------
    Path
        ``path`` as a `pathlib.Path`; the file is readable by everyone (mode 0644).

    Raises
    ------
    TypeError
        If ``data`` is not bytes-like.
    OSError
        If the folder cannot be created or the file cannot be written or renamed; the
        temporary file is removed and the target is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from adamflow.fileio import atomic_write_bytes
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = atomic_write_bytes(Path(tmp.name) / "out" / "data.bin", b"abc")
    >>> path.name, path.read_bytes()
    ('data.bin', b'abc')
    >>> tmp.cleanup()
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; published files are world-readable
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())  # np.float64(inf) is a float: checked below
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


def atomic_write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (numpy values converted; inf/nan as strings).

    Keys are sorted and made strings; NumPy arrays become lists, NumPy scalars Python
    numbers, paths strings, and a non-finite Python float (or array entry) the string
    ``"inf"``, ``"-inf"`` or ``"nan"``. Written with `atomic_write_bytes`.

    Parameters
    ----------
    path : str | os.PathLike[str]
        The file to write; missing parent folders are created.
    payload : dict[str, Any]
        The values to write.

    Returns
    -------
    Path
        ``path`` as a `pathlib.Path`.

    Raises
    ------
    TypeError
        If ``payload`` holds a value JSON cannot encode (e.g. an arbitrary object).
    OSError
        If the folder cannot be created or the file cannot be written or renamed; the
        temporary file is removed and the target is left as it was.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from adamflow.fileio import atomic_write_json
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = atomic_write_json(Path(tmp.name) / "r.json", {"x": np.arange(2), "y": [np.inf]})
    >>> json.loads(path.read_text())
    {'x': [0, 1], 'y': ['inf']}
    >>> tmp.cleanup()
    """
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=True)
    return atomic_write_bytes(path, (text + "\n").encode())


def atomic_save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically; read back with ``np.load(path, allow_pickle=False)``.

    Parameters
    ----------
    path : str | os.PathLike[str]
        The file to write; missing parent folders are created.
    **arrays : np.ndarray
        The arrays to save, by name (anything `numpy.asarray` accepts).

    Returns
    -------
    Path
        ``path`` as a `pathlib.Path`.

    Raises
    ------
    ValueError
        If a value cannot be made an array (a ragged list).
    OSError
        If the folder cannot be created or the file cannot be written or renamed; the
        temporary file is removed and the target is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from adamflow.fileio import atomic_save_npz
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = atomic_save_npz(Path(tmp.name) / "run.npz", theta=np.zeros((3, 2)), steps=[0, 1, 2])
    >>> with np.load(path, allow_pickle=False) as data:
    ...     print(sorted(data.files), data["theta"].shape)
    ['steps', 'theta'] (3, 2)
    >>> tmp.cleanup()
    """
    buffer = io.BytesIO()
    savez: Any = np.savez  # numpy's stubs mistake a keyword array for its allow_pickle flag
    savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())


def sidecar(parameters: dict[str, Any], seed: int | None = None, **results: Any) -> dict[str, Any]:
    """The JSON sidecar of a figure or data file: every parameter, the seed, the package
    version, and any results worth reading without the figure.

    Parameters
    ----------
    parameters : dict[str, Any]
        Every parameter that made the file.
    seed : int | None, optional
        The random seed, ``None`` where nothing is random.
    **results : Any
        Results worth reading without the figure, added as top-level keys.

    Returns
    -------
    dict[str, Any]
        ``{"adamflow_version": ..., "seed": seed, "parameters": parameters, **results}``,
        for `atomic_write_json` or `save_figure`.

    Raises
    ------
    Nothing: it builds a dict; a result named ``parameters`` replaces that entry.

    Examples
    --------
    >>> from adamflow.fileio import sidecar
    >>> meta = sidecar({"lr": 0.1}, seed=0, final_loss=0.5)
    >>> sorted(meta), meta["parameters"], meta["final_loss"]
    (['adamflow_version', 'final_loss', 'parameters', 'seed'], {'lr': 0.1}, 0.5)
    """
    from . import __version__

    return {"adamflow_version": __version__, "seed": seed, "parameters": parameters, **results}


def save_figure(fig: Any, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Save a matplotlib figure as PNG atomically, with ``<name>.json`` beside it.

    The PNG is written at 130 dpi with a tight bounding box (`atomic_write_bytes`); the
    JSON is ``metadata`` (`atomic_write_json`), e.g. a `sidecar`.

    Parameters
    ----------
    fig : Any
        A matplotlib ``Figure``.
    path : str | os.PathLike[str]
        The file to write; missing parent folders are created.
    metadata : dict[str, Any]
        What to write to the JSON file beside it.

    Returns
    -------
    Path
        The PNG's path as a `pathlib.Path`.

    Raises
    ------
    TypeError
        If ``metadata`` holds a value JSON cannot encode (the PNG is then already written).
    OSError
        If the folder cannot be created or the file cannot be written or renamed; the
        temporary file is removed and the target is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from matplotlib.figure import Figure
    >>> from adamflow.fileio import save_figure, sidecar
    >>> tmp = tempfile.TemporaryDirectory()
    >>> png = save_figure(Figure(figsize=(2, 2)), Path(tmp.name) / "fig.png", sidecar({"lr": 0.1}))
    >>> sorted(p.name for p in png.parent.iterdir())
    ['fig.json', 'fig.png']
    >>> tmp.cleanup()
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    target = atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(target.with_suffix(".json"), metadata)
    return target
