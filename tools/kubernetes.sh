#!/usr/bin/env bash
# Builds the Kubernetes tools from their Go modules with this machine's Go, idempotently, into
# ${SERVOSCOPE_CACHE:-~/.cache/servoscope}/bin as <tool>-<version> with a <tool> symlink (versions
# pinned in tools/versions.env). No registry and no release download is needed.
#
# Usage: tools/kubernetes.sh [STAGE]            build what STAGE needs (default: all)
#        tools/kubernetes.sh check-tools [STAGE] exit 0 if STAGE is built, 1 if not; builds nothing
#        tools/kubernetes.sh env                 print where things are, as shell assignments
# Stages:
#   client  helm, kubeconform and its JSON schemas (generated offline from the pinned kubernetes
#           module's api/openapi-spec/swagger.json), etcd, kube-apiserver, kubectl: enough to lint,
#           template, validate and dry-run a chart against a real API server (make k8s-check);
#   node    kube-controller-manager, kube-scheduler, kubelet, kube-proxy, containerd (with its runc
#           shim and ctr), CoreDNS, the pause binary (gcc -static from the kubernetes module's
#           build/pause), and Debian's runc, CNI plugins and nft: a whole node (make k8s-up);
#   all     both.
# `env` prints, quoted for eval: KUBE_BIN (the bin directory), KUBERNETES_VERSION,
# KUBECONFORM_SCHEMA_LOCATION (kubeconform's -schema-location template), PAUSE_BINARY, CNI_BIN_DIR:
#   eval "$(tools/kubernetes.sh env)"
#   "$KUBE_BIN/kubeconform" -strict -kubernetes-version "${KUBERNETES_VERSION#v}" \
#       -schema-location "$KUBECONFORM_SCHEMA_LOCATION" manifests.yaml
# A first build takes tens of minutes on two cores (progress every 15 s); later runs return at once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"
cache=${SERVOSCOPE_CACHE:-$HOME/.cache/servoscope}
bin="$cache/bin"
src="$cache/src"
mkdir -p "$bin" "$src"

k8s=$KUBERNETES_VERSION
schemas="$cache/kubeconform-schemas"
schema_dir="$schemas/$k8s-standalone-strict"
cni_bin_dir=/usr/lib/cni

client_tools=("helm-$HELM_VERSION" "kubeconform-$KUBECONFORM_VERSION" "etcd-$ETCD_VERSION"
    "kube-apiserver-$k8s" "kubectl-$k8s")
node_tools=("kube-controller-manager-$k8s" "kube-scheduler-$k8s" "kubelet-$k8s" "kube-proxy-$k8s"
    "containerd-$CONTAINERD_VERSION" "containerd-shim-runc-v2-$CONTAINERD_VERSION"
    "ctr-$CONTAINERD_VERSION" "coredns-$COREDNS_VERSION" "pause-$k8s")

stage_built() {  # stage -> 0 when every piece of it is in the cache
    local tool
    case $1 in
        client)
            for tool in "${client_tools[@]}"; do [ -x "$bin/$tool" ] || return 1; done
            [ -f "$schema_dir/deployment-apps-v1.json" ] ;;
        node)
            for tool in "${node_tools[@]}"; do [ -x "$bin/$tool" ] || return 1; done
            command -v runc >/dev/null && command -v nft >/dev/null && [ -x "$cni_bin_dir/bridge" ] ;;
        all) stage_built client && stage_built node ;;
        *) say "unknown stage '$1' (client, node or all)"; exit 2 ;;
    esac
}

case ${1:-all} in
    check-tools) stage_built "${2:-all}"; exit ;;
    env)
        # Quoted for `eval "$(tools/kubernetes.sh env)"`; the location is kubeconform's template.
        printf "KUBE_BIN='%s'\nKUBERNETES_VERSION='%s'\n" "$bin" "$k8s"
        printf "KUBECONFORM_SCHEMA_LOCATION='%s'\n" \
            "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
        printf "PAUSE_BINARY='%s'\nCNI_BIN_DIR='%s'\n" "$bin/pause-$k8s" "$cni_bin_dir"
        exit ;;
    client | node | all) stage=${1:-all} ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
stage_built "$stage" && exit 0

command -v go >/dev/null || { say "Go is required to build the Kubernetes tools; install Go >= 1.26"; exit 1; }
# Serialise concurrent builds (make k8s-check racing make k8s-up, or two clones).
exec 9>"$cache/kubernetes.lock"
flock 9

with_progress() {  # label command... : run it, saying every 15 s that it is still going
    local label=$1 started=$SECONDS
    shift
    "$@" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 15 & wait $! || true
        kill -0 "$pid" 2>/dev/null && say "  still building $label ($((SECONDS - started))s)"
    done
    wait "$pid"
    say "built $label in $((SECONDS - started))s"
}

wrapper_module() {  # name module version -> prints the wrapper module's directory
    # A module of our own that requires the tool's module: `go install mod@version` refuses modules
    # whose go.mod has replace directives (kubernetes', etcd's), and a wrapper can pin what they
    # replace. Its tools.go imports every package built from it, so go.sum covers them all.
    local name=${1//\//_} module=$2 version=$3 line package
    local dir="$src/$name-$version"
    if [ ! -f "$dir/go.sum" ]; then
        rm -rf "$dir" && mkdir -p "$dir"
        {
            printf 'module servoscope.dev/build/%s\n\ngo 1.26.0\n\nrequire %s %s\n' "$name" "$module" "$version"
            for line in "${extra[@]}"; do printf '%s\n' "$line"; done
        } >"$dir/go.mod"
        printf '//go:build tools\n\npackage tools\n\n' >"$dir/tools.go"
        for package in "${all_packages[@]}"; do printf 'import _ "%s"\n' "$package" >>"$dir/tools.go"; done
        say "resolving $module@$version (downloads its dependencies once)"
        (cd "$dir" && go mod tidy 2>"$dir/tidy.log") || { cat "$dir/tidy.log" >&2; exit 1; }
    fi
    printf '%s\n' "$dir"
}

go_build() {  # name version ldflags tags output-name=package... : builds into $bin/<output>-<version>
    # Uses the globals module, extra (go.mod lines) and all_packages (what the wrapper imports).
    local name=$1 version=$2 ldflags=$3 tags=$4 dir out target
    shift 4
    dir=$(wrapper_module "$name" "$module" "$version")
    out=$(mktemp -d "$src/out.XXXXXX")
    say "building $name $version: ${*%%=*} (first time only: minutes, progress every 15 s)"
    # One target: named as asked. Several (kubernetes' commands): one go build, which compiles the
    # packages they share once and links in parallel; each is named after its package.
    local script='cd "$1" && if [ $# -eq 5 ]; then
        exec go build -trimpath -tags "$2" -ldflags "$3" -o "$4/${5%%=*}" "${5#*=}"; fi
        t=("${@:5}"); exec go build -trimpath -tags "$2" -ldflags "$3" -o "$4/" "${t[@]#*=}"'
    with_progress "$name $version" bash -c "$script" _ "$dir" "$tags" "$ldflags" "$out" "$@"
    for target in "$@"; do
        mv "$out/${target%%=*}" "$bin/${target%%=*}-$version"
        ln -sf "${target%%=*}-$version" "$bin/${target%%=*}"
    done
    rmdir "$out"
}

staging_replaces() {  # one replace line per k8s.io staging module the kubernetes module replaces
    local kdir=$1
    echo "replace ("
    sed -n 's#^\t\(k8s.io/[a-z-]*\) => ./staging/.*#\t\1 => \1 '"$KUBERNETES_STAGING_VERSION"'#p' "$kdir/go.mod"
    echo ")"
}

k8s_ldflags() {
    local minor=${k8s#v1.}
    minor=${minor%%.*}
    local x
    for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
            "$x" "$k8s" "$x" "$x" "$minor" "$x"
    done
    printf -- '-s -w'
}

build_kubernetes() {  # command names of k8s.io/kubernetes/cmd/... still missing from the cache
    local missing=() name
    for name in "$@"; do [ -x "$bin/$name-$k8s" ] || missing+=("$name=k8s.io/kubernetes/cmd/$name"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    local kdir
    kdir=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$kdir" ] || { say "could not download k8s.io/kubernetes@$k8s from the Go module proxy"; exit 1; }
    module=k8s.io/kubernetes
    all_packages=()
    for name in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
        all_packages+=("k8s.io/kubernetes/cmd/$name")
    done
    mapfile -t extra < <(staging_replaces "$kdir")
    go_build kubernetes "$k8s" "$(k8s_ldflags)" "" "${missing[@]}"
}

build_one() {  # name module version package [ldflags] [tags] [wrapper-imports...]
    local name=$1 version=$3 package=$4 ldflags=${5:--s -w} tags=${6:-}
    [ -x "$bin/$name-$version" ] && return 0
    module=$2
    extra=()
    all_packages=("${@:7}")
    [ ${#all_packages[@]} -gt 0 ] || all_packages=("$package")
    go_build "$module" "$version" "$ldflags" "$tags" "$name=$package"
}

kubeconform_schemas() {
    [ -f "$schema_dir/deployment-apps-v1.json" ] && return 0
    local kdir venv="$cache/venv-openapi2jsonschema"
    kdir=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    if [ ! -x "$venv/bin/openapi2jsonschema" ]; then
        say "installing openapi2jsonschema $OPENAPI2JSONSCHEMA_VERSION into $venv"
        python3 -m venv "$venv"
        # Its metadata pins PyYAML < 6, which does not build on Python 3.11: install it without its
        # declared dependencies and give it the ones it imports, at versions that work.
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            "openapi2jsonschema==$OPENAPI2JSONSCHEMA_VERSION" "click==7.1.2" "colorama==0.4.6" \
            "jsonref==0.2" "PyYAML==6.0.2"
    fi
    say "generating kubeconform schemas for $k8s from its swagger.json (first time only)"
    rm -rf "$schema_dir.tmp" && mkdir -p "$schemas"
    # It resolves references against "$PWD/<output>": run it in the schemas directory with a
    # relative output. Recursive types (a CRD's JSONSchemaProps, scheduling's Workload) cannot be
    # expanded stand-alone: it reports those and goes on, and kubeconform says "no schema" for them.
    with_progress "kubeconform schemas $k8s" bash -c \
        'cd "$0" && "${@:2}" >"$1" 2>&1 || { tail -5 "$1" >&2; exit 1; }' \
        "$schemas" openapi2jsonschema.log "$venv/bin/openapi2jsonschema" --expanded --kubernetes \
        --stand-alone --strict -o "${schema_dir##*/}.tmp" "file://$kdir/api/openapi-spec/swagger.json"
    say "  $(grep -c 'error occured' "$schemas/openapi2jsonschema.log" || true) recursive definitions left out (see $schemas/openapi2jsonschema.log)"
    rm -rf "$schema_dir" && mv "$schema_dir.tmp" "$schema_dir"
}

build_coredns() {
    # Only the plugins the cluster's Corefile uses (COREDNS_PLUGINS), in CoreDNS's own order
    # (its plugin.cfg), from a main package of our own, as CoreDNS documents for custom builds:
    # its default build compiles every plugin, cloud DNS SDKs and tracers included.
    [ -x "$bin/coredns-$COREDNS_VERSION" ] && return 0
    local dir="$src/coredns-plugins-$COREDNS_VERSION" cdir line name package directives=() imports=()
    cdir=$(go mod download -json "github.com/coredns/coredns@$COREDNS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$cdir" ] || { say "could not download github.com/coredns/coredns@$COREDNS_VERSION"; exit 1; }
    while IFS=: read -r name package; do
        [[ " $COREDNS_PLUGINS " == *" $name "* ]] || continue
        directives+=("\"$name\"")
        imports+=("_ \"github.com/coredns/coredns/plugin/$package\"")
    done < <(grep -v '^#' "$cdir/plugin.cfg")
    [ ${#directives[@]} -eq "$(wc -w <<<"$COREDNS_PLUGINS")" ] ||
        { say "COREDNS_PLUGINS names a plugin CoreDNS $COREDNS_VERSION does not have: $COREDNS_PLUGINS"; exit 1; }
    rm -rf "$dir" && mkdir -p "$dir"
    printf 'module servoscope.dev/build/coredns\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' \
        "$COREDNS_VERSION" >"$dir/go.mod"
    {
        printf '// CoreDNS with the plugins of tools/versions.env COREDNS_PLUGINS only.\npackage main\n\nimport (\n'
        printf '\t"github.com/coredns/coredns/core/dnsserver"\n\t"github.com/coredns/coredns/coremain"\n'
        for line in "${imports[@]}"; do printf '\t%s\n' "$line"; done
        printf ')\n\nfunc init() { dnsserver.Directives = []string{%s} }\n\nfunc main() { coremain.Run() }\n' \
            "$(IFS=,; echo "${directives[*]}")"
    } >"$dir/main.go"
    say "resolving github.com/coredns/coredns@$COREDNS_VERSION for the plugins: $COREDNS_PLUGINS"
    (cd "$dir" && go mod tidy 2>"$dir/tidy.log") || { cat "$dir/tidy.log" >&2; exit 1; }
    say "building coredns $COREDNS_VERSION (first time only: minutes, progress every 15 s)"
    with_progress "coredns $COREDNS_VERSION" bash -c 'cd "$0" && exec go build -trimpath \
        -ldflags "-s -w" -o "$1" .' \
        "$dir" "$bin/coredns-$COREDNS_VERSION.tmp"
    mv "$bin/coredns-$COREDNS_VERSION.tmp" "$bin/coredns-$COREDNS_VERSION"
    ln -sf "coredns-$COREDNS_VERSION" "$bin/coredns"
}

build_pause() {
    [ -x "$bin/pause-$k8s" ] && return 0
    local kdir
    kdir=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    say "building pause from k8s.io/kubernetes@$k8s/build/pause (gcc -static)"
    gcc -Os -static -Wall -Werror -DVERSION="$k8s" -o "$bin/pause-$k8s.tmp" \
        "$kdir/build/pause/linux/pause.c"
    strip "$bin/pause-$k8s.tmp"
    mv "$bin/pause-$k8s.tmp" "$bin/pause-$k8s"
    ln -sf "pause-$k8s" "$bin/pause"
}

apt_packages() {
    command -v runc >/dev/null && command -v nft >/dev/null && [ -x "$cni_bin_dir/bridge" ] && return 0
    say "installing Debian packages: $KUBE_APT_PACKAGES"
    # shellcheck disable=SC2086
    apt_install $KUBE_APT_PACKAGES
}

if [ "$stage" = client ] || [ "$stage" = all ]; then
    # Helm's default .Capabilities.KubeVersion and its deprecation lint follow these (as its Makefile).
    minor=${k8s#v1.}
    helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for x in pkg/lint/rules pkg/chartutil; do
        helm_ldflags+=" -X helm.sh/helm/v3/$x.k8sVersionMajor=1 -X helm.sh/helm/v3/$x.k8sVersionMinor=${minor%%.*}"
    done
    build_one helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$helm_ldflags"
    build_one kubeconform github.com/yannh/kubeconform "$KUBECONFORM_VERSION" \
        github.com/yannh/kubeconform/cmd/kubeconform
    kubeconform_schemas
    build_one etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "-s -w"
    build_kubernetes kube-apiserver kubectl
fi
if [ "$stage" = node ] || [ "$stage" = all ]; then
    apt_packages
    build_kubernetes kube-controller-manager kube-scheduler kubelet kube-proxy
    containerd_cmds=()
    for cmd in containerd containerd-shim-runc-v2 ctr; do
        containerd_cmds+=("github.com/containerd/containerd/v2/cmd/$cmd")
    done
    for cmd in "${containerd_cmds[@]}"; do
        build_one "${cmd##*/}" github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$cmd" \
            "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
            "no_btrfs no_devmapper no_zfs" "${containerd_cmds[@]}"
    done
    build_coredns
    build_pause
fi
stage_built "$stage" || { say "stage $stage is still incomplete after building"; exit 1; }
say "Kubernetes tools ($stage) ready in $bin"
