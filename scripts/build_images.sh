#!/usr/bin/env bash
# Build the three images with buildah: streamrec, streamrec-trainer, streamrec-triton (in this order: the Triton
# image takes its Python environment from the trainer image).
#
#   scripts/build_images.sh            build all, tag localhost/NAME:VERSION, print build time and size
#   scripts/build_images.sh --if-buildah   same, but skip (exit 0, one line) where buildah is not installed
#   IMAGES="streamrec" scripts/build_images.sh   only these
#   FLAVOUR=gpu scripts/build_images.sh   trainer and Triton in the GPU flavour (containers/flavours/), tagged VERSION-gpu
#
# The base is $BASE_IMAGE when set, else the public python:3.11-slim-bookworm when a registry answers, else a base
# built from Debian's packages (scripts/build_base_image.sh, cached under ~/.cache/streamrec/images).
# Layers are cached (--layers) in containers-storage, outside the clone: the dependencies sit in a layer that only
# constraints.txt and the dependency list invalidate, the package in a small last layer, so a code change rebuilds
# seconds of each image. Builds on one machine take turns (a lock under the cache directory): they share the tags.
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
flavour=${FLAVOUR:-cpu}
[ -f "containers/flavours/$flavour.txt" ] || { echo "$0: no flavour $flavour (containers/flavours/)" >&2; exit 2; }
public_base=docker.io/library/python:3.11-slim-bookworm
local_base=localhost/streamrec-base:bookworm
report=build/images/report.tsv

cache=${STREAMREC_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/images}
mkdir -p "$cache"
exec 9>"$cache/build.lock"
if ! flock -n 9; then
  echo "another image build runs on this machine: waiting for it"
  flock 9
fi

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
# so replaced images were never freed and the disk filled over repeated runs. Under the lock no other build runs,
# so this project's build containers are leftovers; a smoke test's container (streamrec-smoke-PID-*) is one once
# its test process is gone.
buildah containers --noheading --format '{{.ContainerID}} {{.ContainerName}} {{.ImageName}}' 2>/dev/null |
  while read -r id ctr_name image_name; do
    if [[ $ctr_name =~ ^streamrec-smoke-([0-9]+)- ]]; then
      kill -0 "${BASH_REMATCH[1]}" 2>/dev/null || echo "$id"
    elif [[ $ctr_name == *working-container* && ($image_name == "" || $image_name == localhost/streamrec*) ]]; then
      echo "$id"
    fi
  done | xargs -r buildah rm >/dev/null 2>&1 || true

# pip's download cache outside the clone, shared by every build (the build stages run pip as root). pip keeps
# only responses that carry caching headers: through a proxy that strips them it stays (nearly) empty.
pip_cache=$cache/pip
mkdir -p "$(dirname "$report")" "$pip_cache"
printf 'image\tseconds\tsize\n' >"$report"
# Each line of a build log starts with the seconds since its build began: where the time goes.
timestamped() {
  local started=$SECONDS line
  while IFS= read -r line; do printf '%4ds %s\n' $((SECONDS - started)) "$line"; done
}

for name in $images; do
  tag=$version
  args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
  if [ "$name" != streamrec ]; then
    args+=(--build-arg "FLAVOUR=$flavour")
    [ "$flavour" = cpu ] || tag=$version-$flavour
  fi
  # buildah 1.28 takes a cached LABEL step whatever the ARG values: labels given here are always the current ones.
  args+=(--label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$revision")
  previous=$(buildah images --noheading --format '{{.ID}}' "localhost/$name:$tag" 2>/dev/null || true)
  started=$(date +%s)
  log=build/images/$name.log
  echo "building localhost/$name:$tag (log: $log)"
  if ! buildah bud --isolation chroot --layers -v /etc/ssl/certs:/etc/ssl/certs:ro -v "$pip_cache:/root/.cache/pip" \
    --ignorefile containers/ignore \
    "${args[@]}" -f "containers/$name.Containerfile" -t "localhost/$name:$tag" . 2>&1 | timestamped >"$log"; then
    tail -20 "$log" >&2
    echo "$0: building $name failed ($log)" >&2
    exit 1
  fi
  seconds=$(($(date +%s) - started))
  # The image this build replaced: only its small package layer is its own, the rest stays as the cache.
  current=$(buildah images --noheading --format '{{.ID}}' "localhost/$name:$tag")
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
  fi
  size=$(buildah images --noheading --format '{{.Size}}' "localhost/$name:$tag")
  printf '%s\t%s\t%s\n' "$name" "$seconds" "$size" >>"$report"
  echo "built localhost/$name:$tag in ${seconds}s ($size)"
done
# The intermediate layers of this build stay (unnamed): they are the cache of the next one.
