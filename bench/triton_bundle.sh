#!/usr/bin/env bash
# Build the bundle bench/triton_gpu.sh runs on a GPU machine without registry access (the device tool; a call
# carries at most 64 MiB): tritonserver, the libraries it and the python backend load, the python-backend stub
# for Python 3.12, a numpy-1.26 overlay for the stub (numpy 2 corrupts the 2.51 stub's tensors), the pure
# dependencies of serving/ and the load generator for CPython 3.12, and one export (training state left out).
#
#   bash bench/triton_bundle.sh EXPORT_ROOT [OUT=.streamrec/device/tbundle.tar.xz]
# Needs `streamrec stack up` to have installed Triton once (~/.cache/streamrec/pytriton-<v>).
set -euo pipefail
EXPORT_ROOT=${1:?usage: triton_bundle.sh EXPORT_ROOT [OUT]}
OUT=${2:-.streamrec/device/tbundle.tar.xz}
PIP=${PIP:-.venv/bin/pip}
HOME_DIR=$(ls -d "$HOME"/.cache/streamrec/pytriton-* | tail -1)
STAGE=$(mktemp -d)
B=$STAGE/tbundle
mkdir -p "$B/libs" "$(dirname "$OUT")"
cp -r "$HOME_DIR/tritonserver/bin" "$HOME_DIR/tritonserver/backends" "$HOME_DIR/tritonserver/caches" "$B/"
cp "$HOME_DIR/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub" "$B/backends/python/"
LIBS=$HOME_DIR/nvidia_pytriton.libs
for binary in "$B/bin/tritonserver" "$LIBS"/libtritonserver-*.so "$B/backends/python/libtriton_python.so" \
  "$B/backends/python/triton_python_backend_stub"; do
  LD_LIBRARY_PATH=$LIBS ldd "$binary" | awk -v d="$LIBS" '$3 ~ d {print $3}'
done | sort -u | xargs -I{} cp {} "$B/libs/"

platforms=(--python-version 3.12 --only-binary=:all: --no-deps --platform any --platform manylinux2014_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64)
pin() { grep -iE "^${1//-/[-_]}==" constraints.txt; }
"$PIP" install --quiet "${platforms[@]}" --target "$B/overlay" numpy==1.26.4
"$PIP" wheel --quiet --no-deps -w "$STAGE/wheels" "$(pin pybloom-live)"
"$PIP" install --quiet "${platforms[@]}" --target "$B/site" "$STAGE"/wheels/*.whl \
  $(for p in pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-extensions \
      typing-inspection pyyaml redis hiredis bitarray xxhash tritonclient grpcio protobuf python-rapidjson urllib3 \
      packaging httpx httpcore h11 anyio idna certifi; do pin "$p"; done)

version=$(cat "$EXPORT_ROOT/CURRENT")
mkdir -p "$B/export/versions/$version"
cp "$EXPORT_ROOT/CURRENT" "$B/export/"
find "$EXPORT_ROOT/versions/$version" -maxdepth 1 -type f ! -name 'training_state*' -exec cp {} "$B/export/versions/$version/" \;
find "$B" -name __pycache__ -prune -exec rm -rf {} +
tar -cf - -C "$STAGE" tbundle | xz -T0 -6 > "$OUT"
rm -rf "$STAGE"
ls -la "$OUT"
