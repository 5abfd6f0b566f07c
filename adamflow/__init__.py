"""adamflow: continuous-time analysis of adaptive optimizers (arXiv 2411.05746).

Specs (`Adam`, `AdamW`, `KAdam`) feed the discrete reference (`run_discrete`), the
continuous-time flow (`integrate`) and the symbolic layer (`adamflow.symbolic`, imported
on demand so that ``import adamflow`` does not load sympy).
"""

from importlib import metadata as _metadata

from . import phase as phase
from . import problems as problems
from . import stability as stability
from ._compare import Comparison as Comparison
from ._compare import OrderFit as OrderFit
from ._compare import compare as compare
from ._compare import compare_orders as compare_orders
from ._compare import convergence_order as convergence_order
from ._compare import fit_order as fit_order
from ._discrete import run_discrete as run_discrete
from ._integrate import PrecisionWarning as PrecisionWarning
from ._integrate import ValidityWarning as ValidityWarning
from ._integrate import integrate as integrate
from ._optimizers import Adam as Adam
from ._optimizers import AdamW as AdamW
from ._optimizers import CascadeState as CascadeState
from ._optimizers import KAdam as KAdam
from ._optimizers import as_optax as as_optax
from ._optimizers import cascade_step as cascade_step
from ._optimizers import init_state as init_state
from ._optimizers import parameter_step as parameter_step
from ._optimizers import stack_specs as stack_specs
from ._sharpness import Sharpness as Sharpness
from ._sharpness import adam_preconditioner as adam_preconditioner
from ._sharpness import eos_threshold as eos_threshold
from ._sharpness import preconditioned_sharpness as preconditioned_sharpness
from ._trajectory import IntegrationError as IntegrationError
from ._trajectory import PyTree as PyTree
from ._trajectory import StartValidity as StartValidity
from ._trajectory import TrainingState as TrainingState
from ._trajectory import Trajectory as Trajectory
from .phase import PhaseDiagram as PhaseDiagram
from .phase import load_phase_diagram as load_phase_diagram
from .phase import phase_diagram as phase_diagram

__all__ = [
    "Adam",
    "adam_preconditioner",
    "AdamW",
    "as_optax",
    "cascade_step",
    "CascadeState",
    "compare",
    "compare_orders",
    "Comparison",
    "convergence_order",
    "eos_threshold",
    "fit_order",
    "init_state",
    "integrate",
    "IntegrationError",
    "KAdam",
    "load_phase_diagram",
    "OrderFit",
    "parameter_step",
    "phase",
    "phase_diagram",
    "PhaseDiagram",
    "PrecisionWarning",
    "preconditioned_sharpness",
    "problems",
    "PyTree",
    "run_discrete",
    "Sharpness",
    "stability",
    "stack_specs",
    "StartValidity",
    "TrainingState",
    "Trajectory",
    "ValidityWarning",
]


try:  # the installed distribution's version (pyproject.toml), read once at import
    __version__: str = _metadata.version("adamflow")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # adamflow.symbolic loads sympy (slow); import it only when first used.
    if name == "symbolic":
        import importlib

        return importlib.import_module(".symbolic", __name__)
    raise AttributeError(f"module 'adamflow' has no attribute {name!r}")
