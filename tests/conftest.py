import os

# Tests compare trajectories to ~1e-10; they need float64. Keep JAX on one CPU thread pool.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
