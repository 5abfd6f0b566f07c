r"""The symbolic layer: sympy derives the flows, the bounded-update condition and the corrected
flow from the discrete optimizers; the ``theory/`` pages are written from it.

Nothing is copied in as a literal formula: the discrete recurrences are built by calling the
same `adamflow.rules` functions the numerical code calls, with a sympy namespace
(`SYMPY_OPS`), and every result is obtained from them by a sympy operation (``rsolve``,
``dsolve``, ``solve``, ``summation``, ``limit``, ``integrate``, order-by-order matching in
the learning rate). Each derivation is a `Derivation`: the steps, each with its equations,
and a dict of results, exported as LaTeX (`Derivation.latex`) or Markdown
(`Derivation.markdown`); `theory_documents` assembles the ``theory/`` pages and
`write_theory` writes them (``python scripts/make_theory.py``).

Names follow optax: Adam's momentum factor is ``b1`` (:math:`\beta_1`), the second-moment
factor ``b2`` (:math:`\beta_2`). Public expressions use assumption-free Symbols named
``beta_1``, ``beta_2``, ``eta``, ``a``, ``b``, ``t``, ``n``, ``epsilon``, ``lambda``, ``g``
(per level of a k-level cascade ``beta_1,i``, ``beta_2,i``, ``m_i``, ``a_i``, …), so
``sympy.Symbol("beta_1")`` addresses them; ``stability_condition()`` is
``beta_2 > beta_1**2``. Derivations run once per process (cached).

Modules, by subject: ``_rates`` (moment rates, bias correction; theory/adam.md),
``_maps`` (discrete step, leading flow, their NumPy forms; theory/adam.md,
theory/adamw.md, theory/kadam.md), ``_stability`` (bounded updates; theory/stability.md),
``_corrected`` (the first-order corrected flow by Taylor matching; theory/corrected_flow.md
§1), ``_modified`` (the corrected flows of every order and the relation to Cattaneo,
Klusowski & Shigida; theory/corrected_flow.md §2–§3), ``_scale`` (the
meta-adaptive effect; theory/kadam.md §4), ``_eos`` (the edge-of-stability threshold;
theory/eos.md §2–§3), ``_documents`` (the pages).

This package imports sympy; ``import adamflow`` does not import it.
"""

from ._corrected import Lags as Lags
from ._corrected import corrected_flow as corrected_flow
from ._corrected import lag_functions as lag_functions
from ._derivation import Derivation as Derivation
from ._derivation import Step as Step
from ._documents import derivations as derivations
from ._documents import theory_documents as theory_documents
from ._documents import write_theory as write_theory
from ._eos import Instability as Instability
from ._eos import eos as eos
from ._eos import eos_first_instability as eos_first_instability
from ._eos import eos_threshold_expr as eos_threshold_expr
from ._maps import DiscreteStep as DiscreteStep
from ._maps import FieldValue as FieldValue
from ._maps import decoupled_decay as decoupled_decay
from ._maps import discrete_map as discrete_map
from ._maps import discrete_step_function as discrete_step_function
from ._maps import leading_field_function as leading_field_function
from ._maps import leading_flow as leading_flow
from ._modified import ModifiedCoefficients as ModifiedCoefficients
from ._modified import corrected_flows as corrected_flows
from ._modified import implicit_bias_comparison as implicit_bias_comparison
from ._modified import modified_coefficients as modified_coefficients
from ._rates import bias_corrected_form as bias_corrected_form
from ._rates import bias_correction as bias_correction
from ._rates import memory_kernel as memory_kernel
from ._rates import moment_rate as moment_rate
from ._rates import moment_rates as moment_rates
from ._scale import scale_invariance as scale_invariance
from ._stability import amplification as amplification
from ._stability import eps_capped_amplification as eps_capped_amplification
from ._stability import growth_factor as growth_factor
from ._stability import growth_per_step as growth_per_step
from ._stability import kadam_levels as kadam_levels
from ._stability import level_conditions as level_conditions
from ._stability import paper_criterion as paper_criterion
from ._stability import stability as stability
from ._stability import stability_condition as stability_condition
from ._stability import update_bound as update_bound
from ._symbols import SYMPY_OPS as SYMPY_OPS

__all__ = [
    "amplification",
    "bias_corrected_form",
    "bias_correction",
    "corrected_flow",
    "corrected_flows",
    "decoupled_decay",
    "Derivation",
    "derivations",
    "discrete_map",
    "discrete_step_function",
    "DiscreteStep",
    "eos",
    "eos_first_instability",
    "eos_threshold_expr",
    "eps_capped_amplification",
    "FieldValue",
    "growth_factor",
    "growth_per_step",
    "implicit_bias_comparison",
    "Instability",
    "kadam_levels",
    "lag_functions",
    "Lags",
    "leading_field_function",
    "leading_flow",
    "level_conditions",
    "memory_kernel",
    "modified_coefficients",
    "ModifiedCoefficients",
    "moment_rate",
    "moment_rates",
    "paper_criterion",
    "scale_invariance",
    "stability",
    "stability_condition",
    "Step",
    "SYMPY_OPS",
    "theory_documents",
    "update_bound",
    "write_theory",
]
