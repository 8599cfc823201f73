#!/usr/bin/env bash
# make images: build servoscope's OCI images offline with podman, FROM the debootstrapped
# Debian base (tools/containers.sh), tagged localhost/servoscope/<name>:<version>:
#   gateway servo-controller motion-planner telemetry-logger device-state simulator
# and the CI-only images of the stack's third-party servers (jaeger, prometheus, redis,
# pause), which stand in for upstream images where no registry is reachable.
# Layers are cached by podman, so a second run with unchanged sources takes seconds.
# Usage: tools/images.sh [--sizes]   (--sizes: print "name size-in-bytes" per image, build nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
cache=${SERVOSCOPE_CACHE:-$HOME/.cache/servoscope}

SERVICES="gateway servo-controller motion-planner telemetry-logger device-state simulator"
CI_IMAGES="jaeger prometheus redis pause"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -1)
tag=${SERVOSCOPE_IMAGE_TAG:-$version}

say() { printf '==> %s\n' "$*" >&2; }

"$here/containers.sh" --check || "$here/containers.sh"
CONTAINERS_CONF=$("$here/containers.sh" --conf)
export CONTAINERS_CONF

if [ "${1:-}" = "--sizes" ]; then
    for name in $SERVICES $CI_IMAGES; do
        printf '%s %s\n' "$name" "$(podman image inspect --format '{{.Size}}' "localhost/servoscope/$name:$tag")"
    done
    exit 0
fi

revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
ca=/etc/ssl/certs/ca-certificates.crt
build() {  # target containerfile context
    local target=$1 file=$2 context=$3 started=$SECONDS
    shift 3
    local ca_mount=()
    [ -s "$ca" ] && ca_mount=(--volume "$ca:/run/ca.crt:ro")
    podman build --quiet --layers --pull=never \
        --file "$file" --target "$target" --build-arg "BASE=$BASE_IMAGE" \
        "${ca_mount[@]}" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$revision" \
        --tag "localhost/servoscope/$target:$tag" "$@" "$context" >/dev/null
    say "  localhost/servoscope/$target:$tag ($((SECONDS - started))s)"
}

started=$SECONDS
say "building servoscope images ($tag) from $BASE_IMAGE"
for name in $SERVICES; do
    build "$name" "$repo/deploy/images/Containerfile" "$repo" \
        --ignorefile "$repo/deploy/images/Containerfile.dockerignore"
done

jaeger="$cache/bin/jaeger-$JAEGER_VERSION"
[ -x "$jaeger" ] || { say "$jaeger is missing: run make tools first"; exit 1; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$jaeger" "$context/jaeger"
for name in $CI_IMAGES; do
    build "$name" "$repo/deploy/images/ci.Containerfile" "$context"
done
say "images ready in $((SECONDS - started))s"
