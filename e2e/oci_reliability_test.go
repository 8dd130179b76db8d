//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// Reliability of the OCI lifecycle: kill -9 of any kerr process at any point, then
// `delete --force`, leaves nothing; hundreds of cycles leave nothing.

// quiet runs `kerr oci --root ROOT args...` with stdio on /dev/null: without the monitor
// the container's process keeps create's stdio, which would hold the harness's pipes.
// Its stderr goes to a file, shown in the result when it fails.
func (e *ociEnv) quiet(t *testing.T, args ...string) harness.Result {
	t.Helper()
	errFile := filepath.Join(e.s.Dir(h.Root), "quiet.stderr")
	r := e.s.Exec(h.Root, harness.Opts{}, "/bin/sh", append([]string{"-c", `f=$1; shift; exec "$@" </dev/null >/dev/null 2>"$f"`, "sh",
		errFile, h.Kerr, "oci", "--root", e.root}, args...)...)
	if r.Code != 0 {
		b, _ := os.ReadFile(errFile)
		r.Stderr = string(b)
	}
	return r
}

// inCgroup lists the host's processes in the cgroup /kerr/ID of any hierarchy.
func inCgroup(id string) []string {
	var out []string
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err != nil {
			continue
		}
		if strings.Contains(string(b), ":/kerr/"+id+"\n") || strings.Contains(string(b), ":/kerr/"+id+"/") {
			comm, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
			out = append(out, d.Name()+" "+strings.TrimSpace(string(comm)))
		}
	}
	return out
}

// monitorPid reads the monitor's pid from the state file.
func (e *ociEnv) monitorPid(t *testing.T, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		MonitorPid int `json:"monitorPid"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.MonitorPid == 0 {
		t.Fatalf("no monitor pid in %s: %v", b, err)
	}
	return st.MonitorPid
}

// cleanAfterForce deletes id with --force and checks that nothing of it is left.
func (e *ociEnv) cleanAfterForce(t *testing.T, id string) {
	t.Helper()
	r := e.oci("delete", "--force", id)
	if r.Code != 0 {
		t.Errorf("delete --force after kill -9:\n%s", r)
	}
	// A container's process that never got its go-ahead exits by itself when its runtime
	// dies; give it a moment.
	var left []string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = inCgroup(id); len(left) == 0 {
			break
		}
	}
	for _, p := range left {
		t.Errorf("process of %s left: %s", id, p)
	}
	e.gone(t, id, 0)
}

func TestOCIKill9ThenDeleteForceLeavesNothing(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	delays := []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond}
	for _, monitor := range []bool{true, false} {
		for i, d := range delays {
			id := fmt.Sprintf("create-%v-%d", monitor, i)
			args := []string{"oci", "--root", e.root}
			if !monitor {
				args = append(args, "--no-monitor")
			}
			var r *harness.Running
			if monitor {
				r = s.Start(h.Root, harness.Opts{}, append(args, "create", "-b", e.bundle, id)...)
			} else {
				r = s.StartProg(h.Root, harness.Opts{}, "/bin/sh", append([]string{"-c", `exec "$@" </dev/null >/dev/null 2>&1`, "sh", h.Kerr},
					append(args, "create", "-b", e.bundle, id)...)...)
			}
			time.Sleep(d)
			_ = syscall.Kill(r.Pid(), syscall.SIGKILL)
			r.Wait()
			e.cleanAfterForce(t, id)
		}
	}
	// The monitor killed: the container runs on; delete --force still cleans.
	e.oci("create", "-b", e.bundle, "mon").OK(t)
	e.oci("start", "mon").OK(t)
	if err := syscall.Kill(e.monitorPid(t, "mon"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if st := e.state(t, "mon"); st.Status != "running" {
		t.Errorf("after the monitor's death the container is %s", st.Status)
	}
	e.cleanAfterForce(t, "mon")
	// The container's process killed while it waits for start, and while it runs.
	for _, started := range []bool{false, true} {
		id := fmt.Sprintf("proc-%v", started)
		e.oci("create", "-b", e.bundle, id).OK(t)
		if started {
			e.oci("start", id).OK(t)
		}
		if err := syscall.Kill(e.state(t, id).Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st := e.waitStatus(t, id, "stopped")
		if st.ExitStatus == nil || *st.ExitStatus != 137 {
			t.Errorf("exitStatus after kill -9: %v, want 137", st.ExitStatus)
		}
		e.cleanAfterForce(t, id)
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// 200 create/start/delete cycles, half of them without the monitor, leave nothing behind.
func TestOCI200CyclesLeaveNothing(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/true"}, nil)
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("cycle%d", i)
		if i%2 == 0 {
			e.oci("create", "-b", e.bundle, id).OK(t)
			e.oci("start", id).OK(t)
			if st := e.waitStatus(t, id, "stopped"); st.ExitStatus == nil || *st.ExitStatus != 0 {
				t.Fatalf("cycle %d: exitStatus %v", i, st.ExitStatus)
			}
		} else {
			e.quiet(t, "--no-monitor", "create", "-b", e.bundle, id).OK(t)
			e.quiet(t, "start", id).OK(t)
			e.waitStatus(t, id, "stopped")
		}
		e.oci("delete", id).OK(t)
	}
	if ds, _ := os.ReadDir(e.root); len(ds) != 0 {
		t.Errorf("state left in %s: %v", e.root, ds)
	}
	for _, c := range []string{"pids", "memory", "freezer", "devices", "cpu"} {
		ds, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", c, "kerr"))
		for _, d := range ds {
			if d.IsDir() && strings.HasPrefix(d.Name(), "cycle") {
				t.Errorf("cgroup left: %s/kerr/%s", c, d.Name())
			}
		}
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}
