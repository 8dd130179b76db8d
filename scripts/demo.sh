#!/usr/bin/env bash
# kerr's walkthrough, as far as kerr is built: make a tiny busybox image, serve it from a
# registry on loopback, pull it into a SIF and look inside.
#
#   KERR=/path/to/kerr scripts/demo.sh        (default: kerr in PATH)
#
# KERR_FIXTURE may name a prebuilt kerr-fixture binary; otherwise it is built from
# e2e/cmd/kerr-fixture (needs go, or $GO). Needs Debian's docker-registry; siftool is optional.
# Everything happens in a temporary directory that is removed on exit, registry and kerr's
# cache included (KERR_CACHEDIR points there, so the demo neither uses nor fills yours).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "demo: $*" >&2; exit 1; }

kerr=$(command -v "${KERR:-kerr}") || die "no kerr binary '${KERR:-kerr}' (set KERR=/path/to/kerr)"
kerr=$(realpath "$kerr")
[[ -x /usr/bin/docker-registry ]] || die "needs /usr/bin/docker-registry (apt-get install docker-registry)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kerr-demo.XXXXXX")
export KERR_CACHEDIR=$work/cache
fixture=""
registry_started=""

cleanup() {
	local rc=$?
	if [[ -n ${container:-} ]]; then
		"$kerr" oci delete --force "$container" >/dev/null 2>&1 || true
	fi
	if [[ -n ${bundle_mounted:-} ]]; then
		"$kerr" oci umount --force "$bundle" || echo "demo: could not unmount $bundle" >&2
	fi
	if [[ -n $registry_started ]]; then
		"$fixture" registry stop --dir "$work/registry" || echo "demo: could not stop the registry" >&2
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bold prompt on a terminal, plain otherwise
if [[ -t 1 ]]; then prompt=$'\e[1m$\e[0m'; else prompt='$'; fi

# say prints a comment line of the walkthrough.
say() { printf '\n# %s\n' "$*"; }

# run shows a command as a person would type it (the kerr binary by its name), then runs it.
run() {
	local shown=("$@")
	[[ ${shown[0]} == "$kerr" ]] && shown[0]=kerr
	printf '%s %s\n' "$prompt" "${shown[*]}"
	"$@"
}

if [[ -n ${KERR_FIXTURE:-} ]]; then
	fixture=$(realpath "$KERR_FIXTURE")
else
	fixture=$work/kerr-fixture
	(cd "$repo" && "${GO:-go}" build -o "$fixture" ./e2e/cmd/kerr-fixture) || die "building kerr-fixture failed"
fi

say "Start a registry on loopback and push a tiny busybox image to it"
addr=$("$fixture" registry start --dir "$work/registry")
registry_started=1
echo "registry at $addr"
"$fixture" push --registry "$addr" --repo busybox --tag latest >/dev/null

mkdir "$work/demo"
cd "$work/demo"

say "Pull it into a SIF (plain http on loopback needs --insecure)"
run "$kerr" pull --insecure "docker://$addr/busybox:latest"
run ls -l busybox_latest.sif

say "What is inside: labels, runscript, environment, OCI config"
run "$kerr" inspect busybox_latest.sif

say "The SIF's descriptors, as kerr and as siftool see them"
run "$kerr" sif list busybox_latest.sif
if command -v siftool >/dev/null; then
	run siftool list busybox_latest.sif
else
	echo "(siftool not installed; skipped)"
fi

say "HPC mode: the image's runscript, then a command, in a container (as $(id -un))"
run "$kerr" run busybox_latest.sif
run "$kerr" exec busybox_latest.sif /bin/sh -c 'id; echo "cwd: $(pwd)"; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status'

if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
	say "The same as an unprivileged user (nobody), through the setuid starter and the policy"
	# nobody must reach the image and the current directory; its home does not exist.
	chmod 0755 "$work" "$work/demo"
	chmod 0644 busybox_latest.sif
	run setpriv --reuid=65534 --regid=65534 --clear-groups "$kerr" exec --no-home busybox_latest.sif \
		/bin/sh -c 'id; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status'
	run setpriv --reuid=65534 --regid=65534 --clear-groups "$kerr" policy explain --bind /etc/shadow busybox_latest.sif || true
fi

if [[ $(id -u) == 0 ]]; then
	say "Turn the SIF into an OCI bundle (root): config.json, overlay/, rootfs/"
	bundle=$work/busybox
	bundle_mounted=1
	run "$kerr" oci mount ./busybox_latest.sif "$bundle"
	run ls -la "$bundle"
	run df -h "$bundle/rootfs"
	run chroot "$bundle/rootfs" /bin/sh -c 'echo written inside > /hello; cat /hello'
	run ls "$bundle/overlay/upper"

	say "Run it as an OCI container: create, state, exec, start, state, delete"
	# The image's entrypoint prints its environment and arguments and exits: exec comes
	# while the container is created (its process waits for start), and the output of the
	# entrypoint goes to the monitor's log.
	container=busybox1
	run "$kerr" oci create -b "$bundle" busybox1
	run "$kerr" oci state busybox1
	run "$kerr" oci exec busybox1 /bin/sh -c 'echo hi from $(hostname); id'
	run "$kerr" oci start busybox1
	sleep 0.3
	run "$kerr" oci state busybox1
	run cat /run/kerr/busybox1/container.log
	run "$kerr" oci delete busybox1
	say "kill: a created container killed with SIGKILL, then deleted"
	container=busybox2
	run "$kerr" oci create -b "$bundle" busybox2
	run "$kerr" oci kill -s KILL busybox2
	sleep 0.3
	run "$kerr" oci state busybox2
	run "$kerr" oci delete busybox2
	container=""
	say "run: create, start, wait and delete in one command, the output on this terminal"
	run "$kerr" oci run -b "$bundle" busybox3 </dev/null

	run "$kerr" oci umount "$bundle"
	bundle_mounted=""
	run ls -la "$work"
else
	say "kerr oci mount/umount need root; skipped"
fi

say "Done; the registry and $work go away now"
