//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
	"github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/rpc/procstat"
)

// instanceRecordDir is where kerr keeps profile p's instance records on this host.
func instanceRecordDir(t *testing.T, p harness.Profile) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return native.InstanceDir(p.Home, host)
}

func listInstances(t *testing.T, s *harness.Session, p harness.Profile) []native.Instance {
	t.Helper()
	r := s.Run(p, "instance", "list", "--json").OK(t)
	var out struct{ Instances []native.Instance }
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("instance list --json: %v\n%s", err, r)
	}
	return out.Instances
}

// Instances: start, list, exec into one (its pid namespace, its filesystem), stop; nothing
// left after.
func TestHPCInstanceLifecycle(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	s.Run(h.User, "instance", "start", "-B", s.Dir(h.User)+":/work", img, "web").OK(t)
	defer s.Run(h.User, "instance", "stop", "--all")
	list := listInstances(t, s, h.User)
	if len(list) != 1 || list[0].Name != "web" || list[0].Image != img || list[0].UID != int(h.User.UID) {
		t.Fatalf("instance list: %+v", list)
	}
	if r := s.Run(h.User, "instance", "list").OK(t); !strings.Contains(r.Stdout, "web") {
		t.Errorf("instance list: %s", r)
	}
	// The same name twice: refused while it runs.
	s.Run(h.User, "instance", "start", img, "web").Fails(t, 3)
	// exec instance://: the instance's pid namespace (its init is pid 1) and binds.
	if err := os.WriteFile(filepath.Join(s.Dir(h.User), "seen"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.Run(h.User, "exec", "instance://web", "/bin/sh", "-c", "cat /work/seen; ps -o pid,comm | sed -n 2p; id -u; grep NoNewPrivs /proc/self/status").OK(t)
	f := strings.Fields(r.Stdout)
	if len(f) < 8 || strings.Join(f[:3], " ") != "from the host" || f[3] != "1" || f[5] != itoa(int(h.User.UID)) || f[7] != "1" {
		t.Errorf("exec instance://web: %s", r)
	}
	// Something started in it stays there: a second exec sees the first's file in /tmp.
	s.Run(h.User, "exec", "instance://web", "/bin/sh", "-c", "echo x > /work/mark").OK(t)
	if r := s.Run(h.User, "exec", "instance://web", "/bin/sh", "-c", "exit 9"); r.Code != 9 {
		t.Errorf("exit status through instance://: %s", r)
	}
	s.Run(h.User, "instance", "stop", "web").OK(t)
	if list := listInstances(t, s, h.User); len(list) != 0 {
		t.Errorf("after stop: %+v", list)
	}
	s.Run(h.User, "exec", "instance://web", "true").Fails(t, 4)
	s.Run(h.User, "instance", "stop", "web").Fails(t, 4)
	if _, err := os.Stat(filepath.Join(instanceRecordDir(t, h.User), "web.json")); !os.IsNotExist(err) {
		t.Errorf("record after stop: %v", err)
	}
}

// CVE-2019-11328: an instance record is the user's file. A forged one naming a process
// that is not the user's instance (root's process, root's instance) gets nothing: the
// starter checks the process before it opens any of its namespaces.
func TestHPCInstanceForgedRecordIsRefused(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	// Root's instance, in root's records.
	s.Run(h.Root, "instance", "start", rootSIF(t, s), "rootinst").OK(t)
	defer s.Run(h.Root, "instance", "stop", "--all")
	rootList := listInstances(t, s, h.Root)
	if len(rootList) != 1 {
		t.Fatalf("root's instances: %+v", rootList)
	}
	dir := instanceRecordDir(t, h.User)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Dir(filepath.Dir(dir)), int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chown(d, int(h.User.UID), int(h.User.GID)); err != nil {
			t.Fatal(err)
		}
	}
	self, err := procstat.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]native.Instance{
		// Root's instance, with the user's uid written in.
		"rootinst": {Name: "rootinst", Image: "/x", PID: rootList[0].PID, StartTime: rootList[0].StartTime, UID: int(h.User.UID), Namespaces: []string{"mnt", "pid"}},
		// This test's own process (root's, not a starter).
		"testproc": {Name: "testproc", Image: "/x", PID: os.Getpid(), StartTime: self, UID: int(h.User.UID), Namespaces: []string{"mnt", "pid", "net"}},
		// Right pid, wrong start time.
		"stale": {Name: "stale", Image: "/x", PID: rootList[0].PID, StartTime: rootList[0].StartTime + 1, UID: int(h.User.UID), Namespaces: []string{"mnt"}},
	}
	for name, rec := range forged {
		b, _ := json.Marshal(rec)
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(h.User.UID), int(h.User.GID)); err != nil {
			t.Fatal(err)
		}
		r := s.Run(h.User, "exec", "instance://"+name, "/bin/sh", "-c", "echo joined; id")
		if r.Code == 0 || strings.Contains(r.Stdout, "joined") {
			t.Errorf("forged record %s: joined:\n%s", name, r)
		}
		if r.Code != 5 && r.Code != 4 {
			t.Errorf("forged record %s: exit %d, want 5 (denied) or 4 (not running):\n%s", name, r.Code, r)
		}
	}
	// And stop cannot touch root's instance through a forged record.
	s.Run(h.User, "instance", "stop", "rootinst")
	time.Sleep(200 * time.Millisecond)
	if !procstat.Running(rootList[0].PID, rootList[0].StartTime) {
		t.Errorf("root's instance was stopped through the user's forged record")
	}
	s.Run(h.Root, "instance", "stop", "rootinst").OK(t)
	for name := range forged {
		os.Remove(filepath.Join(dir, name+".json"))
	}
}
