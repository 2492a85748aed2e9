#!/usr/bin/env bash
# Builds, from their Go modules, the release files an operator downloads on
# the connected side for an airgapped site (Kubernetes' per-binary releases,
# etcd's tarball, the CNI plugins, flannel, CoreDNS), laid out and checksummed
# as their projects publish them, so that `bootsrv assets import` can be
# tested on the real thing where the internet cannot be reached.
#
# Usage: build.sh [OUT]   (default /var/cache/bootsrv-test/releases)
# Each component is built once and cached under OUT, keyed by its version and
# the recipe number below (raise it when a recipe changes what it makes); a
# second run only prints what is there.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CNI_VERSION=${CNI_VERSION:-v1.10.0}
FLANNEL_VERSION=${FLANNEL_VERSION:-v0.28.10}
FLANNEL_CNI_VERSION=${FLANNEL_CNI_VERSION:-v0.9.1}   # containernetworking/plugins' meta/flannel: its last release there (flannel-io/cni-plugin is not on the module proxy)
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
ARCH=${ARCH:-amd64}   # one arch per cache dir: the non-Kubernetes dirs hold one arch's files

out=${1:-/var/cache/bootsrv-test/releases}
here=$(cd "$(dirname "$0")" && pwd)
RECIPE=1
export CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH GOFLAGS=-trimpath
mkdir -p "$out"
log() { printf '[releases %4ss] %s\n' "$SECONDS" "$*" >&2; }

# stamp NAME VERSION DIR: true when NAME at VERSION for ARCH was built by
# this recipe and its DIR holds files (a stamp is written last, so a build
# cut short is never taken as done).
stamp() { [ -f "$out/.stamp-$1-$2-$ARCH-r$RECIPE" ] && [ -n "$(ls -A "$3" 2>/dev/null)" ]; }
done_stamp() { rm -f "$out"/.stamp-"$1"-*-"$ARCH"-r*; touch "$out/.stamp-$1-$2-$ARCH-r$RECIPE"; }

# Work dirs go on every exit, set -e's included (a RETURN trap would not
# run then, and the Kubernetes one holds half a gigabyte).
work=()
trap 'rm -rf "${work[@]}"' EXIT
# workdir VAR: a new work dir in VAR (set here, not in a $(subshell), so
# that the EXIT trap knows it).
workdir() { local -n _dir=$1; _dir=$(mktemp -d); work+=("$_dir"); }

# gomod DIR MODULE@VERSION [replace lines...]: a throwaway module in DIR.
gomod() {
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module bootsrv.local/releasebuild\n\ngo 1.26\n' >"$dir/go.mod"
}

sums() { # sums FILE: upstream-style FILE.sha256 and FILE.sha512 (hash only, as dl.k8s.io has them)
  sha256sum "$1" | cut -d' ' -f1 >"$1.sha256"
  sha512sum "$1" | cut -d' ' -f1 >"$1.sha512"
}

build_kubernetes() {
  local v=$K8S_VERSION dest="$out/kubernetes/release/$K8S_VERSION/bin/linux/$ARCH"
  stamp kubernetes "$v" "$dest" && { log "kubernetes $v: cached in $dest"; return; }
  log "kubernetes $v: building kubelet kube-proxy kube-apiserver kube-controller-manager kube-scheduler kubectl (about 10 minutes on 2 cores)"
  local w; workdir w
  gomod "$w"
  ( cd "$w"
    go mod edit -require "k8s.io/kubernetes@$v"
    # k8s.io/kubernetes replaces its staging modules with local paths; name
    # their published versions instead (v1.X.Y -> v0.X.Y). The proxy does not
    # serve the two sample modules, which none of these commands needs.
    local minor=${v#v1.}
    gomodfile=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomodfile" | grep -v '^k8s.io/sample-' |
      while read -r m; do go mod edit -replace "$m=$m@v0.$minor"; done
    cmds=(kubelet kube-proxy kube-apiserver kube-controller-manager kube-scheduler kubectl)
    go get $(printf "k8s.io/kubernetes/cmd/%s@$v " "${cmds[@]}") >/dev/null 2>&1 || go get $(printf "k8s.io/kubernetes/cmd/%s@$v " "${cmds[@]}")
    mkdir -p bin
    ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$v"
    go build -ldflags "$ld" -o bin/ $(printf "k8s.io/kubernetes/cmd/%s " "${cmds[@]}")
  )
  rm -rf "$dest"; mkdir -p "$dest"
  for b in "$w"/bin/*; do install -m 0755 "$b" "$dest/"; sums "$dest/$(basename "$b")"; done
  done_stamp kubernetes "$v"
  log "kubernetes $v: done in $dest"
}

build_etcd() {
  local v=$ETCD_VERSION dest="$out/etcd/$ETCD_VERSION"
  stamp etcd "$v" "$dest" && { log "etcd $v: cached in $dest"; return; }
  log "etcd $v: building etcd etcdctl etcdutl"
  local w; workdir w
  gomod "$w"
  ( cd "$w"
    go get "go.etcd.io/etcd/server/v3/etcdmain@$v" "go.etcd.io/etcd/etcdctl/v3@$v" "go.etcd.io/etcd/etcdutl/v3@$v" >/dev/null
    mkdir -p cmd/etcd bin
    # The etcd command is the server module's etcdmain, as etcd's own main.go.
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >cmd/etcd/main.go
    go build -ldflags "-s -w" -o bin/etcd ./cmd/etcd
    go build -ldflags "-s -w" -o bin/etcdctl go.etcd.io/etcd/etcdctl/v3
    go build -ldflags "-s -w" -o bin/etcdutl go.etcd.io/etcd/etcdutl/v3
  )
  local name="etcd-$v-linux-$ARCH"
  rm -rf "$dest"; mkdir -p "$dest" "$w/$name"
  cp "$w"/bin/* "$w/$name/"
  tar -C "$w" --owner=0 --group=0 -czf "$dest/$name.tar.gz" "$name"
  (cd "$dest" && sha256sum "$name.tar.gz" >SHA256SUMS)
  done_stamp etcd "$v"
  log "etcd $v: done in $dest"
}

build_cni() {
  local v=$CNI_VERSION dest="$out/cni-plugins/$CNI_VERSION"
  stamp cni "$v" "$dest" && { log "cni plugins $v: cached in $dest"; return; }
  log "cni plugins $v: building bridge host-local loopback portmap"
  local w; workdir w
  gomod "$w"
  ( cd "$w"
    plugins=(main/bridge ipam/host-local main/loopback meta/portmap meta/bandwidth meta/firewall)
    go get $(printf "github.com/containernetworking/plugins/plugins/%s@$v " "${plugins[@]}") >/dev/null
    mkdir -p pkg
    for p in "${plugins[@]}"; do
      go build -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" -o pkg/ "github.com/containernetworking/plugins/plugins/$p"
    done
  )
  local name="cni-plugins-linux-$ARCH-$v.tgz"
  rm -rf "$dest"; mkdir -p "$dest"
  tar -C "$w/pkg" --owner=0 --group=0 -czf "$dest/$name" .
  (cd "$dest" && sha256sum "$name" >"$name.sha256" && sha512sum "$name" >"$name.sha512")
  done_stamp cni "$v"
  log "cni plugins $v: done in $dest"
}

build_flannel() {
  local v=$FLANNEL_VERSION dest="$out/flannel/$FLANNEL_VERSION"
  stamp flannel "$v-$FLANNEL_CNI_VERSION" "$dest" && { log "flannel $v: cached in $dest"; return; }
  log "flannel $v: building flanneld and the flannel CNI plugin"
  local w; workdir w
  gomod "$w"
  ( cd "$w"
    # flanneld's main links every backend; the Tencent Cloud one needs an SDK
    # module the module proxy does not serve. A stub of the few names it uses
    # stands in (that backend then reports that it is not built in).
    stub=tencentvpc-stub/v20170312
    mkdir -p "$stub"
    printf 'module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc\n\ngo 1.21\n' >tencentvpc-stub/go.mod
    cat >"$stub/stub.go" <<'GO'
// Package v20170312 stands in for Tencent Cloud's VPC SDK, which the module
// proxy does not serve: flanneld built with it has no tencent-vpc backend.
package v20170312

import "errors"

var errStub = errors.New("tencent-vpc backend not built into this flanneld")

type Filter struct {
	Name   *string
	Values []*string
}

type Route struct {
	DestinationCidrBlock, GatewayType, GatewayId, RouteType *string
	RouteId                                                 *uint64
	Enabled                                                 *bool
}

type RouteTable struct {
	RouteTableId *string
	RouteSet     []*Route
}

type DescribeRouteTablesRequest struct{ Filters []*Filter }
type DescribeRouteTablesResponse struct {
	Response *struct{ RouteTableSet []*RouteTable }
}
type DeleteRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}
type CreateRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}
type Client struct{}

func NewClientWithSecretId(id, key, region string) (*Client, error) { return nil, errStub }
func NewDescribeRouteTablesRequest() *DescribeRouteTablesRequest  { return &DescribeRouteTablesRequest{} }
func NewDeleteRoutesRequest() *DeleteRoutesRequest                  { return &DeleteRoutesRequest{} }
func NewCreateRoutesRequest() *CreateRoutesRequest                  { return &CreateRoutesRequest{} }
func (c *Client) DescribeRouteTables(*DescribeRouteTablesRequest) (*DescribeRouteTablesResponse, error) {
	return nil, errStub
}
func (c *Client) DeleteRoutes(*DeleteRoutesRequest) (any, error) { return nil, errStub }
func (c *Client) CreateRoutes(*CreateRoutesRequest) (any, error) { return nil, errStub }
GO
    go mod edit -replace github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc=./tencentvpc-stub
    go get "github.com/flannel-io/flannel@$v" >/dev/null
    # Its udp backend is cgo; upstream links flanneld statically with cgo on.
    CGO_ENABLED=1 go build -tags netgo,osusergo -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$v -linkmode external -extldflags -static" -o flanneld-$ARCH github.com/flannel-io/flannel
  )
  local c; workdir c
  gomod "$c"
  ( cd "$c"
    go get "github.com/containernetworking/plugins/plugins/meta/flannel@$FLANNEL_CNI_VERSION" >/dev/null
    mkdir -p pkg
    # Named as in flannel-io/cni-plugin's release archives.
    go build -ldflags "-s -w" -o "pkg/flannel-$ARCH" github.com/containernetworking/plugins/plugins/meta/flannel
  )
  rm -rf "$dest"; mkdir -p "$dest"
  install -m 0755 "$w/flanneld-$ARCH" "$dest/"
  local cniname="cni-plugin-flannel-linux-$ARCH-$FLANNEL_CNI_VERSION.tgz"
  tar -C "$c/pkg" --owner=0 --group=0 -czf "$dest/$cniname" .
  (cd "$dest" && sha256sum "flanneld-$ARCH" "$cniname" >sha256sum.txt)
  done_stamp flannel "$v-$FLANNEL_CNI_VERSION"
  log "flannel $v: done in $dest"
}

build_coredns() {
  local v=$COREDNS_VERSION dest="$out/coredns/$COREDNS_VERSION"
  stamp coredns "$v" "$dest" && { log "coredns $v: cached in $dest"; return; }
  log "coredns $v: building"
  local w; workdir w
  gomod "$w"
  ( cd "$w"
    go get "github.com/coredns/coredns@$v" >/dev/null
    go build -ldflags "-s -w" -o coredns github.com/coredns/coredns
  )
  local name="coredns_${v#v}_linux_$ARCH.tgz"
  rm -rf "$dest"; mkdir -p "$dest"
  tar -C "$w" --owner=0 --group=0 -czf "$dest/$name" coredns
  (cd "$dest" && sha256sum "$name" >"$name.sha256")
  done_stamp coredns "$v"
  log "coredns $v: done in $dest"
}

what=${COMPONENTS:-etcd cni flannel coredns kubernetes}
for c in $what; do "build_$c"; done
log "all in $out"
