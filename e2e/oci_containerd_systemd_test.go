//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// containerd on a systemd host with its runc shim's systemd cgroup option (SystemdCgroup =
// true in a CRI config; `ctr run --runc-systemd-cgroup --cgroup slice:prefix:name` here),
// kerr-runc as the shim's runc: containerd, ctr and the shim run in the namespaces of a
// systemd the test boots (harness.BootSystemd). Each container is then a scope unit that
// systemd made, with the limit ctr asked for as its property; a killed and deleted task
// leaves no unit. runc first, as the control.
func TestContainerdSystemdCgroup(t *testing.T) {
	if resV2 {
		t.Skip("written for cgroup v1 and hybrid hosts (it reads the v1 memory file)")
	}
	s := h.Begin(t)
	defer s.Done()
	sd := bootSystemd(t, s) // its cleanup is registered first: it runs after containerd's
	c := newContainerdIn(t, s, containerdNS(), "", sd)
	run := func(runtime, id string, flags []string, cmd ...string) harness.Result {
		flags = append([]string{"--runc-systemd-cgroup", "--cgroup", "kerr-e2e.slice:ctr:" + id}, flags...)
		return c.run(runtime, flags, id, cmd...)
	}
	runtimes := []string{filepath.Join(h.Prefix, "bin", "kerr-runc")}
	if runc, err := exec.LookPath("runc"); err == nil {
		runtimes = append([]string{runc}, runtimes...)
	}
	for _, runtime := range runtimes {
		name := filepath.Base(runtime)
		t.Run(name, func(t *testing.T) {
			// The process's cgroup, as the container sees it (no cgroup namespace in ctr's
			// default spec): the unit in the slice, in every hierarchy.
			id := "sd-" + name + "-1"
			r := run(runtime, id, []string{"--rm"}, "cat", "/proc/self/cgroup")
			unit := "ctr-" + id + ".scope"
			if r.Code != 0 || !strings.Contains(r.Stdout, "name=systemd:/kerr.slice/kerr-e2e.slice/"+unit) ||
				!strings.Contains(r.Stdout, "memory:/kerr.slice/kerr-e2e.slice/"+unit) {
				t.Fatalf("ctr run --rm: want the process in /kerr.slice/kerr-e2e.slice/%s:\n%s", unit, r)
			}
			if p := unitProps(t, sd, unit, "LoadState"); p["LoadState"] != "not-found" {
				t.Errorf("unit %s after run --rm: %v, want not-found", unit, p)
			}
			// A limit from ctr, in systemd's properties and in the cgroup; kill and delete.
			id = "sd-" + name + "-2"
			unit = "ctr-" + id + ".scope"
			run(runtime, id, []string{"-d", "--memory-limit", "67108864"}, "sleep", "600").OK(t)
			if p := unitProps(t, sd, unit, "ActiveState", "MemoryLimit", "Slice"); p["ActiveState"] != "active" || p["MemoryLimit"] != "67108864" || p["Slice"] != "kerr-e2e.slice" {
				t.Errorf("unit %s of a running task: %v, want active, MemoryLimit=67108864, Slice=kerr-e2e.slice", unit, p)
			}
			a := sd.Argv("cat", "/sys/fs/cgroup/memory/kerr.slice/kerr-e2e.slice/"+unit+"/memory.limit_in_bytes")
			if got := strings.TrimSpace(s.Exec(h.Root, harness.Opts{}, a[0], a[1:]...).OK(t).Stdout); got != "67108864" {
				t.Errorf("memory.limit_in_bytes of %s: %q, want 67108864", unit, got)
			}
			c.ctr("tasks", "kill", "--signal", "SIGKILL", id).OK(t)
			c.ctr("tasks", "delete", id).OK(t)
			c.ctr("containers", "rm", id).OK(t)
			if p := unitProps(t, sd, unit, "LoadState"); p["LoadState"] != "not-found" {
				t.Errorf("unit %s after delete: %v, want not-found", unit, p)
			}
		})
	}
}
