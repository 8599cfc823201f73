# Sourced by the tools/ installers: their progress lines and one way to install Debian packages.
# shellcheck shell=bash

say() { printf '==> %s\n' "$*" >&2; }

# apt_install PACKAGE...: install with apt-get (sudo when not root), waiting for another apt's
# lock, without letting the packages start their own services (the project runs its own with
# its own config, and nftables' service would load /etc/nftables.conf on the host).
apt_install() {
    local sudo_cmd="" policy=/usr/sbin/policy-rc.d created_policy=0
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
        $sudo_cmd chmod +x "$policy"
        created_policy=1
    fi
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends "$@" >/dev/null
    [ "$created_policy" -eq 0 ] || $sudo_cmd rm -f "$policy"
}
