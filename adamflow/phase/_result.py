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
    convention, as an array.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    convention : str, optional
        ``"exact"`` (default, the discrete optimizer's), ``"euler"`` or ``"paper"``.

    Returns
    -------
    numpy.ndarray
        The signed rate per step, float64 (0-d for scalar inputs); growth where positive.

    Raises
    ------
    TypeError
        ``b1`` or ``b2`` not a number or an array of numbers.
    ValueError
        An entry of ``b1`` or ``b2`` outside [0, 1), shapes that do not broadcast, or an
        unknown ``convention``.

    Examples
    --------
    >>> from adamflow.phase import theory_growth
    >>> theory_growth([0.9, 0.9], [0.5, 0.999]).round(5).tolist()  # ln(0.9/sqrt(b2))
    [0.24121, -0.10486]
    """
    return np.asarray(stability.log_growth(b1, b2, convention), dtype=np.float64)


def silent_update(b1: Any, b2: Any, m0: Any, v0: Any, start: Any, k: Any, eps: float) -> Any:
    r"""Adam's :math:`|u|` after ``k`` steps without gradient that follow step ``start``,
    where the raw moments were ``m0`` (its size) and ``v0`` (theory/stability.md §2.1 with
    the moments of the run instead of equilibrium, and Adam's bias corrections):

    :math:`|u_{n_0+k}| = \dfrac{\beta_1^k m_0/(1-\beta_1^{n_0+k})}
    {\sqrt{\beta_2^k v_0/(1-\beta_2^{n_0+k})}+\varepsilon}`.

    Arrays broadcast together.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂ (scalars or arrays).
    m0 : Any
        The size of the raw first moment at step ``start``.
    v0 : Any
        The raw second moment at step ``start``.
    start : Any
        The step :math:`n_0` of ``m0`` and ``v0`` (>= 1 for a finite bias correction).
    k : Any
        Steps without gradient after ``start``.
    eps : float
        ε of the update.

    Returns
    -------
    numpy.ndarray
        :math:`|u_{n_0+k}|`, float64, of the broadcast shape (0-d for scalars); no input
        is checked, so values out of range give ``nan`` or ``inf`` rather than an error.

    Raises
    ------
    ValueError
        The inputs do not broadcast together, or one cannot be read as float64 numbers.

    Examples
    --------
    Late in a run (bias corrections ≈ 1, ε = 0) the update grows by
    :math:`\beta_1/\sqrt{\beta_2}` per silent step:

    >>> from adamflow.phase import silent_update
    >>> round(float(silent_update(0.9, 0.5, 1.0, 1.0, 1000, 10, 0.0)), 4)  # (0.9/√0.5)**10
    11.1577
    """
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

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂ (scalars or arrays).
    m0 : Any
        The size of the raw first moment where the silence began.
    v0 : Any
        The raw second moment there.
    start : Any
        The step :math:`n_0` there (< 1: no silence recorded).
    length : Any
        :math:`L`, the steps the silence lasted after ``start``.
    eps : float
        ε of the update.

    Returns
    -------
    numpy.ndarray
        log10 of the peak :math:`|u|`, float64, of the broadcast shape (0-d for scalars);
        NaN where no silence was recorded.

    Raises
    ------
    ValueError
        The inputs do not broadcast together, or one cannot be read as float64 numbers.

    Examples
    --------
    Unstable (β₂ < β₁²): growth by 0.9/√0.5 per step for 50 steps, longer silences capped
    by ε; stable: no growth, the peak is the first update, log10(2); no silence: NaN.

    >>> from adamflow.phase import predicted_peak
    >>> peaks = [predicted_peak(0.9, 0.5, 1.0, 1.0, 100, 50, 1e-8),
    ...          predicted_peak(0.9, 0.5, 1.0, 1.0, 100, 500, 1e-8),
    ...          predicted_peak(0.5, 0.9, 2.0, 1.0, 100, 50, 1e-8),
    ...          predicted_peak(0.9, 0.5, 1.0, 1.0, 0, 50, 1e-8)]
    >>> [round(float(p), 3) for p in peaks]
    [5.112, 5.3, 0.301, nan]
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

    Made by `adamflow.phase_diagram` and `load_phase_diagram`.

    Attributes
    ----------
    b1s : numpy.ndarray
        The β₁ grid, shape ``(n1,)``.
    b2s : numpy.ndarray
        The β₂ grid, shape ``(n2,)``; every array below is ``(n1, n2)``.
    max_update : numpy.ndarray
        :math:`\max_{n,i}|u_{n,i}|`, ``inf`` where the update went non-finite.
    growth_rate : numpy.ndarray
        The measured change of :math:`\ln|u|` per silent step, NaN where none.
    growth_steps : numpy.ndarray
        The silent steps ``growth_rate`` is measured over.
    diverged : numpy.ndarray
        Booleans: the update went non-finite in a cell that is not non-finite.
    diverged_step : numpy.ndarray
        The end of the `GROWTH_BLOCK`-step block where it first did (-1: never).
    final_loss : numpy.ndarray
        The problem's loss at the last parameters (NaN without a loss).
    longest_silence : numpy.ndarray
        The longest stretch of steps without a gradient (to within a block).
    grad_scale : numpy.ndarray
        The RMS of the non-zero gradients.
    theory_stable : numpy.ndarray
        Booleans: :math:`\beta_2 > \beta_1^2` (in the sweep's convention).
    theory_growth : numpy.ndarray
        `theory_growth` of each cell.
    predicted_peak : numpy.ndarray
        `predicted_peak` (log10) along each cell's longest silence.
    band : numpy.ndarray
        Booleans: theory-unstable cells whose peak stays below ``threshold`` ×
        `BAND_MARGIN`.
    measured_stable : numpy.ndarray
        Booleans: neither diverged nor non-finite, and ``max_update <= threshold``.
    nonfinite : numpy.ndarray
        Booleans: a gradient went non-finite before the update exceeded ``threshold``.
    nonfinite_step : numpy.ndarray
        The end of the block where the moments first went non-finite (-1: never).
    silence_start : numpy.ndarray
        The step at the first block end of the longest silence.
    silence_steps : numpy.ndarray
        The steps that silence lasted after it.
    silence_m : numpy.ndarray
        :math:`|m|` there.
    silence_v : numpy.ndarray
        :math:`v` there.
    agreement : float
        The fraction of the `decided` cells where the verdicts agree (NaN if none).
    band_cells : int
        The number of cells in the band.
    threshold : float
        The bound on ``max_update`` of a measured-stable cell.
    parameters : dict[str, Any]
        Everything the sweep was run with.
    elapsed : float
        Seconds the sweep took (NaN when loaded).
    trace : numpy.ndarray | None
        ``(n1, n2, K)``: log10 max_i|u_i| at ``trace_steps`` (``record_trace=True``).
    trace_steps : numpy.ndarray | None
        The steps of ``trace``.

    Examples
    --------
    >>> from adamflow import phase_diagram, problems
    >>> diagram = phase_diagram(problems.switch_off(n0=8), [0.5, 0.9], [0.5, 0.99],
    ...                         steps=64, lr=1e-2, progress=False)
    >>> diagram.theory_stable.tolist()  # β₂ > β₁²
    [[True, True], [False, True]]
    >>> diagram.measured_stable.tolist(), diagram.agreement, diagram.band_cells
    ([[True, True], [False, True]], 1.0, 0)
    >>> diagram.cells, diagram.summary()["disagreements"]
    (4, 0)
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
        """Number of grid cells.

        Returns
        -------
        int
            ``len(b1s) * len(b2s)``.
        """
        return int(self.max_update.size)

    @property
    def decided(self) -> np.ndarray:
        """The cells counted in `agreement`: outside the band and not non-finite.

        Returns
        -------
        numpy.ndarray
            Booleans, ``~band & ~nonfinite``.
        """
        return ~self.band & ~self.nonfinite

    @property
    def decided_cells(self) -> int:
        """Number of `decided` cells.

        Returns
        -------
        int
            The count of true entries of `decided`.
        """
        return int(np.sum(self.decided))

    @property
    def disagreement(self) -> np.ndarray:
        """The decided cells where the measured verdict differs from the theory's.

        Returns
        -------
        numpy.ndarray
            Booleans, ``decided & (measured_stable != theory_stable)``.
        """
        return self.decided & (self.measured_stable != self.theory_stable)

    def summary(self) -> dict[str, Any]:
        """The headline numbers: cells, agreement, band, decided cells, disagreements,
        divergences, non-finite cells, the threshold and log10 of the largest update. No run
        time (see ``elapsed``): the same sweep gives the same summary.

        Returns
        -------
        dict[str, Any]
            ``cells``, ``agreement``, ``band_cells``, ``decided_cells``,
            ``disagreements``, ``diverged_cells``, ``nonfinite_cells``, ``threshold`` and
            ``max_log10_update``.
        """
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
        time, so rewriting the same sweep leaves it unchanged).

        Returns
        -------
        dict[str, Any]
            `adamflow.fileio.sidecar` of ``parameters`` (and ``parameters["seed"]``) with
            ``summary``.
        """
        parameters = dict(self.parameters)
        return fileio.sidecar(parameters, parameters.get("seed"), summary=self.summary())

    def save(self, directory: str | Path, name: str = "phase_diagram") -> Path:
        """Write ``<name>.npz`` (arrays; load with ``allow_pickle=False``) and ``<name>.json``
        (`metadata`) atomically; returns the ``.npz`` path.

        The `DERIVED` arrays are not written (`load_phase_diagram` recomputes them).

        Parameters
        ----------
        directory : str | pathlib.Path
            The folder, created if missing.
        name : str, optional
            The files' stem (default ``"phase_diagram"``).

        Returns
        -------
        pathlib.Path
            ``directory / f"{name}.npz"``.

        Raises
        ------
        OSError
            The folder cannot be created or a file cannot be written.
        TypeError
            ``parameters`` hold a value JSON cannot encode.
        """
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
    are recomputed from the grid, the silences and the sidecar's ``eps`` and ``convention``.

    Parameters
    ----------
    path : str | pathlib.Path
        The ``.npz`` file (its ``.json`` sidecar beside it), or a folder holding
        ``phase_diagram.npz``.

    Returns
    -------
    PhaseDiagram
        The saved sweep, ``elapsed`` NaN (a run time is not saved).

    Raises
    ------
    FileNotFoundError
        No such ``.npz`` file, or no ``.json`` sidecar beside it.
    KeyError
        The file lacks an array `PhaseDiagram.save` writes (e.g. ``max_update``).
    ValueError
        The file holds pickled objects, or the sidecar is not valid JSON.

    Examples
    --------
    >>> import tempfile
    >>> from adamflow import phase_diagram, problems
    >>> diagram = phase_diagram(problems.switch_off(n0=8), [0.5, 0.9], [0.5, 0.99],
    ...                         steps=64, lr=1e-2, progress=False)
    >>> from adamflow import load_phase_diagram
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     loaded = load_phase_diagram(diagram.save(tmp))
    >>> bool((loaded.max_update == diagram.max_update).all()), loaded.summary() == diagram.summary()
    (True, True)
    """
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
