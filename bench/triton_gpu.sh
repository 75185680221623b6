#!/usr/bin/env bash
# Triton gRPC direct on a GPU machine that has Python 3.12 + torch but not this project's environment (the
# device tool's machine): unpack the bundle that bench/triton_bundle.sh builds (tritonserver and its libraries,
# the python-backend stub for 3.12, a numpy-1.26 stub overlay, the pure-Python dependencies, an export), start
# tritonserver, prepare the repository in each layout (instance_kind=gpu: the model stages and the fused model on
# GPU instances, the numpy stages of the ensemble on CPU instances), and run the load generator.
# STORES=off (default): Feast and Bloom are off, their stages pass through, so only the compute path and
# Triton's own overhead are measured. STORES=on: the real Feast and Bloom stages, against a Valkey started on the
# device from the stores bundle (bench/gpu_stores_bundle.py build; its ``fill`` writes a Feast row and a Bloom
# filter for every user of the export).
#
#   bash bench/triton_gpu.sh            # BUNDLE=.streamrec/device/tbundle.tar.xz, results under $OUT
#   STORES=on bash bench/triton_gpu.sh  # plus STORES_BUNDLE=.streamrec/device/stores.tar.xz
set -euo pipefail
BUNDLE=${BUNDLE:-.streamrec/device/tbundle.tar.xz}
OUT=${OUT:-/tmp/triton-gpu-out}
STORES=${STORES:-off}
STORES_BUNDLE=${STORES_BUNDLE:-.streamrec/device/stores.tar.xz}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
RATES=${RATES:-"1000 2000 3000"}  # open-loop rates; CONFIGS below picks the layouts
WORK=/tmp/triton-gpu
rm -rf "$WORK" && mkdir -p "$WORK/models" "$OUT"
tar -xJf "$BUNDLE" -C "$WORK"
T=$WORK/tbundle
ROOT=$PWD
# Wheels carried next to the bundle (e.g. .streamrec/device/wheels/hiredis-*.whl) join its site-packages.
for wheel in "${EXTRA_WHEELS:-.streamrec/device/wheels}"/*.whl; do
  if [ -f "$wheel" ]; then python3 -m zipfile -e "$wheel" "$T/site"; fi
done
# The device's scipy is built for numpy 2 and the stub runs numpy 1.26: Feast's default offline-store config
# imports dask, which imports scipy.sparse if it can, and fails with AttributeError (np.long) instead of the
# ImportError dask expects. No serving stage uses scipy, so the bench makes it unimportable inside the stub.
mkdir -p "$T/overlay/scipy"
echo 'raise ImportError("scipy is built for numpy 2; the stub runs numpy 1.26 (bench environment)")' \
  > "$T/overlay/scipy/__init__.py"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())'
LIBDIR=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
# What the stub sees after its overlay: the bundle's packages, this checkout, the system's site-packages (torch).
{ echo "$ROOT"; python3 -c 'import site; print("\n".join(site.getsitepackages()))'; } > "$T/site/zz-streamrec.pth"
STORES_SITE=/tmp/streamrec-gpu-stores/site  # where the stores bundle unpacks Feast (gpu_stores_bundle.STORE_ROOT)
if [ "$STORES" = on ]; then
  rm -rf /tmp/streamrec-gpu-stores && tar -xJf "$STORES_BUNDLE" -C /tmp
  echo "$STORES_SITE" >> "$T/site/zz-streamrec.pth"  # Feast for the user-features stage inside the stub
fi
export LD_LIBRARY_PATH="$T/libs:$LIBDIR:${LD_LIBRARY_PATH:-}"
export STREAMREC_STUB_OVERLAY="$T/overlay" STREAMREC_STUB_SITE="$T/site"
"$T/bin/tritonserver" --model-repository="$WORK/models" --backend-directory="$T/backends" \
  --model-control-mode=explicit --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --strict-readiness=false --exit-on-error=false --log-verbose=0 > "$OUT/tritonserver.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf localhost:8000/v2/health/live >/dev/null && break; sleep 1; done
curl -sf localhost:8000/v2/health/live >/dev/null || { tail -30 "$OUT/tritonserver.log"; exit 1; }

export PYTHONPATH="$T/site:$ROOT" STREAMREC_TRITON_HTTP_PORT=8000 STREAMREC_TRITON_GRPC_PORT=8001
export STREAMREC_TRITON_REQUEST_TIMEOUT_S=2
STAGE_REDIS_URL=redis://127.0.0.1:1/0  # nothing listens: with STORES=off the store stages are switched off
if [ "$STORES" = on ]; then
  # Starts Valkey, fills it, and prints "export STREAMREC_FEAST_REPO=... STREAMREC_FEAST_PROJECT=... REDIS_URL=...".
  eval "$(PYTHONPATH="$PYTHONPATH:$STORES_SITE" python3 bench/gpu_stores_bundle.py fill "$T/export" | tail -1)"
  STAGE_REDIS_URL=$REDIS_URL
fi
export STAGE_REDIS_URL STORES
run_layout() {  # layout, instances per model, batching delay (µs)
  python3 - "$1" "$2" "$3" "$WORK/models" "$T/export" <<'PY'
import os, sys
from pathlib import Path
from serving.repository import ModelControl, prepare
from serving.settings import ServingSettings
from streamrec.settings import BloomSettings, FeastSettings
layout, count, delay, repo, export_root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
serving = ServingSettings(
    layout=layout, instance_kind="gpu", instance_count=count, max_batch_size=64, batch_delay_us=delay,
    features_enabled=os.environ["STORES"] == "on", bloom_enabled=os.environ["STORES"] == "on", reload_grace_s=0.5,
)
# FeastSettings from STREAMREC_FEAST_* (set by the stores fill); numpy stages on CPU instances, models on the GPU.
result = prepare(Path(repo), Path(export_root), serving=serving, bloom=BloomSettings(), feast=FeastSettings(),
                 redis_url=os.environ["STAGE_REDIS_URL"], control=ModelControl("http://127.0.0.1:8000"), progress=print)
print(result.line(), flush=True)
PY
  local tag="$1-x$2-d$3-stores$STORES"
  python3 bench/serving_load.py --target triton --export-root "$T/export" --mode closed --concurrency 1 \
    --requests 1000 --timings --out "$OUT/$tag-closed1.json" | grep -A7 '"latency_ms"' | tr -d ' \n'; echo
  for rate in $RATES; do
    python3 bench/serving_load.py --target triton --export-root "$T/export" --mode open --rate "$rate" \
      --duration "$SECONDS_PER_RUN" --processes 4 --out "$OUT/$tag-open$rate.json" \
      | grep -E '"(throughput_rps|failures_or_fallbacks|p50|p99|max)"' | tr -d ' \n'; echo " <- $tag $rate/s"
  done
}
# layout:instances per model:dynamic-batching delay (µs), each prepared in turn (a hot swap) and measured
for config in ${CONFIGS:-fused:1:100 fused:4:100 ensemble:1:100 ensemble:2:100}; do
  IFS=: read -r layout count delay <<< "$config"
  run_layout "$layout" "$count" "$delay"
done
grep -iE "error|fail" "$OUT/tritonserver.log" | head -20 || true
