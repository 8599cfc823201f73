#!/usr/bin/env bash
# make images: build servoscope's OCI images offline with podman, FROM the debootstrapped
# Debian base (tools/containers.sh), tagged localhost/servoscope/<name>:<version>:
#   gateway servo-controller motion-planner telemetry-logger device-state simulator
# and the CI-only images of the stack's third-party servers (jaeger, prometheus, redis,
# pause), which stand in for upstream images where no registry is reachable.
# An image whose inputs (sources, Containerfile, base) did not change is not rebuilt, so a
# second run takes seconds; its revision label names the commit that first built them.
# Usage: tools/images.sh [--sizes]   (--sizes: print "name size-in-bytes" per image, build nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"
cache=${SERVOSCOPE_CACHE:-$HOME/.cache/servoscope}

SERVICES="gateway servo-controller motion-planner telemetry-logger device-state simulator"
CI_IMAGES="jaeger prometheus redis pause"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -1)
tag=${SERVOSCOPE_IMAGE_TAG:-$version}

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
base_id=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")
stamps="$cache/containers/image-inputs"
mkdir -p "$stamps"
ca=/etc/ssl/certs/ca-certificates.crt

inputs_digest() {  # directory files... -> one digest of everything a build reads
    local dir=$1
    shift
    { (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
      sha256sum "$@"; echo "$base_id $version"; } | sha256sum | cut -d' ' -f1
}

build() {  # target containerfile context inputs-digest [podman build options...]
    local target=$1 file=$2 context=$3 digest=$4 started=$SECONDS
    shift 4
    local image="localhost/servoscope/$target:$tag" stamp="$stamps/$target-$tag"
    # Even a fully cached podman build re-hashes every COPY source (the venv: seconds per
    # image); an image built from the same inputs is kept as it is instead. (The stamp is a
    # file, not a label: podman reuses a cached label layer whatever its build argument.)
    local id
    id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [ -n "$id" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest $id" ]; then
        say "  $image (unchanged)"
        return
    fi
    local ca_mount=()
    [ -s "$ca" ] && ca_mount=(--volume "$ca:/run/ca.crt:ro")
    podman build --quiet --layers --pull=never \
        --file "$file" --target "$target" --build-arg "BASE=$BASE_IMAGE" \
        "${ca_mount[@]}" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
        --tag "$image" "$@" "$context" >/dev/null
    echo "$digest $(podman image inspect --format '{{.Id}}' "$image")" >"$stamp"
    say "  $image ($((SECONDS - started))s)"
}

started=$SECONDS
say "building servoscope images ($tag) from $BASE_IMAGE"
# A build context of only what the Containerfile copies: podman walks the whole context on
# every build, and the repo's .venv alone is thousands of files. Layers are cached by
# content, so a fresh copy rebuilds nothing that did not change.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/app" "$context/ci"
(cd "$repo" && tar -c --exclude=__pycache__ --exclude=gateway/dev-keys.yaml \
    pyproject.toml requirements.lock servoscope.toml docs/problems.md servoscope gateway services) |
    tar -x -C "$context/app"
files=("$repo/deploy/images/Containerfile" "$repo/deploy/images/Containerfile.dockerignore")
digest=$(inputs_digest "$context/app" "${files[@]}")
for name in $SERVICES; do
    build "$name" "${files[0]}" "$context/app" "$digest" --ignorefile "${files[1]}"
done

jaeger="$cache/bin/jaeger-$JAEGER_VERSION"
[ -x "$jaeger" ] || { say "$jaeger is missing: run make tools first"; exit 1; }
cp "$jaeger" "$context/ci/jaeger"
digest=$(inputs_digest "$context/ci" "$repo/deploy/images/ci.Containerfile")
for name in $CI_IMAGES; do
    build "$name" "$repo/deploy/images/ci.Containerfile" "$context/ci" "$digest"
done
say "images ready in $((SECONDS - started))s"
