//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// linux.resources end to end: each limit the host's kernel offers is set through
// config.json (and, for each kind, changed by `kerr oci update` on a created or running
// container), then checked from inside the container: the cgroup files it sees (the
// default config mounts /sys/fs/cgroup read-only in a cgroup namespace, so each hierarchy
// shows the container's own cgroup at its root) and, where that is cheap and robust, the
// limit at work (an allocation past the memory limit is OOM-killed, a fork past the pids
// limit fails, a device outside the rules cannot be opened, a throttled read is slow).
// What the host lacks is refused with a one-line error naming the field, which is tested
// instead; bad updates fail in one line with a documented exit code and leave the
// container as it was.
//
// The reference host is hybrid: cgroup v1 controllers, and a cgroup2 hierarchy at
// /sys/fs/cgroup/unified with no controller enabled (hugetlb is bound to it, unused). The
// paths and values for a unified cgroup v2 host are given too, untried there.

// resV2 says whether the host has the unified cgroup v2 layout (cgroup2 at /sys/fs/cgroup).
var resV2 = func() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}()

func resExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// resHostHas says whether the host offers controller ctrl with file (v1; "" for any) in its
// root cgroup, read here independently of kerr.
func resHostHas(ctrl, v1file string) bool {
	if resV2 {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && slices.Contains(strings.Fields(string(b)), ctrl)
	}
	return resExists(filepath.Join("/sys/fs/cgroup", ctrl, v1file))
}

// resCg is the path inside the container of a cgroup file: v1 under the controller's
// directory, v2 at the root of the cgroup2 mount.
func resCg(ctrl, v1file, v2file string) string {
	if resV2 {
		return "/sys/fs/cgroup/" + v2file
	}
	return "/sys/fs/cgroup/" + ctrl + "/" + v1file
}

// resEdit edits config.json's linux.resources (kept: the default device rules), and has
// the process run as root (the image says nobody): the device checks make device nodes.
func resEdit(edit func(r *specs.LinuxResources)) func(*specs.Spec) {
	return func(sp *specs.Spec) {
		sp.Process.User = specs.User{UID: 0, GID: 0}
		if sp.Linux.Resources == nil {
			sp.Linux.Resources = &specs.LinuxResources{}
		}
		edit(sp.Linux.Resources)
	}
}

func resI64(v int64) *int64   { return &v }
func resU64(v uint64) *uint64 { return &v }
func resU16(v uint16) *uint16 { return &v }
func resJSON(v any) string    { b, _ := json.Marshal(v); return string(b) }

// resID is a container id of this test process: the cgroup /kerr/ID is the host's, and
// other users of the machine may run containers too.
func resID(name string) string { return fmt.Sprintf("res-%s-%d", name, os.Getpid()) }

// resCleanup, deferred after s.Done() (so run before it), deletes with --force whatever a
// failed test left in the state root and undoes the bundle, so that the next tests find
// the machine clean. A passing test has left nothing, and this does nothing.
func (e *ociEnv) resCleanup() {
	ents, _ := os.ReadDir(e.root)
	for _, ent := range ents {
		e.oci("delete", "--force", ent.Name())
	}
	// Under systemd the bundle is mounted in its mount namespace, out of sight here.
	if _, mounted := harness.MountAt(filepath.Join(e.bundle, "rootfs")); mounted || e.sd != nil {
		e.kerr("oci", "umount", e.bundle)
	}
}

// resStart creates and starts container id (the bundle's process: a shell that sleeps)
// and returns its pid.
func (e *ociEnv) resStart(t *testing.T, id string) int {
	t.Helper()
	e.oci("create", "-b", e.bundle, id).OK(t)
	e.oci("start", id).OK(t)
	return e.waitStatus(t, id, "running").Pid
}

// resIn runs a shell script in the running container and returns its stdout.
func (e *ociEnv) resIn(t *testing.T, id, script string) string {
	t.Helper()
	return e.oci("exec", id, "/bin/sh", "-c", script).OK(t).Stdout
}

// resRead reads files inside the container: each one's lines joined with ";", or MISSING.
func (e *ociEnv) resRead(t *testing.T, id string, paths ...string) map[string]string {
	t.Helper()
	script := `for f in "$@"; do if [ -e "$f" ]; then printf '%s\t%s\n' "$f" "$(tr '\n' ';' < "$f")"; else printf '%s\tMISSING\n' "$f"; fi; done`
	r := e.oci(append([]string{"exec", id, "/bin/sh", "-c", script, "sh"}, paths...)...).OK(t)
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			out[k] = strings.TrimSuffix(strings.TrimSpace(v), ";")
		}
	}
	return out
}

// resWant checks files inside the container against want.
func (e *ociEnv) resWant(t *testing.T, id, when string, want map[string]string) {
	t.Helper()
	paths := slices.Sorted(maps.Keys(want))
	got := e.resRead(t, id, paths...)
	for _, p := range paths {
		if got[p] != want[p] {
			t.Errorf("%s: %s inside the container is %q, want %q", when, p, got[p], want[p])
		}
	}
}

// resUpdate runs `kerr oci update` with doc, by one of the three ways to give it:
// "--from-file" and "--resources" (a file), "-" (stdin, as `-r -`).
func (e *ociEnv) resUpdate(t *testing.T, id, how, doc string) harness.Result {
	t.Helper()
	if how == "-" {
		return e.s.RunWith(h.Root, harness.Opts{Stdin: doc}, "oci", "--root", e.root, "update", "-r", "-", id)
	}
	f := filepath.Join(e.s.Dir(h.Root), "resources.json")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.oci("update", how, f, id)
}

// resNoCgroup checks that no hierarchy holds a cgroup of container id any more.
func resNoCgroup(t *testing.T, id string) {
	t.Helper()
	for _, pattern := range []string{"/sys/fs/cgroup/kerr/" + id, "/sys/fs/cgroup/*/kerr/" + id} {
		m, _ := filepath.Glob(pattern)
		for _, cg := range m {
			t.Errorf("leak: cgroup %s of container %s", cg, id)
		}
	}
}

// resDelete deletes container id with --force and checks that nothing of it is left.
func (e *ociEnv) resDelete(t *testing.T, id string, pid int) {
	t.Helper()
	e.oci("delete", "--force", id).OK(t)
	e.gone(t, id, pid)
	resNoCgroup(t, id)
}

// resUmount undoes the bundle and checks that nothing of it is left.
func (e *ociEnv) resUmount(t *testing.T) {
	t.Helper()
	if ents, err := os.ReadDir(e.root); err == nil && len(ents) > 0 {
		t.Errorf("leak: the state root still holds %d entries", len(ents))
	}
	e.kerr("oci", "umount", e.bundle).OK(t)
	released(t, e.sif, e.s.Base())
}

// resRefused checks that a failed command left no container id behind.
func (e *ociEnv) resRefused(t *testing.T, r harness.Result, id string, code int, wants ...string) {
	t.Helper()
	r.FailsQuiet(t, code)
	for _, w := range wants {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, r.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("a refused create left state for %s: %v", id, err)
	}
	resNoCgroup(t, id)
}

// resHostCPUs is the host's cpuset (the CPUs a container may be given), and its memory nodes.
func resHostCPUs(t *testing.T) (cpus []string, mems string) {
	t.Helper()
	f, m := "/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "/sys/fs/cgroup/cpuset/cpuset.effective_mems"
	if resV2 {
		f, m = "/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset.mems.effective"
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("the host's CPUs: %v", err)
	}
	for part := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if isRange {
			z, _ = strconv.Atoi(hi)
		}
		for i := a; i <= z; i++ {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	mb, err := os.ReadFile(m)
	if err != nil {
		t.Fatalf("the host's memory nodes: %v", err)
	}
	mems, _, _ = strings.Cut(strings.TrimSpace(string(mb)), ",")
	mems, _, _ = strings.Cut(mems, "-")
	return cpus, mems
}

// resProcStatus returns a field of /proc/PID/status inside the container ("self": a new
// process, which exec runs; 1: the container's first process).
func (e *ociEnv) resProcStatus(t *testing.T, id, pid, field string) string {
	t.Helper()
	out := e.resIn(t, id, "grep '^"+field+":' /proc/"+pid+"/status")
	_, v, _ := strings.Cut(out, ":")
	return strings.TrimSpace(v)
}

// resKeyValue returns the value of "key value" in a file read by resRead (lines joined by ";").
func resKeyValue(s, key string) string {
	for l := range strings.SplitSeq(s, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Memory: the limit, the reservation and memory+swap are in the container's cgroup; an
// allocation past the limit is OOM-killed, one below it is not; update raises the limit
// (from a file), after which the same allocation succeeds.
func TestOCIResourcesMemory(t *testing.T) {
	if !resHostHas("memory", "memory.limit_in_bytes") {
		t.Skip("the host has no memory cgroup controller")
	}
	memsw := resHostHas("memory", "memory.memsw.limit_in_bytes")
	if resV2 {
		// v2 has memory.swap.max below the root only when swap accounting is on.
		m, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
		memsw = len(m) > 0
	}
	if !memsw {
		// Without swap accounting a container can swap past its limit instead of being
		// OOM-killed, when the host has swap.
		if b, _ := os.ReadFile("/proc/swaps"); strings.Count(strings.TrimSpace(string(b)), "\n") > 0 {
			t.Skip("the host has swap but no swap accounting (memory.memsw.*): the OOM check cannot hold")
		}
	}
	// Per-cgroup swappiness is v1's only.
	swappiness := !resV2 && resHostHas("memory", "memory.swappiness")
	s := h.Begin(t)
	defer s.Done()
	const mib = 1 << 20
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) {
		r.Memory = &specs.LinuxMemory{Limit: resI64(16 * mib), Reservation: resI64(8 * mib)}
		if memsw {
			r.Memory.Swap = resI64(16 * mib)
		}
		if swappiness {
			r.Memory.Swappiness = resU64(10)
		}
	}))
	defer e.resCleanup()
	id := resID("mem")
	pid := e.resStart(t, id)
	limit, soft := resCg("memory", "memory.limit_in_bytes", "memory.max"), resCg("memory", "memory.soft_limit_in_bytes", "memory.low")
	swap := resCg("memory", "memory.memsw.limit_in_bytes", "memory.swap.max")
	want := map[string]string{limit: strconv.Itoa(16 * mib), soft: strconv.Itoa(8 * mib)}
	if memsw {
		want[swap] = strconv.Itoa(16 * mib)
		if resV2 {
			want[swap] = "0" // v2's swap.max is the swap alone: memory+swap minus memory
		}
	}
	if swappiness {
		want["/sys/fs/cgroup/memory/memory.swappiness"] = "10"
	}
	e.resWant(t, id, "created with 16 MiB", want)

	// dd reads /dev/zero into a buffer of bs bytes: the kernel fills every page of it.
	alloc := func(mb int) int {
		return e.oci("exec", id, "/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs="+strconv.Itoa(mb)+"M count=1 2>/dev/null").Code
	}
	if code := alloc(4); code != 0 {
		t.Errorf("a 4 MiB allocation under a 16 MiB limit: exit %d, want 0", code)
	}
	if code := alloc(64); code != 137 {
		t.Errorf("a 64 MiB allocation under a 16 MiB limit: exit %d, want 137 (OOM-killed)", code)
	}
	events := resCg("memory", "memory.oom_control", "memory.events")
	if n, _ := strconv.Atoi(resKeyValue(e.resRead(t, id, events)[events], "oom_kill")); n < 1 {
		t.Errorf("%s counts no OOM kill after the 64 MiB allocation", events)
	}
	if st := e.state(t, id); st.Status != "running" {
		t.Errorf("the container is %s after one of its processes was OOM-killed", st.Status)
	}

	up := specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: resI64(96 * mib), Reservation: resI64(32 * mib)}}
	if memsw {
		up.Memory.Swap = resI64(96 * mib)
	}
	e.resUpdate(t, id, "--from-file", resJSON(up)).OK(t)
	want = map[string]string{limit: strconv.Itoa(96 * mib), soft: strconv.Itoa(32 * mib)}
	if memsw && !resV2 {
		want[swap] = strconv.Itoa(96 * mib)
	}
	e.resWant(t, id, "updated to 96 MiB", want)
	if code := alloc(64); code != 0 {
		t.Errorf("a 64 MiB allocation after the limit went up to 96 MiB: exit %d, want 0", code)
	}
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// CPU: shares (v2: the weight they convert to), quota and period, the cpuset's CPUs and
// memory nodes, in the cgroup and in the processes' affinity; a busy loop under a small
// quota is throttled; update changes all of them on the running container, its first
// process included.
func TestOCIResourcesCPU(t *testing.T) {
	if !resHostHas("cpu", "cpu.cfs_quota_us") || !resHostHas("cpuset", "cpuset.cpus") {
		t.Skip("the host lacks the cpu controller with CFS quota, or the cpuset controller")
	}
	// CFS burst (Linux 5.14): v1 cpu.cfs_burst_us, v2 cpu.max.burst.
	burst := resV2 && resExists("/sys/fs/cgroup/cpu.max.burst") || !resV2 && resHostHas("cpu", "cpu.cfs_burst_us")
	s := h.Begin(t)
	defer s.Done()
	cpus, mems := resHostCPUs(t)
	first, last := cpus[0], cpus[len(cpus)-1]
	if len(cpus) < 2 {
		t.Logf("note: the host has one CPU: the cpuset checks cannot show a change")
	}
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) {
		r.CPU = &specs.LinuxCPU{Shares: resU64(512), Quota: resI64(10000), Period: resU64(100000), Cpus: last, Mems: mems}
		if burst {
			r.CPU.Burst = resU64(5000)
		}
	}))
	defer e.resCleanup()
	id := resID("cpu")
	pid := e.resStart(t, id)
	shares, quota, period := resCg("cpu", "cpu.shares", "cpu.weight"), resCg("cpu", "cpu.cfs_quota_us", "cpu.max"), resCg("cpu", "cpu.cfs_period_us", "cpu.max")
	cpusF, memsF := resCg("cpuset", "cpuset.cpus", "cpuset.cpus"), resCg("cpuset", "cpuset.mems", "cpuset.mems")
	cpuWant := func(sh uint64, q int64, p uint64) map[string]string {
		if resV2 {
			return map[string]string{shares: strconv.FormatUint(ocg.ConvertCPUSharesToCgroupV2Value(sh), 10), quota: fmt.Sprintf("%d %d", q, p)}
		}
		return map[string]string{shares: strconv.FormatUint(sh, 10), quota: strconv.FormatInt(q, 10), period: strconv.FormatUint(p, 10)}
	}
	want := cpuWant(512, 10000, 100000)
	want[cpusF], want[memsF] = last, mems
	if burst {
		want[resCg("cpu", "cpu.cfs_burst_us", "cpu.max.burst")] = "5000"
	}
	e.resWant(t, id, "created", want)
	for _, p := range []string{"1", "self"} {
		if got := e.resProcStatus(t, id, p, "Cpus_allowed_list"); got != last {
			t.Errorf("process %s in the container may run on CPUs %q, want %s", p, got, last)
		}
		if got := e.resProcStatus(t, id, p, "Mems_allowed_list"); got != mems {
			t.Errorf("process %s in the container may use memory nodes %q, want %s", p, got, mems)
		}
	}
	// A second of busy loop under 10 ms per 100 ms is throttled.
	e.oci("exec", id, "/bin/sh", "-c", "timeout 1 sh -c 'while :; do :; done'")
	stat := resCg("cpu", "cpu.stat", "cpu.stat")
	if n, _ := strconv.Atoi(resKeyValue(e.resRead(t, id, stat)[stat], "nr_throttled")); n < 1 {
		t.Errorf("a busy loop under a 10%% quota was never throttled (%s)", stat)
	}

	up := specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: resU64(1024), Quota: resI64(50000), Period: resU64(200000), Cpus: first}}
	e.resUpdate(t, id, "--resources", resJSON(up)).OK(t)
	want = cpuWant(1024, 50000, 200000)
	want[cpusF], want[memsF] = first, mems
	e.resWant(t, id, "updated", want)
	for _, p := range []string{"1", "self"} {
		if got := e.resProcStatus(t, id, p, "Cpus_allowed_list"); got != first {
			t.Errorf("after update, process %s in the container may run on CPUs %q, want %s", p, got, first)
		}
	}
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// resForkLoop forks 20 short sleeps from a child shell, which dies at the first fork
// that fails, and reports with builtins only (no fork): the child's status, the
// controller's counters and the error.
const resForkLoop = `sh -c 'i=0; while [ $i -lt 20 ]; do sleep 2 & i=$((i+1)); done' 2>/tmp/forkerr
echo "rc=$?"
while read -r l; do echo "events=$l"; done < /sys/fs/cgroup/PIDS/pids.events
while read -r l; do echo "current=$l"; done < /sys/fs/cgroup/PIDS/pids.current
while read -r l; do echo "err=$l"; done < /tmp/forkerr`

// Pids: a limit set by update on a created container holds once it runs: forks past it
// fail; update raises it on the running container and the same forks succeed.
func TestOCIResourcesPids(t *testing.T) {
	if !resHostHas("pids", "") {
		t.Skip("the host has no pids cgroup controller")
	}
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) { r.Pids = &specs.LinuxPids{Limit: resI64(100)} }))
	defer e.resCleanup()
	id := resID("pids")
	e.oci("create", "-b", e.bundle, id).OK(t)
	e.resUpdate(t, id, "-", `{"pids":{"limit":8}}`).OK(t)
	e.oci("start", id).OK(t)
	pid := e.waitStatus(t, id, "running").Pid
	maxF := resCg("pids", "pids.max", "pids.max")
	e.resWant(t, id, "updated while created", map[string]string{maxF: "8"})
	loop := strings.ReplaceAll(resForkLoop, "/PIDS", map[bool]string{true: "", false: "/pids"}[resV2])
	out := e.resIn(t, id, loop)
	if !strings.Contains(out, "rc=2") || !strings.Contains(out, "can't fork") {
		t.Errorf("20 forks under a limit of 8: the loop did not fail to fork:\n%s", out)
	}
	if n, _ := strconv.Atoi(resKeyValue(strings.ReplaceAll(out, "\n", ";"), "events=max")); n < 1 {
		t.Errorf("pids.events counts no refused fork:\n%s", out)
	}
	for l := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(l, "current="); ok {
			if n, _ := strconv.Atoi(v); n > 8 {
				t.Errorf("pids.current %d is above the limit of 8", n)
			}
		}
	}
	// The sleeps end by themselves; wait until they are gone.
	waitPids := func(atMost int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := e.resRead(t, id, resCg("pids", "pids.current", "pids.current"))
			n, _ := strconv.Atoi(got[resCg("pids", "pids.current", "pids.current")])
			if n <= atMost {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pids.current still %d", n)
			}
		}
	}
	waitPids(4)

	e.resUpdate(t, id, "--from-file", `{"pids":{"limit":40}}`).OK(t)
	e.resWant(t, id, "raised while running", map[string]string{maxF: "40"})
	out = e.resIn(t, id, loop)
	if !strings.Contains(out, "rc=0") || strings.Contains(out, "can't fork") {
		t.Errorf("20 forks under a limit of 40 failed:\n%s", out)
	}
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// Block I/O: the weight, and the four throttles on the loop device that holds the
// container's own image; a direct read from it is as slow as its throttle; update changes
// them. Per-device weights need BFQ on the device here (see TestOCIResourcesRefused).
func TestOCIResourcesBlockIO(t *testing.T) {
	if !resHostHas("blkio", "blkio.throttle.read_bps_device") && !resHostHas("io", "") {
		t.Skip("the host has no block I/O cgroup controller with throttling")
	}
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	defer e.resCleanup()
	loops := harness.LoopDevicesFor(e.sif)
	if len(loops) == 0 {
		t.Fatalf("no loop device holds %s", e.sif)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(loops[0].Dev), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	majS, minS, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	major, _ := strconv.ParseInt(majS, 10, 64)
	minor, _ := strconv.ParseInt(minS, 10, 64)
	dev := func(rate uint64) []specs.LinuxThrottleDevice {
		return []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Rate: rate}}
	}
	// The weight needs a proportional-weight policy: CFQ's blkio.weight or BFQ's (v1
	// blkio.bfq.weight, which only cgroups below the root have), v2 io.weight or io.bfq.weight.
	weight := resV2 || resHostHas("blkio", "blkio.weight") || resHostHas("blkio", "blkio.bfq.io_service_bytes")
	e.editSpec(t, resEdit(func(r *specs.LinuxResources) {
		r.BlockIO = &specs.LinuxBlockIO{ThrottleReadBpsDevice: dev(256 << 10), ThrottleWriteBpsDevice: dev(1 << 20),
			ThrottleReadIOPSDevice: dev(1000), ThrottleWriteIOPSDevice: dev(500)}
		if weight {
			r.BlockIO.Weight = resU16(300)
		}
		// Reading the device needs it allowed; mknod is allowed by the defaults.
		r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &major, Minor: &minor, Access: "r"})
	}))
	id := resID("blkio")
	pid := e.resStart(t, id)
	d := fmt.Sprintf("%d:%d", major, minor)
	var want map[string]string
	throttles := func(rbps, wbps, riops, wiops uint64) {
		if resV2 {
			want = map[string]string{"/sys/fs/cgroup/io.max": fmt.Sprintf("%s rbps=%d wbps=%d riops=%d wiops=%d", d, rbps, wbps, riops, wiops)}
			return
		}
		want = map[string]string{}
		for f, v := range map[string]uint64{"read_bps": rbps, "write_bps": wbps, "read_iops": riops, "write_iops": wiops} {
			want["/sys/fs/cgroup/blkio/blkio.throttle."+f+"_device"] = fmt.Sprintf("%s %d", d, v)
		}
	}
	// weightFile is the weight file the container's cgroup has, and the value for w.
	weightFile := func(w uint16) (string, string) {
		got := e.resRead(t, id, "/sys/fs/cgroup/blkio/blkio.weight", "/sys/fs/cgroup/io.bfq.weight")
		switch {
		case !resV2 && got["/sys/fs/cgroup/blkio/blkio.weight"] != "MISSING":
			return "/sys/fs/cgroup/blkio/blkio.weight", strconv.Itoa(int(w))
		case !resV2:
			return "/sys/fs/cgroup/blkio/blkio.bfq.weight", strconv.Itoa(int(w))
		case got["/sys/fs/cgroup/io.bfq.weight"] != "MISSING":
			return "/sys/fs/cgroup/io.bfq.weight", "default " + strconv.Itoa(int(w))
		}
		return "/sys/fs/cgroup/io.weight", "default " + strconv.FormatUint(ocg.ConvertBlkIOToIOWeightValue(w), 10)
	}
	throttles(256<<10, 1<<20, 1000, 500)
	if weight {
		f, v := weightFile(300)
		want[f] = v
	}
	e.resWant(t, id, "created", want)

	// 512 KiB read directly (no page cache) at 256 KiB/s takes about two seconds; unthrottled,
	// milliseconds. /proc/uptime has hundredths of a second.
	read := func() float64 {
		t.Helper()
		out := e.resIn(t, id, fmt.Sprintf(`[ -b /dev/lower ] || mknod /dev/lower b %d %d
read a _ < /proc/uptime; dd if=/dev/lower of=/dev/null bs=64k count=8 iflag=direct 2>/dev/null || echo dd-failed; read b _ < /proc/uptime
echo "$a $b"`, major, minor))
		if strings.Contains(out, "dd-failed") {
			t.Fatalf("reading the loop device %s in the container failed:\n%s", d, out)
		}
		f := strings.Fields(out)
		a, _ := strconv.ParseFloat(f[len(f)-2], 64)
		z, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return z - a
	}
	if secs := read(); secs < 1.0 {
		t.Errorf("512 KiB read at 256 KiB/s took %.2fs, want at least 1s", secs)
	}

	up := specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: dev(64 << 20), ThrottleWriteBpsDevice: dev(2 << 20),
		ThrottleReadIOPSDevice: dev(2000), ThrottleWriteIOPSDevice: dev(1000)}}
	if weight {
		up.BlockIO.Weight = resU16(700)
	}
	e.resUpdate(t, id, "-", resJSON(up)).OK(t)
	throttles(64<<20, 2<<20, 2000, 1000)
	if weight {
		f, v := weightFile(700)
		want[f] = v
	}
	e.resWant(t, id, "updated", want)
	if secs := read(); secs > 1.0 {
		t.Errorf("512 KiB read at 64 MiB/s took %.2fs: the old throttle still holds", secs)
	}
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// Hugepages: a limit per page size the host has, in hugetlb.SIZE.limit_in_bytes (v2:
// .max); where the host has the sizes but no hugetlb controller kerr can use (on a hybrid
// host the controller may sit in the unused cgroup2 hierarchy), create and update refuse
// the field in one line.
func TestOCIResourcesHugepages(t *testing.T) {
	sizes := ocg.HugePageSizes()
	if len(sizes) == 0 {
		t.Skip("the host has no huge page sizes (/sys/kernel/mm/hugepages is empty)")
	}
	s := h.Begin(t)
	defer s.Done()
	limits := func(limit uint64) []specs.LinuxHugepageLimit {
		var out []specs.LinuxHugepageLimit
		for _, sz := range sizes {
			out = append(out, specs.LinuxHugepageLimit{Pagesize: sz, Limit: limit})
		}
		return out
	}
	// A whole number of the largest pages.
	const gib = 1 << 30
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) { r.HugepageLimits = limits(2 * gib) }))
	defer e.resCleanup()
	id := resID("huge")
	if !resHostHas("hugetlb", "") {
		t.Logf("note: the host has huge pages (%s) but no hugetlb controller kerr can use: checking the refusal", strings.Join(sizes, ", "))
		r := e.oci("create", "-b", e.bundle, id)
		wants := []string{"linux.resources.hugepageLimits[0]", "not supported on this host"}
		if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb") {
			// A hybrid host with the controller in its cgroup2 hierarchy: the error says so.
			wants = append(wants, "cgroup2 hierarchy")
		}
		e.resRefused(t, r, id, 2, wants...)
		// update refuses it too, and the container keeps running as it was.
		e.editSpec(t, resEdit(func(r *specs.LinuxResources) { r.HugepageLimits = nil }))
		pid := e.resStart(t, id)
		up := specs.LinuxResources{HugepageLimits: limits(gib)}
		e.resUpdate(t, id, "-", resJSON(up)).FailsQuiet(t, 2)
		if st := e.state(t, id); st.Status != "running" {
			t.Errorf("after the refused update the container is %s", st.Status)
		}
		e.resDelete(t, id, pid)
		e.resUmount(t)
		return
	}
	pid := e.resStart(t, id)
	file := func(sz string) string {
		return resCg("hugetlb", "hugetlb."+sz+".limit_in_bytes", "hugetlb."+sz+".max")
	}
	want := map[string]string{}
	for _, sz := range sizes {
		want[file(sz)] = strconv.Itoa(2 * gib)
	}
	e.resWant(t, id, "created", want)
	e.resUpdate(t, id, "--from-file", resJSON(specs.LinuxResources{HugepageLimits: limits(gib)})).OK(t)
	for _, sz := range sizes {
		want[file(sz)] = strconv.Itoa(gib)
	}
	e.resWant(t, id, "updated", want)
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// Devices: the rules allow what they say and nothing else, the defaults (/dev/null, ...)
// and the devices of linux.devices included; update replaces the rules on the running
// container, still with the defaults and linux.devices (as create adds them). /dev/kmsg
// (1:11) opened write-only needs no privilege, so whether it opens is the cgroup's answer
// alone; the open of a denied device fails with EPERM whatever its driver, and 10:201 is
// never allowed. The linux.devices node (10:200, /dev/net/tun's numbers) must not get
// EPERM; whether its driver is there is the host's business.
func TestOCIResourcesDevices(t *testing.T) {
	if resV2 {
		t.Skip("this test reads the cgroup v1 devices.list; on v2 the rules are the library's eBPF program, untried on this project's hybrid hosts")
	}
	s := h.Begin(t)
	defer s.Done()
	kmsg := func(access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: resI64(1), Minor: resI64(11), Access: access}
	}
	mode := os.FileMode(0o600)
	e := newOCIEnv(t, s, nil, func(sp *specs.Spec) {
		resEdit(func(r *specs.LinuxResources) { r.Devices = append(r.Devices, kmsg("w")) })(sp)
		sp.Linux.Devices = append(sp.Linux.Devices, specs.LinuxDevice{Path: "/dev/specdev", Type: "c", Major: 10, Minor: 200, FileMode: &mode})
	})
	defer e.resCleanup()
	id := resID("dev")
	pid := e.resStart(t, id)
	probe := `[ -c /dev/kmsg0 ] || mknod /dev/kmsg0 c 1 11; [ -c /dev/deny0 ] || mknod /dev/deny0 c 10 201
try() { if (eval "exec 3$2$1") 2>/tmp/err; then echo "$1$2 ok"; else echo "$1$2 $(cat /tmp/err)"; fi; }
try /dev/kmsg0 '>'; try /dev/kmsg0 '<>'; try /dev/deny0 '<>'; try /dev/specdev '<>'; try /dev/null '<>'; try /dev/zero '<'`
	check := func(when string, want map[string]string) {
		t.Helper()
		out := e.resIn(t, id, probe)
		for open, w := range want {
			var line string
			for l := range strings.SplitSeq(out, "\n") {
				if strings.HasPrefix(l, open+" ") {
					line = l
				}
			}
			eperm := strings.Contains(line, "Operation not permitted")
			if line == "" || w == "ok" && !strings.HasSuffix(line, " ok") || w == "EPERM" && !eperm || w == "not EPERM" && eperm {
				t.Errorf("%s: open %s: %q, want %s\n%s", when, open, line, w, out)
			}
		}
	}
	check("created allowing kmsg for writing", map[string]string{"/dev/kmsg0>": "ok", "/dev/kmsg0<>": "EPERM",
		"/dev/deny0<>": "EPERM", "/dev/specdev<>": "not EPERM", "/dev/null<>": "ok", "/dev/zero<": "ok"})
	devList := "/sys/fs/cgroup/devices/devices.list"
	if got := e.resRead(t, id, devList)[devList]; !strings.Contains(got, "c 1:11 w") {
		t.Errorf("devices.list inside the container: %q, want c 1:11 w in it", got)
	}

	// Only the default rule: kmsg is denied now; the default devices and linux.devices stay.
	e.resUpdate(t, id, "--from-file", `{"devices":[{"allow":false,"access":"rwm"}]}`).OK(t)
	check("updated to deny all", map[string]string{"/dev/kmsg0>": "EPERM", "/dev/deny0<>": "EPERM",
		"/dev/specdev<>": "not EPERM", "/dev/null<>": "ok", "/dev/zero<": "ok"})
	// And back, from stdin.
	e.resUpdate(t, id, "-", resJSON(specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, kmsg("w")}})).OK(t)
	check("updated to allow kmsg again", map[string]string{"/dev/kmsg0>": "ok", "/dev/deny0<>": "EPERM",
		"/dev/specdev<>": "not EPERM", "/dev/null<>": "ok"})
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// unified: on a unified cgroup v2 host the keys are written as they are; on a v1 or hybrid
// host (where kerr, as runc, sets limits in the v1 hierarchies only, and a hybrid host's
// cgroup2 hierarchy holds no controller kerr uses) create and update refuse them in one
// line naming the key, and leave nothing, or the container as it was.
func TestOCIResourcesUnified(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) { r.Unified = map[string]string{"pids.max": "9"} }))
	defer e.resCleanup()
	id := resID("uni")
	if resV2 {
		if !resHostHas("pids", "") {
			t.Skip("the host's cgroup v2 has no pids controller to set a unified key of")
		}
		pid := e.resStart(t, id)
		e.resWant(t, id, "created", map[string]string{"/sys/fs/cgroup/pids.max": "9"})
		e.resUpdate(t, id, "-", `{"unified":{"pids.max":"11"}}`).OK(t)
		e.resWant(t, id, "updated", map[string]string{"/sys/fs/cgroup/pids.max": "11"})
		e.resDelete(t, id, pid)
		e.resUmount(t)
		return
	}
	r := e.oci("create", "-b", e.bundle, id)
	e.resRefused(t, r, id, 2, "linux.resources.unified.pids.max", "not supported on this host")
	e.editSpec(t, resEdit(func(r *specs.LinuxResources) {
		r.Unified = nil
		r.Pids = &specs.LinuxPids{Limit: resI64(50)}
	}))
	pid := e.resStart(t, id)
	u := e.resUpdate(t, id, "-", `{"unified":{"memory.high":"1000000","pids.max":"9"}}`)
	u.FailsQuiet(t, 2)
	if !strings.Contains(u.Stderr, "unified.memory.high") {
		t.Errorf("the refusal does not name the key: %q", u.Stderr)
	}
	if resHostHas("pids", "") {
		e.resWant(t, id, "after the refused update", map[string]string{"/sys/fs/cgroup/pids/pids.max": "50"})
	}
	e.resDelete(t, id, pid)
	e.resUmount(t)
}

// Limits refused at create, by Validate (exit 2) or by the kernel (exit 1): one line
// naming the field or the file, and nothing of the container left.
func TestOCIResourcesRefusedAtCreate(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	defer e.resCleanup()
	cpus, _ := resHostCPUs(t)
	type refusal struct {
		name  string
		res   func(r *specs.LinuxResources)
		code  int
		wants []string
	}
	cases := []refusal{
		{"a CPU the host lacks", func(r *specs.LinuxResources) { r.CPU = &specs.LinuxCPU{Cpus: strconv.Itoa(len(cpus) + 100)} },
			2, []string{"linux.resources.cpu.cpus", "not available"}},
		{"shares out of range", func(r *specs.LinuxResources) { r.CPU = &specs.LinuxCPU{Shares: resU64(1)} },
			2, []string{"linux.resources.cpu.shares", "invalid value"}},
		{"swap below the limit", func(r *specs.LinuxResources) {
			r.Memory = &specs.LinuxMemory{Limit: resI64(64 << 20), Swap: resI64(32 << 20)}
		},
			2, []string{"linux.resources.memory.swap"}},
		{"a throttle for no device", func(r *specs.LinuxResources) {
			r.BlockIO = &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 4095, Minor: 4095}, Rate: 1}}}
		}, 2, []string{"linux.resources.blockIO.throttleReadBpsDevice[0]", "no block device 4095:4095"}},
		// The kernel kills the container's first process as it starts, for want of memory.
		{"a memory limit of one page", func(r *specs.LinuxResources) { r.Memory = &specs.LinuxMemory{Limit: resI64(4096)} },
			1, []string{"SIGKILL"}},
	}
	// Controllers this host may lack: net_cls and net_prio (cgroup v1 only), rdma.
	if resV2 || !resHostHas("net_cls", "") {
		cases = append(cases, refusal{"a network class id without net_cls", func(r *specs.LinuxResources) {
			r.Network = &specs.LinuxNetwork{ClassID: func(v uint32) *uint32 { return &v }(0x100001)}
		}, 2, []string{"linux.resources.network.classID", "not supported on this host"}})
	}
	if resV2 || !resHostHas("net_prio", "") {
		cases = append(cases, refusal{"network priorities without net_prio", func(r *specs.LinuxResources) {
			r.Network = &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: "lo", Priority: 2}}}
		}, 2, []string{"linux.resources.network.priorities", "not supported on this host"}})
	}
	if !resHostHas("rdma", "") {
		cases = append(cases, refusal{"rdma without its controller", func(r *specs.LinuxResources) {
			r.Rdma = map[string]specs.LinuxRdma{"mlx5_0": {HcaHandles: func(v uint32) *uint32 { return &v }(2)}}
		}, 2, []string{"linux.resources.rdma", "not supported on this host"}})
	}
	// BFQ per-device weights for a device without BFQ (the loop device of the image).
	if !resV2 && !resHostHas("blkio", "blkio.weight_device") && resHostHas("blkio", "blkio.bfq.io_service_bytes") {
		if loops := harness.LoopDevicesFor(e.sif); len(loops) > 0 {
			sched, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(loops[0].Dev), "queue", "scheduler"))
			b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(loops[0].Dev), "dev"))
			ma, mi, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
			major, _ := strconv.ParseInt(ma, 10, 64)
			minor, _ := strconv.ParseInt(mi, 10, 64)
			if !strings.Contains(string(sched), "[bfq]") {
				cases = append(cases, refusal{"a BFQ weight for a device without BFQ", func(r *specs.LinuxResources) {
					r.BlockIO = &specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Weight: resU16(200)}}}
				}, 2, []string{"linux.resources.blockIO.weightDevice[0].weight", "BFQ"}})
			}
		}
	}
	// A realtime runtime the parent cgroup cannot give (kerr's parent has none by
	// default): the kernel refuses it (EINVAL) while create sets up the cgroup.
	if !resV2 && resHostHas("cpu", "cpu.rt_runtime_us") {
		if b, err := os.ReadFile("/sys/fs/cgroup/cpu/kerr/cpu.rt_runtime_us"); err == nil && strings.TrimSpace(string(b)) == "0" {
			cases = append(cases, refusal{"a realtime runtime", func(r *specs.LinuxResources) {
				r.CPU = &specs.LinuxCPU{RealtimeRuntime: resI64(1000), RealtimePeriod: resU64(100000)}
			}, 1, []string{"cpu.rt_runtime_us", "invalid argument"}})
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := resID("refused" + strconv.Itoa(i))
			e.editSpec(t, func(sp *specs.Spec) {
				sp.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
				c.res(sp.Linux.Resources)
			})
			e.resRefused(t, e.oci("create", "-b", e.bundle, id), id, c.code, c.wants...)
		})
	}
	e.resUmount(t)
}

// Bad updates: malformed or invalid JSON, values Validate refuses, limits the kernel
// refuses partway through (a memory limit below what the container uses, after a new
// cpuset was written), a running container's missing file, a stopped or deleted container.
// Each fails with one line starting with "kerr:" and the documented exit code, and the
// container runs on with its old limits, in the cgroup and in its recorded config.
func TestOCIResourcesBadUpdates(t *testing.T) {
	if !resHostHas("memory", "memory.limit_in_bytes") || !resHostHas("pids", "") || !resHostHas("cpuset", "cpuset.cpus") {
		t.Skip("the host lacks the memory, pids or cpuset cgroup controller")
	}
	s := h.Begin(t)
	defer s.Done()
	const mib = 1 << 20
	memsw := !resV2 && resHostHas("memory", "memory.memsw.limit_in_bytes")
	cpus, _ := resHostCPUs(t)
	all := cpus[0]
	if len(cpus) > 1 {
		all += "-" + cpus[len(cpus)-1]
	}
	e := newOCIEnv(t, s, nil, resEdit(func(r *specs.LinuxResources) {
		r.Memory = &specs.LinuxMemory{Limit: resI64(64 * mib)}
		if memsw {
			r.Memory.Swap = resI64(64 * mib)
		}
		r.Pids = &specs.LinuxPids{Limit: resI64(40)}
		r.CPU = &specs.LinuxCPU{Shares: resU64(512), Cpus: all}
	}))
	defer e.resCleanup()
	id := resID("bad")
	pid := e.resStart(t, id)
	// 8 MiB in a tmpfs, charged to the container and not reclaimable without swap.
	e.resIn(t, id, "head -c 8388608 /dev/zero > /dev/shm/hold")
	files := []string{resCg("memory", "memory.limit_in_bytes", "memory.max"), resCg("pids", "pids.max", "pids.max"),
		resCg("cpuset", "cpuset.cpus", "cpuset.cpus"), resCg("cpu", "cpu.shares", "cpu.weight")}
	if memsw {
		files = append(files, resCg("memory", "memory.memsw.limit_in_bytes", ""))
	}
	if !resV2 {
		files = append(files, "/sys/fs/cgroup/devices/devices.list")
	}
	before := e.resRead(t, id, files...)
	stored := func() string {
		b, err := os.ReadFile(filepath.Join(e.root, id, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var sp specs.Spec
		if err := json.Unmarshal(b, &sp); err != nil {
			t.Fatal(err)
		}
		return resJSON(sp.Linux.Resources)
	}
	storedBefore := stored()
	unchanged := func(what string) {
		t.Helper()
		if st := e.state(t, id); st.Status != "running" || st.Pid != pid {
			t.Errorf("%s: the container is %s with pid %d, want running with %d", what, st.Status, st.Pid, pid)
		}
		after := e.resRead(t, id, files...)
		for _, f := range files {
			if after[f] != before[f] {
				t.Errorf("%s: %s is %q, was %q", what, f, after[f], before[f])
			}
		}
		if got := stored(); got != storedBefore {
			t.Errorf("%s: the recorded linux.resources changed:\n%s\nwas\n%s", what, got, storedBefore)
		}
	}

	type bad struct {
		name, how, doc string
		code           int
		wants          []string
	}
	cases := []bad{
		{"malformed JSON", "-", `{"memory": {"limit": 1`, 2, []string{"--from-file"}},
		// The same pids limit as now: should kerr take the first value and ignore the rest,
		// the cgroup and the recorded config would not show it, only the exit status.
		{"trailing garbage", "--from-file", `{"pids":{"limit":40}} }`, 2, []string{"--from-file"}},
		{"an unknown field", "--resources", `{"memroy":{"limit":1}}`, 2, []string{"memroy"}},
		{"a string for a number", "-", `{"memory":{"limit":"16M"}}`, 2, []string{"--from-file"}},
		{"empty input", "-", ``, 2, []string{"--from-file"}},
		{"shares out of range", "-", `{"cpu":{"shares":1}}`, 2, []string{"linux.resources.cpu.shares"}},
		{"a CPU the host lacks", "-", fmt.Sprintf(`{"cpu":{"cpus":"%d"}}`, len(cpus)+100), 2, []string{"linux.resources.cpu.cpus"}},
		{"swap below the limit", "-", `{"memory":{"limit":67108864,"swap":1048576}}`, 2, []string{"linux.resources.memory.swap"}},
		{"a throttle for no device", "-", `{"blockIO":{"throttleReadBpsDevice":[{"major":4095,"minor":4095,"rate":1}]}}`, 2,
			[]string{"linux.resources.blockIO.throttleReadBpsDevice[0]"}},
		{"a missing file", "--from-file", "", 4, []string{"no such file"}},
	}
	if !resV2 {
		// The v1 kernel refuses the memory limit (EBUSY) after the cpuset was written: the
		// cpuset must be put back. (v2 takes any memory.max, and reclaims or OOM-kills.)
		cases = append(cases, bad{"memory below usage", "-", fmt.Sprintf(`{"cpu":{"cpus":"%s"},"memory":{"limit":%d%s}}`, cpus[0], 4*mib,
			map[bool]string{true: `,"swap":4194304`, false: ""}[memsw]), 1, []string{"memory limit", "previous limits are back"}})
		cases = append(cases, bad{"unified keys on a v1 host", "-", `{"unified":{"pids.max":"5"}}`, 2, []string{"linux.resources.unified.pids.max"}})
	}
	if memsw {
		cases = append(cases, bad{"a limit above memory+swap", "-", fmt.Sprintf(`{"memory":{"limit":%d}}`, 128*mib), 1,
			[]string{"linux.resources.memory.limit", "memory.swap"}})
	}
	if !resV2 && resHostHas("cpu", "cpu.rt_runtime_us") {
		if b, err := os.ReadFile("/sys/fs/cgroup/cpu/kerr/cpu.rt_runtime_us"); err == nil && strings.TrimSpace(string(b)) == "0" {
			// Memory and shares are written before the kernel refuses the realtime runtime.
			cases = append(cases, bad{"a realtime runtime after memory and shares", "-",
				fmt.Sprintf(`{"memory":{"limit":%d%s},"cpu":{"shares":100,"realtimeRuntime":1000}}`, 32*mib,
					map[bool]string{true: fmt.Sprintf(`,"swap":%d`, 32*mib), false: ""}[memsw]),
				1, []string{"cpu.rt_runtime_us", "previous limits are back"}})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r harness.Result
			if c.code == 4 {
				r = e.oci("update", c.how, filepath.Join(s.Dir(h.Root), "no-such-file.json"), id)
			} else {
				r = e.resUpdate(t, id, c.how, c.doc)
			}
			r.FailsQuiet(t, c.code)
			for _, w := range c.wants {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("the error does not say %q: %q", w, r.Stderr)
				}
			}
			unchanged("after " + c.name)
		})
	}

	// A good update still works after all that.
	e.resUpdate(t, id, "-", `{"pids":{"limit":30}}`).OK(t)
	e.resWant(t, id, "after a good update", map[string]string{resCg("pids", "pids.max", "pids.max"): "30"})

	// Stopped: wrong state (9); deleted: not found (4).
	e.oci("kill", "-s", "KILL", id).OK(t)
	e.waitStatus(t, id, "stopped")
	r := e.resUpdate(t, id, "-", `{"pids":{"limit":20}}`)
	r.FailsQuiet(t, 9)
	e.oci("delete", id).OK(t)
	e.gone(t, id, pid)
	resNoCgroup(t, id)
	r = e.resUpdate(t, id, "-", `{"pids":{"limit":20}}`)
	r.FailsQuiet(t, 4)
	if !strings.Contains(r.Stderr, "does not exist") {
		t.Errorf("update of a deleted container: %q", r.Stderr)
	}
	resNoCgroup(t, id)
	e.resUmount(t)
}
