# mlocal/checks.sh - checks that ./mconfig runs; POSIX sh, sourced by mconfig.
#
# Each check either sets the variable it is about or appends "what (Debian package)" to
# $missing, so that mconfig can name everything that is missing on one line.

missing=""

add_missing() {
	if [ -z "$missing" ]; then missing=$1; else missing="$missing, $1"; fi
}

# ver_ge A B: succeeds when dotted version A >= B (missing components count as 0).
ver_ge() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		na = split(a, x, "."); nb = split(b, y, ".")
		n = na > nb ? na : nb
		for (i = 1; i <= n; i++) {
			if (x[i] + 0 > y[i] + 0) exit 0
			if (x[i] + 0 < y[i] + 0) exit 1
		}
		exit 0
	}'
}

# go_local_version GO: the version of GO's own toolchain ("1.26.8"), never switching
# toolchains (outside any module, GOTOOLCHAIN=local).
go_local_version() {
	(cd / && GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null) | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p'
}

# check_go: sets GO (absolute path), GOROOT_DIR, GOVERSION_FOUND and GOTOOLCHAIN_SETTING
# ("" or "auto"). A go older than go.mod's `go` line is used only when it is 1.21 or later
# and GOTOOLCHAIN=auto can fetch the right toolchain from the Go module proxy.
check_go() {
	go_required=$(sed -n 's/^go \([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$srcdir/go.mod")
	[ -n "$go_required" ] || { echo "mconfig: no 'go' line in $srcdir/go.mod" >&2; exit 1; }
	GO="" GOTOOLCHAIN_SETTING="" old_go="" old_version=""
	for cand in ${GO_CMD:-} "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go \
		/usr/local/bin/go /usr/lib/go/bin/go; do
		[ -n "$cand" ] && [ -x "$cand" ] || continue
		v=$(go_local_version "$cand")
		[ -n "$v" ] || continue
		if ver_ge "$v" "$go_required"; then
			GO=$cand
			break
		fi
		if [ -z "$old_go" ] && ver_ge "$v" 1.21; then
			old_go=$cand old_version=$v
		fi
		[ -n "$old_version" ] || old_version=$v
	done
	if [ -z "$GO" ] && [ -n "$old_go" ]; then
		v=$(cd "$srcdir" && GOTOOLCHAIN=auto "$old_go" env GOVERSION 2>/dev/null |
			sed -n 's/^go\([0-9][0-9.]*\).*/\1/p')
		if [ -n "$v" ] && ver_ge "$v" "$go_required"; then
			GO=$old_go GOTOOLCHAIN_SETTING=auto
		fi
	fi
	if [ -z "$GO" ]; then
		if [ -n "$old_version" ]; then
			add_missing "go >= $go_required (found go$old_version; Debian's golang-go is older, install-deps.sh fetches go$go_required)"
		else
			add_missing "go >= $go_required (none found; install-deps.sh fetches go$go_required)"
		fi
		return 0
	fi
	case $GO in /*) ;; *) GO=$(command -v "$GO") ;; esac
	GOROOT_DIR=$(cd "$srcdir" && GOTOOLCHAIN=${GOTOOLCHAIN_SETTING:-local} "$GO" env GOROOT)
	GOVERSION_FOUND=$(cd "$srcdir" && GOTOOLCHAIN=${GOTOOLCHAIN_SETTING:-local} "$GO" env GOVERSION)
}

# check_cc: sets CC_CMD to a C compiler that builds with the starter's warning flags.
check_cc() {
	CC_CMD=${CC:-gcc}
	if ! command -v "$CC_CMD" >/dev/null 2>&1; then
		add_missing "$CC_CMD (gcc, build-essential)"
		return 0
	fi
	tmp=$(mktemp -d)
	printf 'int main(void) { return 0; }\n' >"$tmp/t.c"
	if ! "$CC_CMD" -Wall -Wextra -Werror -o "$tmp/t" "$tmp/t.c" >/dev/null 2>&1; then
		add_missing "a working C compiler: $CC_CMD cannot build a test program (build-essential)"
	fi
	rm -rf "$tmp"
}

# check_pkgconfig_lib NAME PACKAGE
check_pkgconfig_lib() {
	if ! command -v pkg-config >/dev/null 2>&1; then
		add_missing "pkg-config (pkg-config)"
		return 0
	fi
	pkg-config --exists "$1" || add_missing "$1 (pkg-config finds no $1.pc; $2)"
}

# check_tool COMMAND PACKAGE
check_tool() {
	command -v "$1" >/dev/null 2>&1 || add_missing "$1 ($2)"
}

# find_staticcheck: sets STATICCHECK_CMD, or leaves it empty (only `make lint` needs it).
find_staticcheck() {
	STATICCHECK_CMD=$(command -v staticcheck 2>/dev/null || true)
	if [ -z "$STATICCHECK_CMD" ] && [ -n "$GO" ]; then
		for d in "$(cd / && "$GO" env GOBIN)" "$(cd / && "$GO" env GOPATH | cut -d: -f1)/bin"; do
			if [ -n "$d" ] && [ -x "$d/staticcheck" ] && [ "$d" != /bin ]; then
				STATICCHECK_CMD=$d/staticcheck
				break
			fi
		done
	fi
}

# kerr_version: git describe of the source tree, else its VERSION file, else 0.0.0-unknown;
# reduced to characters that are safe in make, C strings and -ldflags.
kerr_version() {
	v=$(git -C "$srcdir" describe --tags --always --dirty 2>/dev/null || true)
	if [ -z "$v" ] && [ -f "$srcdir/VERSION" ]; then
		v=$(sed -n '1p' "$srcdir/VERSION")
	fi
	[ -n "$v" ] || v=0.0.0-unknown
	printf '%s\n' "$v" | tr -c 'A-Za-z0-9._+~\n-' '_'
}
