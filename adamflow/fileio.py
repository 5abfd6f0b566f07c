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
    so a reader (or an interrupted run) never sees a half-written file."""
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
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


def atomic_write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (numpy values converted; inf/nan as strings)."""
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=True)
    return atomic_write_bytes(path, (text + "\n").encode())


def atomic_save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically; read back with ``np.load(path, allow_pickle=False)``."""
    buffer = io.BytesIO()
    savez: Any = np.savez  # numpy's stubs mistake a keyword array for its allow_pickle flag
    savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())


def sidecar(parameters: dict[str, Any], seed: int | None = None, **results: Any) -> dict[str, Any]:
    """The JSON sidecar of a figure or data file: every parameter, the seed, the package
    version, and any results worth reading without the figure."""
    from . import __version__

    return {"adamflow_version": __version__, "seed": seed, "parameters": parameters, **results}


def save_figure(fig: Any, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Save a matplotlib figure as PNG atomically, with ``<name>.json`` beside it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    target = atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(target.with_suffix(".json"), metadata)
    return target
