r"""Phase diagrams of Adam over (β₁, β₂): where the update stays bounded (theory/stability.md).

For every cell of a grid of (β₁, β₂) the sweep runs Adam (the discrete recurrence, or its
leading-order flow) on one `adamflow.problems.Problem` and measures how large the
normalized update :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)` gets. Theory:
:math:`|u|` is bounded iff :math:`\beta_2 > \beta_1^2` (theory/stability.md §1); outside, a
coordinate whose gradient vanishes sees :math:`\ln|u|` grow by :math:`\ln(\beta_1/\sqrt\beta_2)`
per step until :math:`\sqrt{\hat v}` falls to ε (theory/stability.md §2).

How the grid is computed (`adamflow.phase._kernel`): one jitted ``vmap`` over the cells of a
chunk, ``lax.scan`` over the steps, the chunk's cells sharded over all JAX devices
(``jax.sharding``); the discrete step is `adamflow.cascade_step` (theory/adam.md §3), the
flow is `adamflow._flows.leading_field` (theory/adam.md §4, fixed-step RK4), so no formula is
written here twice. Every cell sees the same gradient randomness (the key of step ``n`` is
``fold_in(PRNGKey(seed), n)``), so cells differ only by (β₁, β₂). The steps of a long chunk
run in up to 16 segments (of at least `adamflow.phase._kernel.SEGMENT_WORK` element-steps),
one call each with the state kept on the devices, so that the progress bar moves within the
chunk; the numbers do not depend on the cut. Each finished chunk can be
written to a checkpoint folder (`adamflow.phase._checkpoint`); a rerun with the same
parameters and ``resume=True`` loads finished chunks instead of recomputing them, and never
deletes or silently reuses them without it (`CheckpointExists`, `SweepInterrupted`).
Across processes (``jax.distributed``, `initialize_distributed`; `launch_local` starts N
local ones) each process computes its share of the chunks, the finished chunks are
gathered with JAX's collectives and process 0 writes the checkpoint; the arrays are bit for
bit those of one process, and any number of processes resumes any checkpoint
(`adamflow.phase._distributed`).

What is measured in each cell (arrays indexed ``[b1, b2]``):

- ``max_update``: :math:`\max_{n,i}|u_{n,i}|`, ``inf`` for a cell whose update went
  non-finite;
- ``diverged`` / ``diverged_step``: whether the update went non-finite (in a cell that is
  not *non-finite*, below), and the end of the `GROWTH_BLOCK`-step block in which it first
  did (-1: never);
- ``nonfinite`` / ``nonfinite_step``: whether a gradient (or its square) went non-finite
  (NaN or inf: the problem broke, e.g. a NaN gradient) before the update had exceeded
  ``threshold``, and the end of the block in which the moments first went non-finite (-1:
  never). Such a cell says nothing about Adam's stability: it is left out of the
  agreement, the disagreements and the band, and counted in the summary
  (``nonfinite_cells``);
- ``growth_rate``: the measured change of :math:`\ln|u|` per step over the silent stretches
  (no gradient for that coordinate) during which ε stays negligible,
  :math:`\sqrt{\hat v}\ge` `CLEAN_FACTOR` ·ε, sampled at the end of every block; NaN
  where there were none. Theory: ``theory_growth`` :math:`=\ln(\beta_1/\sqrt\beta_2)`;
- ``longest_silence``: the longest stretch of steps without a gradient for a coordinate
  that had already received one (to within a block); ``silence_start``, ``silence_steps``,
  ``silence_m``, ``silence_v``: the step at the first block end of that silence, the steps
  it lasted after it, and the raw moments :math:`|m|, v` there; ``grad_scale``: the RMS of
  the non-zero gradients (sampled once per block);
- ``final_loss``: the problem's loss at the last parameters (NaN without a loss).

The verdicts: a cell is *measured stable* when it is neither diverged nor non-finite and
``max_update`` is at most ``threshold``; *theory stable* when :math:`\beta_2 > \beta_1^2`
(`adamflow.stability.is_stable`). A theory-unstable cell lies in the *band* when
`predicted_peak`, the largest update theory/stability.md §2 gives along the run's longest
silence -- growth by :math:`\beta_1/\sqrt\beta_2` per step from the moments measured at its
start, for the steps it lasted (the run's end included), capped where :math:`\sqrt{\hat v}`
reaches ε -- stays below ``threshold`` × `BAND_MARGIN`: there this run cannot show the
instability. The peak is a value that silence really passes through, so every
theory-unstable cell outside the band has ``max_update`` above the threshold unless the
growth law itself fails. ``agreement`` is the fraction of the *decided* cells (neither in
the band nor non-finite) where the two verdicts agree; ``band_cells`` counts the band.
"""

from ._checkpoint import CheckpointExists as CheckpointExists
from ._checkpoint import CheckpointMismatch as CheckpointMismatch
from ._checkpoint import SweepInterrupted as SweepInterrupted
from ._checkpoint import clear_checkpoint as clear_checkpoint
from ._distributed import exit_hard_on_error as exit_hard_on_error
from ._distributed import initialize_distributed as initialize_distributed
from ._distributed import launch_local as launch_local
from ._grids import DEFAULT_B1_RANGE as DEFAULT_B1_RANGE
from ._grids import DEFAULT_B2_RANGE as DEFAULT_B2_RANGE
from ._grids import DEFAULT_GRID as DEFAULT_GRID
from ._grids import DEFAULT_RUNS as DEFAULT_RUNS
from ._grids import SPACINGS as SPACINGS
from ._grids import default_grid as default_grid
from ._grids import grid as grid
from ._kernel import CLEAN_FACTOR as CLEAN_FACTOR
from ._kernel import DYNAMICS as DYNAMICS
from ._kernel import GROWTH_BLOCK as GROWTH_BLOCK
from ._result import BAND_MARGIN as BAND_MARGIN
from ._result import PhaseDiagram as PhaseDiagram
from ._result import load_phase_diagram as load_phase_diagram
from ._result import predicted_peak as predicted_peak
from ._result import silent_update as silent_update
from ._result import theory_growth as theory_growth
from ._sweep import DEFAULT_CHUNK as DEFAULT_CHUNK
from ._sweep import phase_diagram as phase_diagram

__all__ = [
    "BAND_MARGIN",
    "CheckpointExists",
    "CheckpointMismatch",
    "CLEAN_FACTOR",
    "clear_checkpoint",
    "DEFAULT_B1_RANGE",
    "DEFAULT_B2_RANGE",
    "DEFAULT_CHUNK",
    "default_grid",
    "DEFAULT_GRID",
    "DEFAULT_RUNS",
    "DYNAMICS",
    "exit_hard_on_error",
    "grid",
    "GROWTH_BLOCK",
    "initialize_distributed",
    "launch_local",
    "load_phase_diagram",
    "phase_diagram",
    "PhaseDiagram",
    "predicted_peak",
    "silent_update",
    "SPACINGS",
    "SweepInterrupted",
    "theory_growth",
]
