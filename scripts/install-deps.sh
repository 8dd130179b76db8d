#!/bin/sh
# install-deps.sh - install what kerr needs to build, test, demo and benchmark, on Debian 12.
# Run as root. Idempotent: apt is used only when a package is missing, Go only when the one
# found is older than go.mod's `go` line. Quiet unless something fails; ends with one line
# saying where go is.
#
# Go: Debian 12's golang-go (1.19) is too old for go.mod and predates GOTOOLCHAIN. When no
# go >= 1.21 is found, golang-go is installed and used to fetch go.mod's toolchain from the Go
# module proxy (golang.org/toolchain, checked against the checksum database, exactly what
# GOTOOLCHAIN=auto downloads) into /usr/local/go-VERSION, linked from /usr/local/bin.
set -eu

srcdir=$(cd "$(dirname "$0")/.." && pwd -P)
STATICCHECK_VERSION=v0.8.2

die() {
	echo "install-deps: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run me as root (I install Debian packages)"
command -v apt-get >/dev/null 2>&1 || die "this script is for Debian (no apt-get)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# quietly CMD...: runs CMD with its output in $log, shown only if it fails.
quietly() {
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		die "failed: $*"
	fi
}

# --- Debian packages ---
packages="build-essential gcc make pkg-config git libseccomp-dev squashfs-tools
squashfs-tools-ng squashfuse fuse-overlayfs busybox-static docker-registry skopeo umoci runc crun siftool
zstd uidmap ca-certificates passwd time podman containerd systemd"

need=""
for p in $packages; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case $status in ii*) ;; *) need="$need $p" ;; esac
done
if [ -n "$need" ]; then
	export DEBIAN_FRONTEND=noninteractive
	quietly apt-get update -q
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	quietly apt-get install -y -q --no-install-recommends $need
fi

# --- Go ---
go_required=$(sed -n 's/^go \([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$srcdir/go.mod")
[ -n "$go_required" ] || die "no 'go' line in $srcdir/go.mod"

# ver_ge and go_local_version are shared with ./mconfig.
. "$srcdir/mlocal/checks.sh"

# The newest go among the usual places.
go_cmd="" go_have=""
for cand in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/local/bin/go /usr/lib/go/bin/go; do
	[ -n "$cand" ] && [ -x "$cand" ] || continue
	v=$(go_local_version "$cand")
	[ -n "$v" ] || continue
	if [ -z "$go_have" ] || ! ver_ge "$go_have" "$v"; then
		go_cmd=$cand go_have=$v
	fi
done

go_note=""
if [ -n "$go_have" ] && ver_ge "$go_have" "$go_required"; then
	:
elif [ -n "$go_have" ] && ver_ge "$go_have" 1.21; then
	# It can switch toolchains itself; fetch the one go.mod wants now, not mid-build.
	quietly sh -c "cd '$srcdir' && GOTOOLCHAIN=auto '$go_cmd' version"
	go_note=" with GOTOOLCHAIN=auto (go$go_required)"
else
	if [ -z "$go_have" ]; then
		export DEBIAN_FRONTEND=noninteractive
		quietly apt-get update -q
		quietly apt-get install -y -q --no-install-recommends golang-go
		go_cmd=/usr/bin/go
	fi
	case $(dpkg --print-architecture) in
	amd64) arch=amd64 ;;
	arm64) arch=arm64 ;;
	i386) arch=386 ;;
	ppc64el) arch=ppc64le ;;
	s390x) arch=s390x ;;
	*) die "no Go toolchain for $(dpkg --print-architecture); install go $go_required by hand" ;;
	esac
	dest=/usr/local/go-$go_required
	if [ ! -x "$dest/bin/go" ]; then
		tmp=$(mktemp -d)
		mod=golang.org/toolchain@v0.0.1-go$go_required.linux-$arch
		quietly env GOPATH="$tmp/gopath" GOMODCACHE="$tmp/modcache" GOFLAGS=-modcacherw \
			GO111MODULE=on GOTOOLCHAIN=local sh -c "cd '$tmp' && '$go_cmd' mod download -json '$mod'"
		dir=$tmp/modcache/golang.org/toolchain@v0.0.1-go$go_required.linux-$arch
		[ -x "$dir/bin" ] || die "the toolchain module has no bin/ ($dir)"
		rm -rf "$dest.tmp"
		cp -R "$dir" "$dest.tmp"
		# Module zips carry no modes: make the commands executable again, as go itself does.
		find "$dest.tmp/bin" "$dest.tmp/pkg/tool" -type f -exec chmod 0755 {} +
		mv "$dest.tmp" "$dest"
		rm -rf "$tmp"
	fi
	ln -sf "$dest/bin/go" /usr/local/bin/go
	ln -sf "$dest/bin/gofmt" /usr/local/bin/gofmt
	go_cmd=/usr/local/bin/go
	go_have=$(go_local_version "$go_cmd")
	ver_ge "$go_have" "$go_required" || die "installed go$go_have, still older than go$go_required"
	go_note=" (installed; put /usr/local/bin first in PATH)"
fi

# --- staticcheck, for `make lint` ---
sc=$(command -v staticcheck 2>/dev/null || true)
gopath_bin="$(cd / && "$go_cmd" env GOPATH | cut -d: -f1)/bin"
[ -n "$sc" ] || [ ! -x "$gopath_bin/staticcheck" ] || sc=$gopath_bin/staticcheck
if [ -z "$sc" ]; then
	quietly sh -c "cd '$srcdir' && GOBIN=/usr/local/bin GOTOOLCHAIN=auto '$go_cmd' install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	sc=/usr/local/bin/staticcheck
fi

echo "install-deps: ok; go: $go_cmd (go$go_have)$go_note; staticcheck: $sc"
