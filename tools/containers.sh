#!/usr/bin/env bash
# The container tool chain, idempotently, without touching the host's own container config:
#   - Debian's podman, buildah, runc, netavark, aardvark-dns, debootstrap (apt);
#   - a project containers.conf in the cache (point CONTAINERS_CONF at it): nofile and nproc
#     at the hard limits (podman's defaults are above them here), runc (crun refuses hybrid
#     cgroups), and network definitions kept in the cache, not in /etc/containers;
#   - the Debian bookworm base image every servoscope image builds FROM, made by debootstrap
#     (no registry is needed): localhost/servoscope/debian:bookworm.
# Usage: tools/containers.sh [--check | --conf]
#   --check  exit 1 if anything is missing, install nothing
#   --conf   print the path of the project containers.conf (and write it if missing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"
cache=${SERVOSCOPE_CACHE:-$HOME/.cache/servoscope}
dir="$cache/containers"
conf="$dir/containers.conf"
base_tar="$dir/debian-$DEBIAN_SUITE-minbase.tar"
mode=${1:-}

write_conf() {
    mkdir -p "$dir/networks"
    # podman's defaults ask for more open files and processes than this machine kind allows
    # (no CAP_SYS_RESOURCE): the open-file hard limit, and 32768 processes (runc was refused
    # 65536 here, though below the shell's hard limit).
    local nofile ulimits
    nofile=$(ulimit -Hn)
    ulimits="\"nofile=$nofile:$nofile\", \"nproc=32768:32768\""
    cat >"$conf.tmp" <<EOF
# Written by tools/containers.sh; used through CONTAINERS_CONF by make images and the tests.
[containers]
default_ulimits = [$ulimits]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
network_config_dir = "$dir/networks"
EOF
    mv "$conf.tmp" "$conf"
}

missing_apt() {
    local missing=()
    for cmd in podman buildah runc debootstrap /usr/lib/podman/netavark /usr/lib/podman/aardvark-dns; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    echo "${missing[@]:-}"
}

base_present() {
    CONTAINERS_CONF=$conf podman image exists "$BASE_IMAGE" 2>/dev/null
}

case "$mode" in
    --conf)
        write_conf
        echo "$conf"
        exit 0
        ;;
    --check)
        [ -z "$(missing_apt)" ] && [ -f "$conf" ] && base_present && exit 0
        exit 1
        ;;
esac

mkdir -p "$dir"
exec 9>"$dir/containers.lock"
flock 9

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ -n "$(missing_apt)" ]; then
    say "installing Debian packages: $CONTAINER_APT_PACKAGES (missing: $(missing_apt))"
    # shellcheck disable=SC2086
    apt_install $CONTAINER_APT_PACKAGES
    say "container tools installed"
fi
write_conf
export CONTAINERS_CONF=$conf

if ! base_present; then
    if [ ! -s "$base_tar" ]; then
        # The mirror apt already uses on this host: the only Debian archive reachable here.
        mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources \
            2>/dev/null | head -1)
        mirror=${mirror:-http://deb.debian.org/debian}
        root=$(mktemp -d "$dir/rootfs.XXXXXX")
        trap '$sudo_cmd rm -rf "$root"' EXIT
        say "debootstrap $DEBIAN_SUITE (minbase) from $mirror (first time only: about a minute)"
        started=$SECONDS
        $sudo_cmd debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            sleep 15
            kill -0 "$pid" 2>/dev/null && say "  still bootstrapping ($((SECONDS - started))s)"
        done
        wait "$pid" || { say "debootstrap failed; see $dir/debootstrap.log"; exit 1; }
        $sudo_cmd rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        $sudo_cmd tar -C "$root" -cf "$base_tar.tmp" .
        mv "$base_tar.tmp" "$base_tar"
        say "base root file system in $base_tar ($((SECONDS - started))s)"
    fi
    $sudo_cmd env CONTAINERS_CONF="$conf" podman import --quiet \
        --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        "$base_tar" "$BASE_IMAGE" >/dev/null
    say "imported $BASE_IMAGE"
fi
say "container tools ready (CONTAINERS_CONF=$conf)"
