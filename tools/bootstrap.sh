#!/usr/bin/env bash
# Installs everything the stack needs outside the Python venv, idempotently:
#   - Debian packages (Prometheus + promtool, Redis, nginx, wrk, PostgreSQL), without starting
#     their services;
#   - Jaeger v2 and Toxiproxy, built from their Go modules with this machine's Go.
# Builds are cached in ${SERVOSCOPE_CACHE:-~/.cache/servoscope}/bin, so a fresh clone reuses them.
# Usage: tools/bootstrap.sh [--check]   (--check: exit 1 if anything is missing, install nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"
cache=${SERVOSCOPE_CACHE:-$HOME/.cache/servoscope}
bin="$cache/bin"
mkdir -p "$bin"
check_only=${1:-}

jaeger="$bin/jaeger-$JAEGER_VERSION"
toxiproxy="$bin/toxiproxy-$TOXIPROXY_VERSION"

missing_apt() {
    local missing=()
    for cmd in prometheus promtool redis-server nginx wrk; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    # Debian keeps the server's binaries off PATH, under its major version.
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgres)
    echo "${missing[@]:-}"
}

if [ "$check_only" = "--check" ]; then
    [ -z "$(missing_apt)" ] && [ -x "$jaeger" ] && [ -x "$toxiproxy" ] && exit 0
    exit 1
fi

# Serialise concurrent bootstraps (two clones, or make up racing make test).
exec 9>"$cache/bootstrap.lock"
flock 9

if [ -n "$(missing_apt)" ]; then
    say "installing Debian packages: $APT_PACKAGES (missing: $(missing_apt))"
    # shellcheck disable=SC2086
    apt_install $APT_PACKAGES
    say "Debian packages installed"
fi

go_build() {  # name module version package output
    local name=$1 module=$2 version=$3 package=$4 output=$5
    command -v go >/dev/null || { say "Go is required to build $name; install Go >= 1.24"; exit 1; }
    say "building $name $version from $module (first time only: a few minutes)"
    local dir
    # `go install pkg@version` refuses modules whose go.mod has replace directives (Jaeger's
    # does), so download the module and build inside its directory instead.
    dir=$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { say "could not download $module@$version from the Go module proxy"; exit 1; }
    local started=$SECONDS
    (cd "$dir" && go build -trimpath -o "$output.tmp" "$package") &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 15
        kill -0 "$pid" 2>/dev/null && say "  still building $name ($((SECONDS - started))s)"
    done
    wait "$pid"
    mv "$output.tmp" "$output"
    say "built $output in $((SECONDS - started))s"
}

[ -x "$jaeger" ] || go_build jaeger "$JAEGER_MODULE" "$JAEGER_VERSION" ./cmd/jaeger "$jaeger"
[ -x "$toxiproxy" ] || go_build toxiproxy "$TOXIPROXY_MODULE" "$TOXIPROXY_VERSION" ./cmd/server "$toxiproxy"

ln -sf "$jaeger" "$bin/jaeger"
ln -sf "$toxiproxy" "$bin/toxiproxy-server"
say "tools ready in $bin"
