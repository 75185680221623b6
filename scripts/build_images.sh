#!/usr/bin/env bash
# Build the three images with buildah: streamrec, streamrec-trainer, streamrec-triton (in this order: the Triton
# image takes its Python environment from the trainer image).
#
#   scripts/build_images.sh            build all, tag localhost/NAME:VERSION, print build time and size
#   scripts/build_images.sh --if-buildah   same, but skip (exit 0, one line) where buildah is not installed
#   IMAGES="streamrec" scripts/build_images.sh   only these
#
# The base is $BASE_IMAGE when set, else the public python:3.11-slim-bookworm when a registry answers, else a base
# built from Debian's packages (scripts/build_base_image.sh, cached under ~/.cache/streamrec/images).
# Layers are cached (--layers): dependencies sit in layers that only pyproject.toml/constraints.txt invalidate.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v buildah >/dev/null; then
  if [ "${1:-}" = "--if-buildah" ]; then
    echo "images not built: buildah is not installed (apt-get install -y buildah debootstrap)"
    exit 0
  fi
  echo "$0: buildah is not installed (apt-get install -y buildah debootstrap)" >&2
  exit 2
fi

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
images=${IMAGES:-streamrec streamrec-trainer streamrec-triton}
public_base=docker.io/library/python:3.11-slim-bookworm
local_base=localhost/streamrec-base:bookworm
report=build/images/report.tsv

if [ -z "${BASE_IMAGE:-}" ]; then
  if buildah inspect --type image "$public_base" >/dev/null 2>&1 \
    || timeout 30 buildah pull --quiet "$public_base" >/dev/null 2>&1; then
    BASE_IMAGE=$public_base
  else
    echo "no container registry reachable: base image from Debian's packages ($local_base)"
    scripts/build_base_image.sh "$local_base"
    BASE_IMAGE=containers-storage:$local_base
  fi
fi

# Working containers that an interrupted build or smoke test left behind pin the multi-GB images they came from,
# so replaced images were never freed and the disk filled over repeated runs: remove this project's ones.
buildah containers --noheading --format '{{.ContainerID}} {{.ContainerName}} {{.ImageName}}' 2>/dev/null |
  awk '$2 ~ /working-container/ && ($3 == "" || $3 ~ /^localhost\/streamrec/) {print $1}' |
  xargs -r buildah rm >/dev/null 2>&1 || true

# pip's download cache outside the clone, shared by every build (the build stages run pip as root).
pip_cache=${STREAMREC_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/images}/pip
mkdir -p "$(dirname "$report")" "$pip_cache"
printf 'image\tseconds\tsize\n' >"$report"
for name in $images; do
  args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
  if [ "$name" = streamrec-triton ]; then
    args+=(--build-arg "MODELS_IMAGE=containers-storage:localhost/streamrec-trainer:$version")
  fi
  previous=$(buildah images --noheading --format '{{.ID}}' "localhost/$name:$version" 2>/dev/null || true)
  started=$(date +%s)
  echo "building localhost/$name:$version (log: build/images/$name.log)"
  if ! buildah bud --isolation chroot --layers -v /etc/ssl/certs:/etc/ssl/certs:ro -v "$pip_cache:/root/.cache/pip" \
    --ignorefile containers/ignore \
    "${args[@]}" -f "containers/$name.Containerfile" -t "localhost/$name:$version" . >"build/images/$name.log" 2>&1; then
    tail -20 "build/images/$name.log" >&2
    echo "$0: building $name failed (build/images/$name.log)" >&2
    exit 1
  fi
  seconds=$(($(date +%s) - started))
  # The image this build replaced holds a multi-GB layer of its own (the venv copied into the final stage).
  current=$(buildah images --noheading --format '{{.ID}}' "localhost/$name:$version")
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
  fi
  size=$(buildah images --noheading --format '{{.Size}}' "localhost/$name:$version")
  printf '%s\t%s\t%s\n' "$name" "$seconds" "$size" >>"$report"
  echo "built localhost/$name:$version in ${seconds}s ($size)"
done
# The intermediate layers of this build stay (unnamed): they are the cache of the next one.
