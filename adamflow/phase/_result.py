r"""The result of a sweep, `PhaseDiagram`, and its analysis against the theory of
theory/stability.md: the stable region :math:`\beta_2 > \beta_1^2`, the growth
:math:`\ln(\beta_1/\sqrt{\beta_2})` per silent step and the ε cap (the band)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import fileio, stability

#: A theory-unstable cell is decidable when its `predicted_peak` reaches this many times the
#: threshold; below, it lies in the band. The peak is a value the run really passes through
#: (theory/stability.md §2), so a margin of 2 only absorbs round-off and the RK4 error of the
#: continuous flow.
BAND_MARGIN = 2.0


def theory_growth(b1: Any, b2: Any, convention: str = "exact") -> np.ndarray:
    r"""Per-step change of :math:`\ln|u|` while a coordinate's gradient is zero (ε
    negligible, bias corrections settled), signed: `adamflow.stability.log_growth`,
    :math:`\ln(\beta_1/\sqrt{\beta_2})` (theory/stability.md §1) in the default
    convention, as an array."""
    return np.asarray(stability.log_growth(b1, b2, convention), dtype=np.float64)


def silent_update(b1: Any, b2: Any, m0: Any, v0: Any, start: Any, k: Any, eps: float) -> Any:
    r"""Adam's :math:`|u|` after ``k`` steps without gradient that follow step ``start``,
    where the raw moments were ``m0`` (its size) and ``v0`` (theory/stability.md §2.1 with
    the moments of the run instead of equilibrium, and Adam's bias corrections):

    :math:`|u_{n_0+k}| = \dfrac{\beta_1^k m_0/(1-\beta_1^{n_0+k})}
    {\sqrt{\beta_2^k v_0/(1-\beta_2^{n_0+k})}+\varepsilon}`.

    Arrays broadcast together."""
    b1, b2, m0, v0, n0, k = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (b1, b2, m0, v0, start, k))
    )
    with np.errstate(all="ignore"):
        correction_m = -np.expm1((n0 + k) * np.log(b1))  # 1 - β₁^(n0+k); 1 at β₁ = 0
        correction_v = -np.expm1((n0 + k) * np.log(b2))
        m_hat = np.power(b1, k) * m0 / correction_m
        v_hat = np.power(b2, k) * v0 / correction_v
        return m_hat / (np.sqrt(v_hat) + eps)


_GOLDEN = (1.0 + 5.0**0.5) / 2.0
_GOLDEN_ITERATIONS = 60


def predicted_peak(
    b1: Any, b2: Any, m0: Any, v0: Any, start: Any, length: Any, eps: float
) -> np.ndarray:
    r"""log10 of the largest update the theory of theory/stability.md §2 says a run shows
    along its longest silence: a coordinate whose raw moments were ``m0`` (size) and ``v0``
    at step ``start`` and that receives no gradient for the ``length`` steps after it has
    :math:`|u| =` `silent_update` there, which grows by :math:`\beta_1/\sqrt{\beta_2}` per
    step while :math:`\sqrt{\hat v}` is above ε and is capped once it falls to ε.

    The peak is the largest of `silent_update` at whole steps :math:`k \in [0, L]`
    (``L = length``) near its maximum: :math:`k = 0, 1, L`, the steps either side of
    :math:`k_*`, the maximizer without bias corrections (theory/stability.md §2.4:
    :math:`\beta_2^{k_*/2} = p\varepsilon/((1-p)\hat\sigma_0)`,
    :math:`p = 2\ln\beta_1/\ln\beta_2`, :math:`\hat\sigma_0 = \sqrt{\hat v_0}`; no
    growth when :math:`p \ge 1`, i.e. :math:`\beta_2 \ge \beta_1^2`), and either side of
    the maximizer with bias corrections found by a golden-section search. So it accounts for
    the steps the run had (the silence ends with the run at the latest), the gradient scale
    the run saw (:math:`\hat v_0`), the update there (:math:`\hat m_0`) and the ε cap; and
    it is conservative: every candidate is an update the coordinate really takes during the
    silence, so the run's max|u| is at least this peak, whatever the run did elsewhere.
    NaN where no silence was recorded (``start < 1`` or non-finite moments).
    """
    b1, b2, m0, v0, n0, length = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (b1, b2, m0, v0, start, length))
    )
    usable = np.isfinite(m0) & np.isfinite(v0) & (n0 >= 1) & (length >= 0)
    with np.errstate(all="ignore"):
        sigma0 = np.sqrt(v0 / -np.expm1(n0 * np.log(b2)))
        p = 2.0 * np.log(b1) / np.log(b2)  # b2 = 0 < b1: 0; b1 = 0 < b2: inf
        growing = p < 1.0
        y_star = p * eps / ((1.0 - p) * sigma0)
        k_star = np.where(
            growing & (y_star > 0) & (y_star < 1), 2.0 * np.log(y_star) / np.log(b2), 0.0
        )
        k_star = np.where(growing & (y_star == 0), length, k_star)  # no cap (ε = 0)
        k_star = np.where(np.isfinite(k_star), k_star, 0.0)
        n0 = np.where(usable, n0, 1.0)
        top = np.where(usable, length, 0.0)

        def update_at(k: np.ndarray) -> np.ndarray:
            return silent_update(b1, b2, m0, v0, n0, np.clip(k, 0.0, top), eps)

        low, high = np.zeros_like(top), top.copy()
        for _ in range(_GOLDEN_ITERATIONS):
            left = high - (high - low) / _GOLDEN
            right = low + (high - low) / _GOLDEN
            rising = ~(update_at(left) >= update_at(right))  # NaN: move right
            low = np.where(rising, left, low)
            high = np.where(rising, high, right)
        found = (low + high) / 2
        peak = np.full(b1.shape, -np.inf)
        candidates = (0.0, 1.0, top, np.floor(k_star), np.ceil(k_star))
        for k in (*candidates, np.floor(found), np.ceil(found)):
            peak = np.fmax(peak, update_at(np.asarray(k)))
        return np.where(usable, np.log10(peak), np.nan)


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    r"""Measured and predicted stability of Adam over a (β₁, β₂) grid
    (theory/stability.md).

    Arrays are indexed ``[b1, b2]`` (`adamflow.phase` defines each one): measured
    ``max_update`` (:math:`\max_{n,i}|u_{n,i}|`), ``growth_rate`` (over ``growth_steps``
    silent steps), ``diverged``/``diverged_step``, ``nonfinite``/``nonfinite_step``,
    ``final_loss``, ``longest_silence``, ``grad_scale``, and where the prediction starts:
    ``silence_start``, ``silence_steps``, ``silence_m``, ``silence_v``; theory
    ``theory_stable`` (:math:`\beta_2 > \beta_1^2`), ``theory_growth``
    (:math:`\ln(\beta_1/\sqrt{\beta_2})`, `theory_growth`), ``predicted_peak`` (log10,
    `predicted_peak`); verdicts ``measured_stable`` and ``band``. Scalars: ``agreement``
    (fraction of the decided cells -- outside the band and not non-finite -- where the
    verdicts agree), ``band_cells``, ``threshold``; ``parameters`` (everything the sweep
    was run with), ``elapsed`` (seconds the sweep took; a run time, so never written by
    `save`). With ``record_trace=True``: ``trace[b1, b2, k]`` = log10 max_i |u_i| at step
    ``trace_steps[k]``.
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
    nonfinite: np.ndarray
    nonfinite_step: np.ndarray
    silence_start: np.ndarray
    silence_steps: np.ndarray
    silence_m: np.ndarray
    silence_v: np.ndarray
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
    def decided(self) -> np.ndarray:
        """The cells counted in `agreement`: outside the band and not non-finite."""
        return ~self.band & ~self.nonfinite

    @property
    def decided_cells(self) -> int:
        """Number of `decided` cells."""
        return int(np.sum(self.decided))

    @property
    def disagreement(self) -> np.ndarray:
        """The decided cells where the measured verdict differs from the theory's."""
        return self.decided & (self.measured_stable != self.theory_stable)

    def summary(self) -> dict[str, Any]:
        """The headline numbers: cells, agreement, band, decided cells, disagreements,
        divergences, non-finite cells, the threshold and log10 of the largest update. No run
        time (see ``elapsed``): the same sweep gives the same summary."""
        with np.errstate(divide="ignore"):
            largest = float(np.log10(np.max(self.max_update)))
        return {
            "cells": self.cells,
            "agreement": self.agreement,
            "band_cells": self.band_cells,
            "decided_cells": self.decided_cells,
            "disagreements": int(np.sum(self.disagreement)),
            "diverged_cells": int(np.sum(self.diverged)),
            "nonfinite_cells": int(np.sum(self.nonfinite)),
            "threshold": self.threshold,
            "max_log10_update": largest,
        }

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar: every parameter, the seed, the version and the `summary` (no run
        time, so rewriting the same sweep leaves it unchanged)."""
        parameters = dict(self.parameters)
        return fileio.sidecar(parameters, parameters.get("seed"), summary=self.summary())

    def save(self, directory: str | Path, name: str = "phase_diagram") -> Path:
        """Write ``<name>.npz`` (arrays; load with ``allow_pickle=False``) and ``<name>.json``
        (`metadata`) atomically; returns the ``.npz`` path."""
        directory = Path(directory)
        arrays = {name_: getattr(self, name_) for name_ in ARRAY_FIELDS if name_ not in DERIVED}
        if self.trace is not None and self.trace_steps is not None:
            arrays["trace"] = self.trace
            arrays["trace_steps"] = self.trace_steps
        path = fileio.atomic_save_npz(directory / f"{name}.npz", **arrays)
        fileio.atomic_write_json(directory / f"{name}.json", self.metadata())
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
    "nonfinite",
    "nonfinite_step",
    "silence_start",
    "silence_steps",
    "silence_m",
    "silence_v",
)

#: Arrays `PhaseDiagram.save` does not write: NumPy computes them from the grid and the
#: stored silences with transcendental functions whose last bit depends on the CPU's vector
#: unit, so storing them would make a rerun's file differ from machine to machine.
#: `load_phase_diagram` recomputes them (on the machine that saved them, bit for bit).
DERIVED = ("theory_growth", "predicted_peak")

#: What arrays missing from files written before they existed read as.
_MISSING = {
    "nonfinite": False,
    "nonfinite_step": -1,
    "silence_start": np.nan,
    "silence_steps": np.nan,
    "silence_m": np.nan,
    "silence_v": np.nan,
}


def load_phase_diagram(path: str | Path) -> PhaseDiagram:
    """Read a `PhaseDiagram` written by `PhaseDiagram.save` (the ``.npz`` path, or a folder
    holding ``phase_diagram.npz``); no pickle is involved. Arrays added since a file was
    written read as "none" (no non-finite cell, no recorded silence); the `DERIVED` arrays
    are recomputed from the grid, the silences and the sidecar's ``eps`` and ``convention``."""
    path = Path(path)
    if path.is_dir():
        path = path / "phase_diagram.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.asarray(data[key]) for key in data.files}
    shape = arrays["max_update"].shape
    for name, value in _MISSING.items():
        if name not in arrays:
            arrays[name] = np.full(shape, value)
    meta = json.loads(path.with_suffix(".json").read_text())
    summary = meta.get("summary", {})
    parameters = meta.get("parameters", {})
    b1, b2 = np.meshgrid(arrays["b1s"], arrays["b2s"], indexing="ij")
    if "theory_growth" not in arrays:
        arrays["theory_growth"] = theory_growth(b1, b2, parameters.get("convention", "exact"))
    if "predicted_peak" not in arrays:
        arrays["predicted_peak"] = predicted_peak(
            b1,
            b2,
            arrays["silence_m"],
            arrays["silence_v"],
            arrays["silence_start"],
            arrays["silence_steps"],
            float(parameters.get("eps", 1e-8)),
        )
    return PhaseDiagram(
        **{name: arrays[name] for name in ARRAY_FIELDS},
        agreement=float(summary.get("agreement", np.nan)),
        band_cells=int(summary.get("band_cells", int(np.sum(arrays["band"])))),
        threshold=float(summary.get("threshold", np.nan)),
        parameters=parameters,
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
    convention: str = "exact",
) -> PhaseDiagram:
    r"""Turn raw per-cell measurements (flat, cells in ``[b1, b2]`` order) into the verdicts
    (theory/stability.md §1-2):

    - *non-finite*: a gradient (or its square) went non-finite before the update had
      exceeded ``threshold`` (the raw ``finite_max_update``, the largest update up to the
      block before); such a cell says nothing about Adam's stability and is left out of the
      comparison. A cell whose update had already exceeded the threshold keeps that verdict;
    - *diverged*: the update went non-finite in a cell that is not non-finite;
    - *measured stable*: neither, and :math:`\max|u| \le` ``threshold``;
    - *theory stable*: :math:`\beta_2 > \beta_1^2` (`adamflow.stability.is_stable`);
    - the band: theory-unstable cells, not non-finite, whose `predicted_peak` stays below
      ``threshold`` × `BAND_MARGIN`;
    - ``agreement``: the fraction of the cells neither in the band nor non-finite where the
      two verdicts agree (NaN when there is none).

    ``convention`` (a continuous sweep's moment rates) selects the theory of
    ``theory_stable`` and ``theory_growth``; `predicted_peak` (hence the band) stays the
    discrete one's."""
    shape = (b1s.size, b2s.size)
    grid = {key: value.reshape(shape + value.shape[1:]) for key, value in raw.items()}
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    broke = grid["nonfinite_step"] >= 0
    nonfinite = broke & ~(grid["finite_max_update"] > threshold)
    diverged = (grid["diverged_step"] >= 0) & ~nonfinite
    with np.errstate(divide="ignore", invalid="ignore"):
        growth_rate = grid["growth_sum"] / grid["growth_steps"]
        grad_scale = np.sqrt(grid["grad_sq_sum"] / grid["grad_count"])
    growth_rate = np.where(grid["growth_steps"] > 0, growth_rate, np.nan)
    grad_scale = np.where(grid["grad_count"] > 0, grad_scale, np.nan)
    stable_theory = np.asarray(stability.is_stable(b1, b2, convention), dtype=bool)
    peak = predicted_peak(
        b1,
        b2,
        grid["silence_m"],
        grid["silence_v"],
        grid["silence_start"],
        grid["silence_length"],
        eps,
    )
    undecidable = ~(peak >= np.log10(threshold * BAND_MARGIN))  # NaN counts as undecidable
    band = ~stable_theory & undecidable & ~nonfinite
    measured = ~diverged & ~nonfinite & (grid["max_update"] <= threshold)
    decided = ~band & ~nonfinite
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
        theory_growth=theory_growth(b1, b2, convention),
        predicted_peak=peak,
        band=band,
        measured_stable=measured,
        nonfinite=nonfinite,
        nonfinite_step=grid["nonfinite_step"],
        silence_start=grid["silence_start"],
        silence_steps=grid["silence_length"],
        silence_m=grid["silence_m"],
        silence_v=grid["silence_v"],
        agreement=agreement,
        band_cells=int(band.sum()),
        threshold=threshold,
        parameters=parameters,
        elapsed=elapsed,
        trace=grid["trace"] if trace_steps is not None else None,
        trace_steps=trace_steps,
    )
