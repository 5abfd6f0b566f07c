r"""The result of a sweep, `PhaseDiagram`, and its analysis against the theory of
theory/stability.md: the stable region :math:`\beta_2 > \beta_1^2`, the growth
:math:`\ln(\beta_1/\sqrt{\beta_2})` per silent step and the ε cap (the band)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io, stability

#: A theory-unstable cell is decidable when the ε-capped model peak reaches this many
#: times the threshold; below, it lies in the band.
BAND_MARGIN = 10.0


def theory_growth(b1: Any, b2: Any) -> np.ndarray:
    r"""Per-step change of :math:`\ln|u|` while a coordinate's gradient is zero (ε
    negligible, bias corrections settled), signed: `adamflow.stability.log_growth`,
    :math:`\ln(\beta_1/\sqrt{\beta_2})` (theory/stability.md §1), as an array."""
    return np.asarray(stability.log_growth(b1, b2), dtype=np.float64)


def predicted_peak(b1: Any, b2: Any, grad_scale: Any, silence: Any, eps: float) -> np.ndarray:
    r"""log10 of the largest update a run could show in theory (theory/stability.md §2): a
    coordinate whose gradient of size ``G`` switches off grows by :math:`\beta_1/\sqrt\beta_2`
    per step for at most ``silence`` = L steps, and at most to the ε cap,

    :math:`\log_{10}\min\big(A_\varepsilon(\beta_1,\beta_2,G),\;
    e^{\max(0,\ln(\beta_1/\sqrt\beta_2))\,L}\big)`

    with :math:`A_\varepsilon` = `adamflow.stability.eps_capped_amplification` (sharp form;
    moments in equilibrium before the switch-off, so :math:`|u| \approx 1` at its start) and
    the rate `adamflow.stability.growth_rate`. It is optimistic: a cell whose predicted peak
    stays below the detection threshold cannot have shown its instability. NaN where ``G``
    is not a positive number.
    """
    b, g = np.broadcast_arrays(np.asarray(b1, float), np.asarray(b2, float))
    scale = np.broadcast_to(np.asarray(grad_scale, float), b.shape)
    length = np.broadcast_to(np.asarray(silence, float), b.shape)
    usable = np.isfinite(scale) & (scale > 0)
    with np.errstate(all="ignore"):
        if eps > 0:
            cap = np.log10(
                stability.eps_capped_amplification(
                    b, g, np.where(usable, scale, 1.0), eps, sharp=True
                )
            )
        else:
            cap = np.full(b.shape, np.inf)
        grow = np.asarray(stability.growth_rate(b, g)) * length / np.log(10.0)
    return np.where(usable, np.minimum(cap, grow), np.nan)


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    r"""Measured and predicted stability of Adam over a (β₁, β₂) grid
    (theory/stability.md).

    Arrays are indexed ``[b1, b2]`` (`adamflow.phase` defines each one): measured
    ``max_update`` (:math:`\max_{n,i}|u_{n,i}|`), ``growth_rate`` (over ``growth_steps``
    silent steps), ``diverged``/``diverged_step``, ``final_loss``, ``longest_silence``,
    ``grad_scale``; theory ``theory_stable`` (:math:`\beta_2 > \beta_1^2`), ``theory_growth``
    (:math:`\ln(\beta_1/\sqrt{\beta_2})`, `theory_growth`), ``predicted_peak`` (log10,
    `predicted_peak`); verdicts ``measured_stable`` and ``band``. Scalars: ``agreement``
    (fraction of cells outside the band where the verdicts agree), ``band_cells``,
    ``threshold``; ``parameters`` (everything the sweep was run with), ``elapsed`` (seconds
    the sweep took; a run time, so never written by `save`). With ``record_trace=True``:
    ``trace[b1, b2, k]`` = log10 max_i |u_i| at step ``trace_steps[k]``.
    """

    b1s: np.ndarray
    b2s: np.ndarray
    max_update: np.ndarray
    growth_rate: np.ndarray
    growth_steps: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    final_loss: np.ndarray
    longest_silence: np.ndarray
    grad_scale: np.ndarray
    theory_stable: np.ndarray
    theory_growth: np.ndarray
    predicted_peak: np.ndarray
    band: np.ndarray
    measured_stable: np.ndarray
    agreement: float
    band_cells: int
    threshold: float
    parameters: dict[str, Any]
    elapsed: float = float("nan")
    trace: np.ndarray | None = None
    trace_steps: np.ndarray | None = None

    @property
    def cells(self) -> int:
        """Number of grid cells."""
        return int(self.max_update.size)

    @property
    def decided_cells(self) -> int:
        """Cells outside the band (those counted in `agreement`)."""
        return self.cells - self.band_cells

    def summary(self) -> dict[str, Any]:
        """The headline numbers: cells, agreement, band, disagreements, divergences, the
        threshold and log10 of the largest update. No run time (see ``elapsed``): the same
        sweep gives the same summary."""
        return {
            "cells": self.cells,
            "agreement": self.agreement,
            "band_cells": self.band_cells,
            "decided_cells": self.decided_cells,
            "disagreements": int(np.sum((self.measured_stable != self.theory_stable) & ~self.band)),
            "diverged_cells": int(np.sum(self.diverged)),
            "threshold": self.threshold,
            "max_log10_update": float(np.log10(np.max(self.max_update))),
        }

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar: every parameter, the seed, the version and the `summary` (no run
        time, so rewriting the same sweep leaves it unchanged)."""
        parameters = dict(self.parameters)
        return _io.sidecar(parameters, parameters.get("seed"), summary=self.summary())

    def save(self, directory: str | Path, name: str = "phase_diagram") -> Path:
        """Write ``<name>.npz`` (arrays; load with ``allow_pickle=False``) and ``<name>.json``
        (`metadata`) atomically; returns the ``.npz`` path."""
        directory = Path(directory)
        arrays = {name_: getattr(self, name_) for name_ in ARRAY_FIELDS}
        if self.trace is not None and self.trace_steps is not None:
            arrays["trace"] = self.trace
            arrays["trace_steps"] = self.trace_steps
        path = _io.atomic_save_npz(directory / f"{name}.npz", **arrays)
        _io.atomic_write_json(directory / f"{name}.json", self.metadata())
        return path


#: The arrays `PhaseDiagram.save` writes (besides the optional trace).
ARRAY_FIELDS = (
    "b1s",
    "b2s",
    "max_update",
    "growth_rate",
    "growth_steps",
    "diverged",
    "diverged_step",
    "final_loss",
    "longest_silence",
    "grad_scale",
    "theory_stable",
    "theory_growth",
    "predicted_peak",
    "band",
    "measured_stable",
)


def load_phase_diagram(path: str | Path) -> PhaseDiagram:
    """Read a `PhaseDiagram` written by `PhaseDiagram.save` (the ``.npz`` path, or a folder
    holding ``phase_diagram.npz``); no pickle is involved."""
    path = Path(path)
    if path.is_dir():
        path = path / "phase_diagram.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.asarray(data[key]) for key in data.files}
    meta = json.loads(path.with_suffix(".json").read_text())
    summary = meta.get("summary", {})
    return PhaseDiagram(
        **{name: arrays[name] for name in ARRAY_FIELDS},
        agreement=float(summary.get("agreement", np.nan)),
        band_cells=int(summary.get("band_cells", int(np.sum(arrays["band"])))),
        threshold=float(summary.get("threshold", np.nan)),
        parameters=meta.get("parameters", {}),
        elapsed=float(summary.get("elapsed_s", np.nan)),  # only in older files
        trace=arrays.get("trace"),
        trace_steps=arrays.get("trace_steps"),
    )


def analyse(
    b1s: np.ndarray,
    b2s: np.ndarray,
    raw: dict[str, np.ndarray],
    *,
    eps: float,
    threshold: float,
    parameters: dict[str, Any],
    elapsed: float,
    trace_steps: np.ndarray | None,
) -> PhaseDiagram:
    r"""Turn raw per-cell measurements (flat, cells in ``[b1, b2]`` order) into the verdicts:
    *measured stable* (no divergence and :math:`\max|u| \le` ``threshold``), *theory
    stable* (:math:`\beta_2 > \beta_1^2`, `adamflow.stability.is_stable`), the band
    (theory-unstable cells whose `predicted_peak` stays below ``threshold`` ×
    `BAND_MARGIN`) and the agreement outside the band (theory/stability.md §1-2)."""
    shape = (b1s.size, b2s.size)
    grid = {key: value.reshape(shape + value.shape[1:]) for key, value in raw.items()}
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    diverged = grid["diverged_step"] >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        growth_rate = grid["growth_sum"] / grid["growth_steps"]
        grad_scale = np.sqrt(grid["grad_sq_sum"] / grid["grad_count"])
    growth_rate = np.where(grid["growth_steps"] > 0, growth_rate, np.nan)
    grad_scale = np.where(grid["grad_count"] > 0, grad_scale, np.nan)
    stable_theory = np.asarray(stability.is_stable(b1, b2), dtype=bool)
    peak = predicted_peak(b1, b2, grad_scale, grid["longest_silence"], eps)
    undecidable = ~(peak >= np.log10(threshold * BAND_MARGIN))  # NaN counts as undecidable
    band = ~stable_theory & undecidable
    measured = ~diverged & (grid["max_update"] <= threshold)
    decided = ~band
    agreement = (
        float(np.mean(measured[decided] == stable_theory[decided])) if decided.any() else np.nan
    )
    return PhaseDiagram(
        b1s=b1s,
        b2s=b2s,
        max_update=grid["max_update"],
        growth_rate=growth_rate,
        growth_steps=grid["growth_steps"],
        diverged=diverged,
        diverged_step=grid["diverged_step"],
        final_loss=grid["final_loss"],
        longest_silence=grid["longest_silence"],
        grad_scale=grad_scale,
        theory_stable=stable_theory,
        theory_growth=theory_growth(b1, b2),
        predicted_peak=peak,
        band=band,
        measured_stable=measured,
        agreement=agreement,
        band_cells=int(band.sum()),
        threshold=threshold,
        parameters=parameters,
        elapsed=elapsed,
        trace=grid["trace"] if trace_steps is not None else None,
        trace_steps=trace_steps,
    )
