#!/usr/bin/env bash
# One prepared check for a machine with a GPU (nothing else in adamflow needs one):
#   1. print the JAX devices, and fail clearly when JAX sees no GPU;
#   2. run the test suite with the GPU visible (ADAMFLOW_TEST_PLATFORM=cuda,cpu, which
#      tests/conftest.py uses instead of its default JAX_PLATFORMS=cpu; slow tests too,
#      multi-process ones included; 4 pytest workers sharing the GPU, no preallocation);
#   3. run the GPU-scale benchmark (a 256 x 256 (b1, b2) grid, 10^4 steps, the sparse
#      problem in 10^3 dimensions): absolute times and element-steps per second of the
#      phase-diagram sweep and of the minimal kernel, and one optax loop point.
# Results (JSON, the pytest report and this log) go to "$OUT" when it is set. Each stage
# has a time limit (TEST_LIMIT_S, BENCH_LIMIT_S: 240 s each), so the whole check takes
# under 8 minutes.
#
# Environment: GPU_GRID, GPU_STEPS, GPU_DIM, GPU_CHUNK set the benchmark sizes;
# ALLOW_CPU=1 skips the GPU assertion and SKIP_TESTS=1 the test suite, to smoke-test this
# script on a CPU:  ALLOW_CPU=1 SKIP_TESTS=1 GPU_GRID=8 GPU_STEPS=100 GPU_DIM=16 scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Several processes share the GPU (pytest workers, the multi-process tests).
export XLA_PYTHON_CLIENT_PREALLOCATE=false

OUT_DIR="${OUT:-}"
if [[ -n "$OUT_DIR" ]]; then
    mkdir -p "$OUT_DIR"
    exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
fi

echo "== devices"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi
python - <<'PY'
import os
import sys

import jax

print(f"jax {jax.__version__}, backend {jax.default_backend()}")
for device in jax.devices():
    print(f"  {device} ({device.device_kind})")
if jax.default_backend() != "gpu":
    message = (
        f"gpu_check: JAX sees no GPU (backend {jax.default_backend()!r}); install a CUDA "
        "build of jax (pip install 'jax[cuda12]') or run on a GPU machine"
    )
    if os.environ.get("ALLOW_CPU") == "1":
        print(message + " -- continuing on the CPU because ALLOW_CPU=1")
    else:
        sys.exit(message)
PY

if [[ "${SKIP_TESTS:-0}" == "1" ]]; then
    echo "== tests skipped (SKIP_TESTS=1)"
else
    echo "== tests"
    start=$SECONDS
    junit_args=()
    if [[ -n "$OUT_DIR" ]]; then
        junit_args=(--junitxml "$OUT_DIR/pytest.xml")
    fi
    platform="cuda,cpu"
    if [[ "${ALLOW_CPU:-0}" == "1" ]]; then
        platform="cpu"
    fi
    ADAMFLOW_TEST_PLATFORM="$platform" timeout "${TEST_LIMIT_S:-240}" \
        python -m pytest -q -x -p no:cacheprovider -n "${TEST_WORKERS:-4}" \
        -m "slow or not slow" "${junit_args[@]}"
    echo "tests took $((SECONDS - start)) s"
fi

echo "== benchmark at GPU scale"
json_args=()
if [[ -n "$OUT_DIR" ]]; then
    json_args=(--json "$OUT_DIR/gpu_scale.json")
fi
start=$SECONDS
timeout "${BENCH_LIMIT_S:-240}" python scripts/bench.py --only gpu_scale \
    --gpu-grid "${GPU_GRID:-256}" \
    --gpu-steps "${GPU_STEPS:-10000}" \
    --gpu-dim "${GPU_DIM:-1000}" \
    --gpu-chunk "${GPU_CHUNK:-16384}" \
    "${json_args[@]}"
echo "benchmark took $((SECONDS - start)) s"
