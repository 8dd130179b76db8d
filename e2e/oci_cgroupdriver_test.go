//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// --systemd-cgroup, the global flag of kerr oci and kerr-runc (runc's, which containerd and
// podman pass), on a host that does not run systemd: create and run refuse it in one line
// (exit 2) before anything exists: no state directory, no cgroup, no pid file. Without it
// the cgroupfs driver is recorded in the state, and later commands go by the state
// whatever their flags say. (TestOCISystemdDriver has the driver at work, under a systemd
// the test boots.)
func TestOCISystemdCgroupRefused(t *testing.T) {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		t.Skip("this host runs systemd: --systemd-cgroup is not refused here")
	}
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/true"}, nil)
	defer e.resCleanup()
	want := "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use the cgroupfs driver (the default)\n"
	runc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	pidFile := filepath.Join(s.Dir(h.Root), "pid")
	for i, c := range []struct {
		name   string
		prefix string // of the error line
		run    func(id string) harness.Result
	}{
		{"kerr oci create", "kerr: ", func(id string) harness.Result {
			return s.Run(h.Root, "oci", "--systemd-cgroup", "--root", e.root, "create", "-b", e.bundle, "--pid-file", pidFile, id)
		}},
		{"kerr oci run", "kerr: ", func(id string) harness.Result {
			return s.Run(h.Root, "oci", "--root", e.root, "--systemd-cgroup", "run", "-b", e.bundle, id)
		}},
		{"kerr oci run --no-monitor", "kerr: ", func(id string) harness.Result {
			return s.Run(h.Root, "oci", "--systemd-cgroup", "--root", e.root, "run", "--no-monitor", "-b", e.bundle, id)
		}},
		{"kerr-runc create", "kerr-runc: ", func(id string) harness.Result {
			return s.Exec(h.Root, harness.Opts{}, runc, "--systemd-cgroup", "--root", e.root, "create", "--bundle", e.bundle, "--pid-file", pidFile, id)
		}},
		{"kerr-runc run", "kerr-runc: ", func(id string) harness.Result {
			return s.Exec(h.Root, harness.Opts{}, runc, "--root", e.root, "--systemd-cgroup", "run", "--bundle", e.bundle, id)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := resID("sd" + strconv.Itoa(i))
			r := c.run(id)
			if r.Code != 2 || r.Stderr != c.prefix+want || r.Stdout != "" {
				t.Errorf("want exit 2 and the one line %q:\n%s", c.prefix+want, r)
			}
			if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
				t.Errorf("a refused create left state for %s: %v", id, err)
			}
			if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
				t.Errorf("a refused create left a pid file: %v", err)
			}
			resNoCgroup(t, id)
		})
	}
	if ents, err := os.ReadDir(e.root); err == nil && len(ents) > 0 {
		t.Errorf("the state root holds %d entries after refused creates", len(ents))
	}

	// cgroupfs, recorded; a later command's --systemd-cgroup does not change the driver.
	id := resID("sdfs")
	e.oci("create", "-b", e.bundle, id).OK(t)
	b, err := os.ReadFile(filepath.Join(e.root, id, "state.json"))
	var st struct {
		CgroupDriver string `json:"cgroupDriver"`
	}
	if err != nil || json.Unmarshal(b, &st) != nil || st.CgroupDriver != "cgroupfs" {
		t.Errorf("state.json (%v): cgroupDriver %q, want cgroupfs:\n%s", err, st.CgroupDriver, b)
	}
	s.Run(h.Root, "oci", "--systemd-cgroup", "--root", e.root, "update", "--pids-limit", "9", id).OK(t)
	if b, _ := os.ReadFile("/sys/fs/cgroup/pids/kerr/" + id + "/pids.max"); !resV2 && string(b) != "9\n" {
		t.Errorf("pids.max %q after an update given --systemd-cgroup, want 9", b)
	}
	s.Run(h.Root, "oci", "--systemd-cgroup", "--root", e.root, "start", id).OK(t)
	e.waitStatus(t, id, "stopped")
	s.Run(h.Root, "oci", "--systemd-cgroup", "--root", e.root, "delete", id).OK(t)
	e.gone(t, id, 0)
	resNoCgroup(t, id)
	e.resUmount(t)
}

// Two containers on one cgroupsPath (cgroupfs): the second create is refused, saying the
// cgroup holds processes, and its cleanup leaves the first container running in its
// cgroup (a failed create must not kill what it did not make); delete --force of the
// refused id finds nothing to undo.
func TestOCISharedCgroupsPathRefused(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	path := "/kerr-e2e-shared-" + strconv.Itoa(os.Getpid())
	e := newOCIEnv(t, s, nil, func(sp *specs.Spec) { sp.Linux.CgroupsPath = path })
	defer e.resCleanup()
	id := resID("shared")
	pid := e.resStart(t, id)
	r := e.oci("create", "-b", e.bundle, id+"-b")
	if r.Fails(t, 1) && !strings.Contains(r.Stderr, "already holds") {
		t.Errorf("the error does not say the cgroup holds processes:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(e.root, id+"-b")); !os.IsNotExist(err) {
		t.Errorf("a refused create left state (%v)", err)
	}
	if st := e.state(t, id); st.Status != "running" || st.Pid != pid {
		t.Errorf("after the refused create the first container is %s (pid %d, was %d)", st.Status, st.Pid, pid)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/pids" + path + "/cgroup.procs"); !resV2 && (err != nil || !strings.Contains(string(b), strconv.Itoa(pid))) {
		t.Errorf("the first container's process is no longer in %s (%v): %q", path, err, b)
	}
	e.oci("delete", "--force", id).OK(t)
	e.gone(t, id, pid)
	for _, m := range []string{"/sys/fs/cgroup/pids" + path, "/sys/fs/cgroup" + path} {
		if _, err := os.Stat(m); err == nil && (m != "/sys/fs/cgroup"+path || resV2) {
			t.Errorf("leak: cgroup %s after delete", m)
		}
	}
	e.resUmount(t)
}
