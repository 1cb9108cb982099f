#!/usr/bin/env bash
# Builds the pinned tools the end-to-end test runs (Pulumi CLI, the Kubernetes provider plugin,
# etcd, kube-apiserver/-controller-manager/-scheduler, kwok, the KEDA operator, Karpenter's kwok provider, kubelogin) from source through the Go module
# proxy, into a cache folder outside the repository. A tool is rebuilt only when its pin changes.
#
#   e2e/tools.sh [TOOL...]      build all tools, or only the named ones:
#                               pulumi kubernetes-provider etcd kubernetes kwok keda-operator karpenter kubelogin
#
#   E2E_TOOLS_DIR   cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/aks-edw-e2e);
#                   binaries go to $E2E_TOOLS_DIR/bin, one stamp per tool to stamps/, build logs
#                   to logs/, throwaway modules to src/.
#
# Each tool builds in a throwaway module under $E2E_TOOLS_DIR/src, never in this repository: its
# go.mod and go.sum are not touched. Cold, on 2 cores, expect ~25 minutes, 13-16 GB of Go build
# cache and ~4-5 GB of memory at peak (the Kubernetes provider is the big one).
set -euo pipefail
shopt -s inherit_errexit

# ---- pins ------------------------------------------------------------------------------------
PULUMI_VERSION=v3.274.1
# The provider module is served here only at this pseudo-version, a commit of 2026-01-15, a day
# before the sdk/v4.25.0 tag. Its go.mod replaces sdk/v4 with ../sdk; we use the served sdk/v4
# its go.mod requires. The version the plugin reports (and stamps into its schema) follows
# pulumictl's format for an untagged commit: <next>-alpha.<commit unix time>+<short hash>.
K8S_PROVIDER_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
K8S_PROVIDER_SDK_VERSION=v4.24.0
K8S_PROVIDER_VERSION=4.25.0-alpha.1768448096+f47bc2d6
ETCD_VERSION=v3.6.16
KUBERNETES_VERSION=v1.34.4
KUBERNETES_STAGING_VERSION=v0.34.4 # the k8s.io/* staging modules released with KUBERNETES_VERSION
KWOK_VERSION=v0.8.0
# The KEDA operator AKS's add-on runs (AKS 1.33-1.35: 2.17.x; see docs/cloud-notes.md), and its
# metrics adapter from the same module. Its go.mod pins k8s.io/* to v0.31.7 and a few others with
# replace directives, copied into the throwaway module.
KEDA_VERSION=v2.17.3
# The kubelogin the workflows install (go install github.com/Azure/kubelogin@...; a test keeps the
# two equal): the e2e's program reaches the API server through it, as CI reaches AKS.
KUBELOGIN_VERSION=v0.2.19
# Karpenter core at the CRDs' pin (e2e/pins.go karpenterVersion; AKS's node autoprovisioning builds
# on it): its kwok cloud provider (sigs.k8s.io/karpenter/kwok) runs the real provisioning, scheduling,
# limits, budgets and consolidation from a NodePool and creates kwok nodes. Its go.mod has no replace.
KARPENTER_VERSION=v1.7.1

ALL_TOOLS=(etcd kubelogin kwok karpenter kubernetes keda-operator pulumi kubernetes-provider) # cheapest first: failures show early

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# ---- per-tool facts --------------------------------------------------------------------------
# pin: everything that decides what gets built; a stamp holding the same text means "built".
pin_of() {
	case $1 in
	pulumi) echo "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi $PULUMI_VERSION" ;;
	kubernetes-provider) echo "github.com/pulumi/pulumi-kubernetes/provider/v4 $K8S_PROVIDER_MODULE_VERSION sdk/v4 $K8S_PROVIDER_SDK_VERSION version $K8S_PROVIDER_VERSION" ;;
	etcd) echo "go.etcd.io/etcd/server/v3 $ETCD_VERSION" ;;
	kubernetes) echo "k8s.io/kubernetes $KUBERNETES_VERSION staging $KUBERNETES_STAGING_VERSION" ;;
	kwok) echo "sigs.k8s.io/kwok/cmd/kwok $KWOK_VERSION" ;;
	keda-operator) echo "github.com/kedacore/keda/v2/cmd/operator cmd/adapter $KEDA_VERSION" ;;
	kubelogin) echo "github.com/Azure/kubelogin $KUBELOGIN_VERSION" ;;
	karpenter) echo "sigs.k8s.io/karpenter/kwok $KARPENTER_VERSION operator.Version stamped" ;;
	*) return 1 ;;
	esac
}

bins_of() {
	case $1 in
	pulumi) echo pulumi ;;
	kubernetes-provider) echo pulumi-resource-kubernetes ;;
	etcd) echo etcd ;;
	kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler ;;
	kwok) echo kwok ;;
	keda-operator) echo keda-operator keda-adapter ;;
	kubelogin) echo kubelogin ;;
	karpenter) echo karpenter-kwok ;;
	*) return 1 ;;
	esac
}

short_version_of() {
	case $1 in
	pulumi) echo "$PULUMI_VERSION" ;;
	kubernetes-provider) echo "$K8S_PROVIDER_VERSION" ;;
	etcd) echo "$ETCD_VERSION" ;;
	kubernetes) echo "$KUBERNETES_VERSION" ;;
	kwok) echo "$KWOK_VERSION" ;;
	keda-operator) echo "$KEDA_VERSION" ;;
	kubelogin) echo "$KUBELOGIN_VERSION" ;;
	karpenter) echo "$KARPENTER_VERSION" ;;
	esac
}

# ---- helpers ---------------------------------------------------------------------------------
# measured runs `go` (or anything) and appends its peak RSS in KiB to $TIME_FILE when GNU time is
# available; the peak is that of the largest single process (compiler or linker), not their sum.
measured() {
	if [[ -n ${GNU_TIME:-} ]]; then
		"$GNU_TIME" -f '%M' -a -o "$TIME_FILE" "$@"
	else
		"$@"
	fi
}

# mod_field FIELD MODULE@VERSION: downloads the module (through the proxy) and prints one field of
# `go mod download -json` (Dir, GoMod, ...).
mod_field() {
	local json
	json=$(go mod download -json "$2")
	sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\{0,1\}\$/\\1/p" <<<"$json"
}

# new_module DIR NAME: an empty throwaway module.
new_module() {
	rm -rf "$1"
	mkdir -p "$1"
	(cd "$1" && go mod init "aks-edw-e2e-tools/$2" >/dev/null 2>&1)
}

# copy_replaces GOMOD [LOCAL_VERSION]: copies the replace directives of a dependency's go.mod into
# the current module. A replace pointing at a local directory (a sibling module in the upstream
# repository) becomes a replace with the served module at LOCAL_VERSION, or is dropped without it.
copy_replaces() {
	local gomod=$1 local_version=${2:-} line old new
	[[ -f $gomod ]] || { echo "copy_replaces: no go.mod at \"$gomod\"" >&2; return 1; }
	while IFS= read -r line; do
		old=$(awk '{print $1 ($2 != "" ? "@" $2 : "")}' <<<"${line%%=>*}")
		new=$(awk '{print $1 ($2 != "" ? "@" $2 : "")}' <<<"${line#*=>}")
		case $new in
		./* | ../* | /*)
			[[ -n $local_version ]] || continue
			new="${old%@*}@$local_version"
			;;
		esac
		go mod edit "-replace=$old=$new"
	done < <(awk '
		{ sub(/\/\/.*/, "") }
		/^replace[ \t]*\(/ { block = 1; next }
		block && /^\)/ { block = 0; next }
		/^replace[ \t]/ { sub(/^replace[ \t]+/, ""); if ($0 ~ /=>/) print; next }
		block && /=>/ { print }
	' "$gomod")
}

# ---- recipes: each builds into $1 (an empty folder) ----------------------------------------------
build_pulumi() {
	local out=$1 dir=$SRC/pulumi gomod
	new_module "$dir" pulumi
	cd "$dir"
	go mod edit \
		"-require=github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION" \
		"-require=github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" \
		-tool=github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
	# pkg/v3's go.mod: sdk/v3 => ../sdk (covered by requiring sdk/v3 at the same version) and one
	# replace of a third-party module, which a dependent module has to repeat to build the same thing.
	gomod=$(mod_field GoMod "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION")
	copy_replaces "$gomod"
	measured go mod tidy
	measured go build -trimpath -o "$out/" \
		-ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
		github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_kubernetes_provider() {
	local out=$1 dir=$SRC/kubernetes-provider upstream
	# No throwaway module here: the provider module itself is built, from a writable copy.
	upstream=$(mod_field Dir "github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION")
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -R "$upstream/." "$dir/"
	chmod -R u+w "$dir"
	cd "$dir"
	go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4
	measured go get "github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_PROVIDER_SDK_VERSION"
	# main.go embeds schema-embed.json and terraform-mapping-embed.json, which the module zip lacks.
	# The provider's own generator (run by `go generate` upstream) makes them from schema.json (with
	# the version set) and terraform-mapping.json, compacted, next to main.go.
	(cd cmd/pulumi-resource-kubernetes && VERSION=$K8S_PROVIDER_VERSION measured go run ./generate.go)
	measured go build -trimpath -o "$out/" \
		-ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" \
		./cmd/pulumi-resource-kubernetes
}

build_etcd() {
	local out=$1 dir=$SRC/etcd
	# server/v3's go.mod replaces its sibling modules with ../api etc., so `go install @version`
	# refuses it; as a dependency of a throwaway module it resolves them at their served versions.
	new_module "$dir" etcd
	cd "$dir"
	go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
	measured go mod tidy
	measured go build -trimpath -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
}

build_kubernetes() {
	local out=$1 dir=$SRC/kubernetes v=$KUBERNETES_VERSION gomod major minor pkg ldflags="-s -w"
	new_module "$dir" kubernetes
	cd "$dir"
	go mod edit "-require=k8s.io/kubernetes@$v" -godebug=default=go1.24 \
		-tool=k8s.io/kubernetes/cmd/kube-apiserver \
		-tool=k8s.io/kubernetes/cmd/kube-controller-manager \
		-tool=k8s.io/kubernetes/cmd/kube-scheduler
	# k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and replaces them
	# with ./staging/src/...: point each at its release instead.
	gomod=$(mod_field GoMod "k8s.io/kubernetes@$v")
	copy_replaces "$gomod" "$KUBERNETES_STAGING_VERSION"
	measured go mod tidy
	# What kubernetes' hack/lib/version.sh stamps (gitVersion is the one that matters).
	major=${v#v} minor=${v#v*.}
	major=${major%%.*} minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	measured go build -trimpath -o "$out/" -ldflags "$ldflags" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler
}

build_kwok() {
	local out=$1
	# kwok's go.mod has no replace: `go install @version` builds it exactly as released. Its stage
	# files (kustomize/stage/) are in the module cache: go mod download -json sigs.k8s.io/kwok@$KWOK_VERSION
	cd "$SRC"
	GOBIN=$out measured go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_keda_operator() {
	local out=$1 dir=$SRC/keda-operator gomod v=$KEDA_VERSION
	# keda/v2's go.mod has a replace block (k8s.io/* => v0.31.7, controller-runtime's friends), so
	# `go install @version` refuses it; as a dependency of a throwaway module that repeats the
	# replaces it builds the same thing. Version stamped as KEDA's Makefile does.
	new_module "$dir" keda-operator
	cd "$dir"
	go mod edit "-require=github.com/kedacore/keda/v2@$v" -tool=github.com/kedacore/keda/v2/cmd/operator \
		-tool=github.com/kedacore/keda/v2/cmd/adapter
	gomod=$(mod_field GoMod "github.com/kedacore/keda/v2@$v")
	copy_replaces "$gomod"
	measured go mod tidy
	# The operator and its metrics adapter (what the HPA reads the queue depth from), in one build,
	# as KEDA's Makefile builds both; named as the e2e runs them.
	measured go build -trimpath -o "$out/" \
		-ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${v#v} -X github.com/kedacore/keda/v2/version.GitCommit=$v" \
		github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter
	mv "$out/operator" "$out/keda-operator"
	mv "$out/adapter" "$out/keda-adapter"
}

build_kubelogin() {
	local out=$1
	# No replace in kubelogin's go.mod: `go install @version`, as the workflows install it.
	cd "$SRC"
	GOBIN=$out measured go install -trimpath -ldflags "-s -w" "github.com/Azure/kubelogin@$KUBELOGIN_VERSION"
}

build_karpenter() {
	local out=$1
	# No replace in karpenter's go.mod: `go install @version` builds it as released. The binary is
	# named kwok, like kwok's own, so it moves to karpenter-kwok.
	cd "$SRC"
	GOBIN=$out measured go install -trimpath \
		-ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=$KARPENTER_VERSION" "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION"
	mv "$out/kwok" "$out/karpenter-kwok"
}

# ---- driver ------------------------------------------------------------------------------------
main() {
	local tools=() t
	for t in "$@"; do
		case $t in
		-h | --help) usage; exit 0 ;;
		*) pin_of "$t" >/dev/null || { echo "tools.sh: unknown tool \"$t\" (known: ${ALL_TOOLS[*]})" >&2; exit 2; } ;;
		esac
		tools+=("$t")
	done
	[[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")

	command -v go >/dev/null || { echo "tools.sh: go is not on PATH" >&2; exit 1; }
	DIR=${E2E_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aks-edw-e2e}
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	BIN=$DIR/bin SRC=$DIR/src STAMPS=$DIR/stamps LOGS=$DIR/logs
	mkdir -p "$BIN" "$SRC" "$STAMPS" "$LOGS"

	# One run at a time per cache folder.
	if command -v flock >/dev/null; then
		exec 9>"$DIR/.lock"
		flock -n 9 || { echo "tools.sh: waiting for another run on $DIR" >&2; flock 9; }
	fi

	# Throwaway modules only: no go.work, and the Pulumi modules some versions of which the checksum
	# database lacks (go.sum still records and checks every hash). The binaries are static, as their
	# projects release them.
	export GOWORK=off
	export GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi
	export CGO_ENABLED=${CGO_ENABLED:-0}
	GNU_TIME=
	if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%M' true >/dev/null 2>&1; then
		GNU_TIME=/usr/bin/time
	fi

	for t in "${tools[@]}"; do
		build_tool "$t"
	done
	echo "e2e tools: $BIN"
}

build_tool() {
	local tool=$1 pin stamp bin missing=false start secs out log peak rc
	pin=$(pin_of "$tool")
	stamp=$STAMPS/$tool
	for bin in $(bins_of "$tool"); do
		[[ -x $BIN/$bin ]] || missing=true
	done
	printf '%s %s: ' "$tool" "$(short_version_of "$tool")"
	if ! $missing && [[ -f $stamp ]] && [[ $(<"$stamp") == "$pin" ]]; then
		echo "already built"
		return 0
	fi

	rm -f "$stamp"
	out=$DIR/.out/$tool
	rm -rf "$out"
	mkdir -p "$out"
	log=$LOGS/$tool.log
	TIME_FILE=$LOGS/$tool.rss
	: >"$TIME_FILE"
	start=$SECONDS
	# Not `( ... ) || rc=$?`: errexit would be off inside the subshell.
	set +e
	(
		set -ex
		"build_${tool//-/_}" "$out"
	) >"$log" 2>&1
	rc=$?
	set -e
	secs=$((SECONDS - start))
	if [[ $rc -ne 0 ]]; then
		echo "FAILED after $secs s (exit $rc)"
		echo "tools.sh: building $tool failed; last lines of $log:" >&2
		tail -n 25 "$log" >&2
		exit 1
	fi
	for bin in $(bins_of "$tool"); do
		if [[ ! -x $out/$bin ]]; then
			echo "FAILED: no $bin produced"
			echo "tools.sh: building $tool produced no $bin; see $log" >&2
			exit 1
		fi
	done
	for bin in $(bins_of "$tool"); do
		mv -f "$out/$bin" "$BIN/$bin"
	done
	rmdir "$out" 2>/dev/null || true
	printf '%s\n' "$pin" >"$stamp.tmp"
	mv -f "$stamp.tmp" "$stamp"

	peak=
	if [[ -s $TIME_FILE ]]; then
		peak=$(sort -n "$TIME_FILE" | tail -n 1)
		peak=$(awk -v k="$peak" 'BEGIN { printf ", peak RSS %.1f GB", k / 1048576 }')
	fi
	echo "built in $secs s$peak"
}

main "$@"
