#!/bin/sh
# Build the monoculture image without a registry: from a local Debian base made with
# debootstrap (made once, then reused), as root with podman (docs/DEPLOY.md).
#
#   sh deploy/build-image.sh [IMAGE]        # default localhost/monoculture:latest
#
# Where podman's defaults are refused (rlimits, pids limit), point CONTAINERS_CONF at a file
# with `[containers] default_ulimits = [] pids_limit = 0` first.
set -eu
cd "$(dirname "$0")/.."
IMAGE=${1:-localhost/monoculture:latest}
BASE=${MONOCULTURE_BASE:-localhost/bookworm-python:3.11}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

if ! podman image exists "$BASE"; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian
  tar -C "$rootfs" -c . | podman import - "$BASE"
fi
# The host's CA bundle: pip in the builder then trusts what this host trusts (a proxy's CA too).
podman build --format docker --network host -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
  --build-arg BASE="$BASE" -f deploy/Dockerfile -t "$IMAGE" .
