#!/usr/bin/env bash
# Build the Python base image the Containerfiles start from, from Debian's own packages, when no container
# registry is reachable: debootstrap (minbase, bookworm: Python 3.11) -> `buildah from scratch` -> commit.
# The rootfs tarball and the image are cached outside the clone, so a CI run builds this once.
#
#   scripts/build_base_image.sh [IMAGE_NAME]     (default localhost/streamrec-base:bookworm)
set -euo pipefail

image=${1:-localhost/streamrec-base:bookworm}
cache=${STREAMREC_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/images}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: the builder stage makes /opt/streamrec with it; libgomp1: faiss/torch/scikit-learn's OpenMP;
# ca-certificates: TLS to Kafka/Redis/registries; tini: PID 1 that forwards SIGTERM and reaps children.
packages=python3,python3-venv,ca-certificates,libgomp1,tini
tarball="$cache/debian-$suite-minbase-$(echo "$packages" | md5sum | cut -c1-8).tar"

if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "base image $image already built"
  exit 0
fi
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (apt-get install -y buildah debootstrap)" >&2; exit 2; }
done
mkdir -p "$cache"
if [ ! -f "$tarball" ]; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap --variant=minbase $suite (+ $packages) -> $tarball"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { echo "$0: debootstrap failed, see $cache/debootstrap.log" >&2; exit 1; }
  # Same trimming as the slim public images: no apt lists, docs, man pages or locales.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$ctr" "$tarball" /
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd python3 --label org.opencontainers.image.title="streamrec-base" \
  --label org.opencontainers.image.description="Debian $suite minbase with Python 3 (built by debootstrap)" "$ctr"
buildah commit --quiet "$ctr" "$image" >/dev/null
echo "built base image $image from $tarball"
