//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// bootSystemd boots a systemd for the test (harness.BootSystemd) and stops it when the
// test and its other cleanups are done, then checks that the host's /sys/fs/cgroup is as
// it was: systemd set up one of its own.
func bootSystemd(t *testing.T, s *harness.Session) *harness.Systemd {
	t.Helper()
	host := hostCgroupFS()
	sd, err := harness.BootSystemd(s.Mkdir(h.Root, "systemd"))
	if err != nil {
		t.Fatalf("boot systemd: %v", err)
	}
	t.Cleanup(func() {
		if err := sd.Close(); err != nil {
			t.Errorf("stop systemd: %v", err)
		}
		if now := hostCgroupFS(); now != host {
			t.Errorf("the host's /sys/fs/cgroup changed while systemd ran:\nbefore %s\nafter  %s", host, now)
		}
	})
	return sd
}

// hostCgroupFS describes the host's /sys/fs/cgroup: its entries and its mount's options.
func hostCgroupFS() string {
	var names []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		names = append(names, e.Name())
	}
	m, _ := harness.MountAt("/sys/fs/cgroup")
	return strings.Join(names, " ") + " | " + m.String()
}

// unitProps returns systemd's properties props of unit.
func unitProps(t *testing.T, sd *harness.Systemd, unit string, props ...string) map[string]string {
	t.Helper()
	p, err := sd.Properties(unit, props...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// noUnit checks that unit is unknown to systemd and that no hierarchy holds its cgroup
// (slicePath/unit under systemd's subtree).
func noUnit(t *testing.T, sd *harness.Systemd, slicePath, unit string) {
	t.Helper()
	if st := unitProps(t, sd, unit, "LoadState", "ActiveState"); st["ActiveState"] != "inactive" || st["LoadState"] != "not-found" {
		t.Errorf("unit %s after delete: %v, want not-found and inactive", unit, st)
	}
	for _, root := range sd.Hierarchies() {
		dir := filepath.Join(root, sd.Name(), slicePath, unit)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("leak: cgroup %s after delete (%v)", dir, err)
		}
	}
}

// The systemd cgroup driver (--systemd-cgroup), against a real systemd: the reference host
// and CI run none, so the test boots one as the init of its own pid, mount and cgroup
// namespaces (harness.BootSystemd) and drives kerr in there, as on a systemd host. Each
// container's cgroup is then a transient scope unit that systemd made; the limits are
// systemd's unit properties and in the cgroup files (read from inside the container);
// device rules survive a daemon-reload (systemd rewrites a unit's device cgroup from its
// properties); update, pause and resume go through the unit; kill -9 and delete leave no
// unit and no cgroup directory in any hierarchy; bad paths and annotations are refused in
// one line with nothing left.
func TestOCISystemdDriver(t *testing.T) {
	if resV2 {
		t.Skip("written for cgroup v1 and hybrid hosts (it reads v1 files); on a unified v2 host the library's unified systemd manager is used, untried here")
	}
	s := h.Begin(t)
	defer s.Done()
	sd := bootSystemd(t, s)
	e := newOCIEnvIn(t, s, nil, resEdit(func(r *specs.LinuxResources) {
		r.Memory = &specs.LinuxMemory{Limit: resI64(64 << 20)}
		r.Pids = &specs.LinuxPids{Limit: resI64(40)}
		r.CPU = &specs.LinuxCPU{Quota: resI64(50000), Period: resU64(100000)}
	}), sd)
	defer e.resCleanup()
	in := func(argv ...string) harness.Result {
		a := sd.Argv(argv...)
		return s.Exec(h.Root, harness.Opts{}, a[0], a[1:]...)
	}

	// The default path: kerr-ID.scope in system.slice, recorded in the state.
	id := resID("sd")
	unit := "kerr-" + id + ".scope"
	e.oci("create", "-b", e.bundle, id).OK(t)
	var st struct {
		CgroupDriver string `json:"cgroupDriver"`
		CgroupPath   string `json:"cgroupPath"`
	}
	if b, err := os.ReadFile(filepath.Join(e.root, id, "state.json")); err != nil || json.Unmarshal(b, &st) != nil ||
		st.CgroupDriver != "systemd" || st.CgroupPath != "system.slice:kerr:"+id {
		t.Errorf("state.json (%v): driver %q path %q, want systemd and system.slice:kerr:%s", err, st.CgroupDriver, st.CgroupPath, id)
	}
	want := map[string]string{"ActiveState": "active", "Slice": "system.slice", "ControlGroup": "/system.slice/" + unit,
		"MemoryLimit": "67108864", "TasksMax": "40", "CPUQuotaPerSecUSec": "500ms", "DevicePolicy": "strict",
		"Description": "kerr container " + id}
	for k, v := range unitProps(t, sd, unit, "ActiveState", "Slice", "ControlGroup", "MemoryLimit", "TasksMax", "CPUQuotaPerSecUSec", "DevicePolicy", "Description") {
		if want[k] != v {
			t.Errorf("created: unit property %s=%q, want %q", k, v, want[k])
		}
	}
	e.oci("start", id).OK(t)
	pid := e.waitStatus(t, id, "running").Pid
	// Every hierarchy, those systemd manages and the others, holds the process in the unit.
	cg := in("cat", "/proc/"+itoa(pid)+"/cgroup").OK(t).Stdout
	for l := range strings.SplitSeq(strings.TrimSpace(cg), "\n") {
		if !strings.HasSuffix(l, ":/system.slice/"+unit) {
			t.Errorf("container process cgroup line %q, want it in /system.slice/%s", l, unit)
		}
	}
	files := func(when string, want map[string]string) {
		t.Helper()
		var paths []string
		for p := range want {
			paths = append(paths, p)
		}
		got := e.resRead(t, id, paths...)
		for p, w := range want {
			if got[p] != w {
				t.Errorf("%s: %s inside the container is %q, want %q", when, p, got[p], w)
			}
		}
	}
	const mem, pids, quota, devs = "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
		"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/devices/devices.list"
	files("running", map[string]string{mem: "67108864", pids: "40", quota: "50000"})
	devList := e.resRead(t, id, devs)[devs]
	if strings.Contains(devList, "a *:* rwm") || !strings.Contains(devList, "c 1:3 rwm") {
		t.Errorf("devices.list inside the container: %q, want the default allow list only", devList)
	}
	// systemd re-applies every unit's cgroup settings on daemon-reload: the device rules
	// hold because systemd has them as the unit's DeviceAllow list.
	in("systemctl", "daemon-reload").OK(t)
	sorted := func(list string) string { l := strings.Split(list, ";"); slices.Sort(l); return strings.Join(l, ";") }
	if after := e.resRead(t, id, devs)[devs]; sorted(after) != sorted(devList) {
		t.Errorf("devices.list after daemon-reload: %q, was %q", after, devList)
	}
	// update goes to systemd and to the files.
	e.oci("update", "--memory", "134217728", "--pids-limit", "60", id).OK(t)
	files("updated", map[string]string{mem: "134217728", pids: "60"})
	if p := unitProps(t, sd, unit, "MemoryLimit", "TasksMax"); p["MemoryLimit"] != "134217728" || p["TasksMax"] != "60" {
		t.Errorf("unit properties after update: %v, want MemoryLimit=134217728 TasksMax=60", p)
	}
	// An update the kernel refuses (a memory limit below what tmpfs holds: EBUSY) leaves
	// the unit's property as it was too, so that a reload does not bring it back.
	e.oci("exec", id, "/bin/sh", "-c", "head -c 8388608 /dev/zero > /dev/shm/hold").OK(t)
	r := e.oci("update", "--memory", "4194304", id)
	if r.Fails(t, 1) && !strings.Contains(r.Stderr, "previous limits are back") {
		t.Errorf("an update below the memory in use: want the previous limits back:\n%s", r)
	}
	in("systemctl", "daemon-reload").OK(t)
	files("after a refused update and a reload", map[string]string{mem: "134217728"})
	if p := unitProps(t, sd, unit, "MemoryLimit"); p["MemoryLimit"] != "134217728" {
		t.Errorf("unit property after a refused update: %v, want MemoryLimit=134217728", p)
	}
	e.oci("exec", id, "/bin/rm", "/dev/shm/hold").OK(t)
	e.oci("pause", id).OK(t)
	e.waitStatus(t, id, "paused")
	e.oci("resume", id).OK(t)
	e.waitStatus(t, id, "running")
	// A second container on the same cgroupsPath is refused; the first one runs on.
	e.editSpec(t, func(sp *specs.Spec) { sp.Linux.CgroupsPath = "system.slice:kerr:" + id })
	r = e.oci("create", "-b", e.bundle, id+"-b")
	if r.Fails(t, 1) && !strings.Contains(r.Stderr, "already holds") {
		t.Errorf("a second container in %s: want the error to say the cgroup holds processes:\n%s", unit, r)
	}
	if _, err := os.Stat(filepath.Join(e.root, id+"-b")); !os.IsNotExist(err) {
		t.Errorf("a refused create left state (%v)", err)
	}
	if p := unitProps(t, sd, unit, "ActiveState"); p["ActiveState"] != "active" {
		t.Errorf("the first container's unit is %v after the refused create", p)
	}
	e.waitStatus(t, id, "running")
	// kill -9, then delete: nothing is left, in systemd or in any hierarchy.
	e.oci("kill", id, "KILL").OK(t)
	e.waitStatus(t, id, "stopped")
	// systemd has dropped the unit and the directories of its controllers; kill --all of
	// the stopped container finds nothing to signal, as runc's.
	e.oci("kill", "--all", id, "KILL").OK(t)
	e.oci("ps", id).OK(t)
	e.oci("delete", id).OK(t)
	noUnit(t, sd, "system.slice", unit)

	// A slice of one's own, a prefix, unit properties from annotations; kerr oci run's exit
	// code is the container's, and nothing is left after it.
	id2 := resID("sd2")
	e.editSpec(t, func(sp *specs.Spec) {
		sp.Linux.CgroupsPath = "kerr-e2e.slice:pfx:" + id2
		sp.Process.Args = []string{"/bin/sh", "-c", "cat /proc/self/cgroup; exit 3"}
		sp.Annotations = map[string]string{"org.systemd.property.CollectMode": "'inactive-or-failed'", "org.systemd.property.TimeoutStopSec": "uint64 7"}
		sp.Linux.Namespaces = slices.DeleteFunc(sp.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace })
	})
	r = e.oci("run", "-b", e.bundle, id2)
	if r.Code != 3 || !strings.Contains(r.Stdout, ":/kerr.slice/kerr-e2e.slice/pfx-"+id2+".scope") {
		t.Errorf("kerr oci run: want exit 3 and the process in /kerr.slice/kerr-e2e.slice/pfx-%s.scope:\n%s", id2, r)
	}
	noUnit(t, sd, "kerr.slice/kerr-e2e.slice", "pfx-"+id2+".scope")
	// The properties, on a created container.
	e.editSpec(t, func(sp *specs.Spec) { sp.Process.Args = []string{"/bin/true"} })
	e.oci("create", "-b", e.bundle, id2).OK(t)
	want = map[string]string{"CollectMode": "inactive-or-failed", "TimeoutStopUSec": "7s", "Slice": "kerr-e2e.slice"}
	for k, v := range unitProps(t, sd, "pfx-"+id2+".scope", "CollectMode", "TimeoutStopUSec", "Slice") {
		if want[k] != v {
			t.Errorf("annotated unit: %s=%q, want %q", k, v, want[k])
		}
	}
	e.oci("delete", "--force", id2).OK(t)
	noUnit(t, sd, "kerr.slice/kerr-e2e.slice", "pfx-"+id2+".scope")

	// Bad input: one line, exit 2, no state, no unit.
	for _, c := range []struct {
		name, path, annotation, wants string
	}{
		{"cgroupfs path", "/kerr/x", "", `not of the form slice:prefix:name`},
		{"not a slice", "system:kerr:x", "", `is not a slice name`},
		{"bad property", "", "org.systemd.property.bad_name", `not a systemd property name`},
	} {
		e.editSpec(t, func(sp *specs.Spec) {
			sp.Linux.CgroupsPath = c.path
			sp.Annotations = map[string]string{}
			if c.annotation != "" {
				sp.Annotations[c.annotation] = "true"
			}
		})
		bad := resID("sdbad")
		r := e.oci("create", "-b", e.bundle, bad)
		if r.Fails(t, 2) && !strings.Contains(r.Stderr, c.wants) {
			t.Errorf("%s: the error does not say %q:\n%s", c.name, c.wants, r)
		}
		if _, err := os.Stat(filepath.Join(e.root, bad)); !os.IsNotExist(err) {
			t.Errorf("%s: a refused create left state (%v)", c.name, err)
		}
		noUnit(t, sd, "system.slice", "kerr-"+bad+".scope")
	}
	e.resUmount(t)
}
