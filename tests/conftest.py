import os

# Tests compare trajectories to ~1e-10; they need float64. By default they run on the CPU
# (JAX_PLATFORMS=cpu); ADAMFLOW_TEST_PLATFORM, when set, is the JAX platform list instead
# (scripts/gpu_check.sh sets "cuda,cpu" so that the suite runs with the GPU visible).
_platform = os.environ.get("ADAMFLOW_TEST_PLATFORM")
if _platform:
    os.environ["JAX_PLATFORMS"] = _platform
else:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
