import os
import shutil
import tempfile

# Tests compare trajectories to ~1e-10; they need float64. By default they run on the CPU
# (JAX_PLATFORMS=cpu); ADAMFLOW_TEST_PLATFORM, when set, is the JAX platform list instead
# (scripts/gpu_check.sh sets "cuda,cpu" so that the suite runs with the GPU visible).
_platform = os.environ.get("ADAMFLOW_TEST_PLATFORM")
if _platform:
    os.environ["JAX_PLATFORMS"] = _platform
else:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One JAX compilation cache for this test session, shared by the xdist workers and the
# subprocesses the tests start (they inherit the environment, and JAX reads it on import):
# a function compiled in one process is loaded, not compiled again, in the others. A new,
# empty folder each session, made by the controlling process and removed at its end, so no
# run is faster for an earlier one.
_CACHE_OWNER = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _CACHE_OWNER:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="adamflow-test-jax-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
    if _CACHE_OWNER:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
