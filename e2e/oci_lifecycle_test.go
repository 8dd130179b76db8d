//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// The OCI lifecycle: `kerr oci create|start|state|exec|kill|delete` on a bundle that
// `kerr oci mount` made from the busybox SIF.

// ociState is what `kerr oci state` prints.
type ociState struct {
	OCIVersion    string            `json:"ociVersion"`
	ID            string            `json:"id"`
	Status        string            `json:"status"`
	Pid           int               `json:"pid"`
	Bundle        string            `json:"bundle"`
	Annotations   map[string]string `json:"annotations"`
	CreatedAt     int64             `json:"createdAt"`
	Created       string            `json:"created"`
	Rootfs        string            `json:"rootfs"`
	ControlSocket string            `json:"controlSocket"`
	AttachSocket  string            `json:"attachSocket"`
	ExitStatus    *int              `json:"exitStatus"`
	OOMKilled     bool              `json:"oomKilled"`
}

// ociEnv is a state root of the test's own and the bundle it made.
type ociEnv struct {
	s      *harness.Session
	sif    string
	bundle string
	root   string
	// sd, when set, is the systemd that kerr runs under (in its namespaces), with
	// --systemd-cgroup (oci_systemd_test.go).
	sd *harness.Systemd
}

// newOCIEnv mounts the busybox SIF as a bundle and sets its process to args (a shell that
// stops on SIGTERM when args is nil), through edit for other changes.
func newOCIEnv(t *testing.T, s *harness.Session, args []string, edit func(*specs.Spec)) *ociEnv {
	t.Helper()
	return newOCIEnvIn(t, s, args, edit, nil)
}

// newOCIEnvIn is newOCIEnv with kerr run in sd's namespaces when sd is not nil (the bundle
// is mounted there too).
func newOCIEnvIn(t *testing.T, s *harness.Session, args []string, edit func(*specs.Spec), sd *harness.Systemd) *ociEnv {
	t.Helper()
	e := &ociEnv{s: s, sif: pullBusyboxSIF(t, s), sd: sd}
	e.bundle = filepath.Join(s.Dir(h.Root), "bundle")
	e.root = filepath.Join(s.Dir(h.Root), "state")
	e.kerr("oci", "mount", e.sif, e.bundle).OK(t)
	if args == nil {
		args = []string{"/bin/sh", "-c", "trap 'exit 143' TERM; while :; do sleep 1 & wait $!; done"}
	}
	e.editSpec(t, func(sp *specs.Spec) {
		sp.Process.Args = args
		if edit != nil {
			edit(sp)
		}
	})
	return e
}

func (e *ociEnv) editSpec(t *testing.T, edit func(*specs.Spec)) {
	t.Helper()
	p := filepath.Join(e.bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	edit(&sp)
	if b, err = json.MarshalIndent(&sp, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// oci runs `kerr oci --root ROOT args...` as root (with --systemd-cgroup under systemd).
func (e *ociEnv) oci(args ...string) harness.Result {
	if e.sd != nil {
		return e.kerr(append([]string{"oci", "--systemd-cgroup", "--root", e.root}, args...)...)
	}
	return e.kerr(append([]string{"oci", "--root", e.root}, args...)...)
}

// kerr runs the installed kerr as root, in systemd's namespaces when the env has one.
func (e *ociEnv) kerr(args ...string) harness.Result {
	if e.sd == nil {
		return e.s.Run(h.Root, args...)
	}
	a := e.sd.Argv(append([]string{filepath.Join(h.Prefix, "bin", "kerr")}, args...)...)
	return e.s.Exec(h.Root, harness.Opts{}, a[0], a[1:]...)
}

func (e *ociEnv) state(t *testing.T, id string) ociState {
	t.Helper()
	r := e.oci("state", id).OK(t)
	var st ociState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("state output %q: %v", r.Stdout, err)
	}
	return st
}

// waitStatus polls state until the container has status want.
func (e *ociEnv) waitStatus(t *testing.T, id, want string) ociState {
	t.Helper()
	var st ociState
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st = e.state(t, id); st.Status == want {
			return st
		}
	}
	log, _ := os.ReadFile(filepath.Join(e.root, id, "container.log"))
	t.Fatalf("container %s is %s, want %s; its log:\n%s", id, st.Status, want, log)
	return st
}

// gone checks that nothing of container id is left: state dir, cgroup, processes.
func (e *ociEnv) gone(t *testing.T, id string, pid int) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("state dir of %s after delete: %v", id, err)
	}
	for _, c := range []string{"pids", "memory", "cpu", "freezer", "devices"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "kerr", id)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s/kerr/%s after delete: %v", c, id, err)
		}
	}
	if pid > 0 {
		if _, err := os.Stat("/proc/" + itoa(pid)); err == nil {
			t.Errorf("container process %d still exists after delete", pid)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The walkthrough, with the state checked at each step.
func TestOCILifecycleWalkthrough(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	const id = "busybox1"

	e.oci("create", "-b", e.bundle, id).OK(t)
	st := e.state(t, id)
	if st.Status != "created" || st.ID != id || st.Pid <= 0 || st.Bundle != e.bundle || st.OCIVersion == "" {
		t.Errorf("state after create: %+v", st)
	}
	if st.CreatedAt <= 0 || time.Since(time.Unix(0, st.CreatedAt)) > time.Minute {
		t.Errorf("createdAt %d is not a recent time in ns", st.CreatedAt)
	}
	if st.ControlSocket != filepath.Join(e.root, id, "control.sock") {
		t.Errorf("controlSocket %q", st.ControlSocket)
	}
	if _, err := os.Stat(st.ControlSocket); err != nil {
		t.Errorf("control socket: %v", err)
	}
	if st.AttachSocket != filepath.Join(e.root, id, "attach.sock") {
		t.Errorf("attachSocket %q", st.AttachSocket)
	}
	pid := st.Pid
	if comm, _ := os.ReadFile("/proc/" + itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) != "starter" {
		t.Errorf("a created container's process is %q, want the starter waiting for start", comm)
	}

	if r := e.oci("start", id); r.Code != 0 {
		log, _ := os.ReadFile(filepath.Join(e.root, id, "container.log"))
		t.Fatalf("start failed:\n%s\ncontainer log:\n%s", r, log)
	}
	st = e.waitStatus(t, id, "running")
	if st.Pid != pid {
		t.Errorf("pid changed from %d to %d at start", pid, st.Pid)
	}

	r := e.oci("exec", id, "/bin/sh", "-c", "echo hi")
	r.OK(t)
	if r.Stdout != "hi\n" {
		t.Errorf("exec printed %q, want %q", r.Stdout, "hi\n")
	}
	// exec passes the payload's exit status through.
	if r := e.oci("exec", id, "/bin/sh", "-c", "exit 7"); r.Code != 7 {
		t.Errorf("exec of 'exit 7' exited %d", r.Code)
	}

	e.oci("kill", id).OK(t)
	st = e.waitStatus(t, id, "stopped")
	if st.ExitStatus == nil || *st.ExitStatus != 143 {
		t.Errorf("exitStatus after kill: %v, want 143", st.ExitStatus)
	}
	e.oci("delete", id).OK(t)
	e.gone(t, id, pid)
	e.oci("state", id).Fails(t, 4)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
	released(t, e.sif, s.Base())
}

// The container's process runs with what config.json says.
func TestOCIProcessSettings(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	script := `echo host=$(hostname); echo user=$(id -u):$(id -g); echo cwd=$(pwd); echo env=$KERR_E2E; ` +
		`echo nofile=$(ulimit -n); echo pid=$$; ` +
		`(echo x > /rofile) 2>/dev/null && echo rw=yes || echo rw=no; ` +
		`echo keys=$(wc -c < /proc/keys 2>/dev/null || echo none); ` +
		`grep CapEff /proc/self/status`
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", script}, func(sp *specs.Spec) {
		sp.Hostname = "kerr-e2e"
		sp.Process.User = specs.User{UID: 1000, GID: 1000}
		sp.Process.Cwd = "/tmp"
		sp.Process.Env = append(sp.Process.Env, "KERR_E2E=yes")
		sp.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 123, Hard: 456}}
		// A user other than root keeps capabilities across execve only as ambient ones.
		chown := []string{"CAP_CHOWN"}
		sp.Process.Capabilities = &specs.LinuxCapabilities{Bounding: chown, Effective: chown, Permitted: chown, Inheritable: chown, Ambient: chown}
		sp.Root.Readonly = true
	})
	log := filepath.Join(s.Dir(h.Root), "out.log")
	e.oci("create", "-b", e.bundle, "--log-path", log, "--log-format", "json", "c1").OK(t)
	e.oci("start", "c1").OK(t)
	st := e.waitStatus(t, "c1", "stopped")
	if st.ExitStatus == nil || *st.ExitStatus != 0 {
		t.Errorf("exitStatus %v", st.ExitStatus)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct{ Time, Stream, Log string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time == "" || rec.Stream == "" {
			t.Fatalf("log line %q is not a json record: %v", line, err)
		}
		out.WriteString(rec.Log)
	}
	for _, want := range []string{"host=kerr-e2e\n", "user=1000:1000\n", "cwd=/tmp\n", "env=yes\n", "nofile=123\n",
		"pid=1\n", "rw=no\n", "keys=0\n", "CapEff:\t0000000000000001\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("container output lacks %q:\n%s", want, out.String())
		}
	}
	e.oci("delete", "c1").OK(t)
	e.gone(t, "c1", st.Pid)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// Several containers from one bundle, and the errors of the lifecycle.
func TestOCILifecycleErrors(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	e.oci("create", "-b", e.bundle, "a").OK(t)
	e.oci("create", "-b", e.bundle, "b").OK(t)
	e.oci("create", "-b", e.bundle, "a").Fails(t, 3)

	for _, bad := range []string{"../x", "a/b", "..", "-x"} {
		for _, cmd := range []string{"state", "start", "delete"} {
			if bad == "-x" {
				continue
			}
			e.oci(cmd, bad).Fails(t, 2)
		}
	}
	for _, cmd := range []string{"state", "start", "kill", "delete"} {
		e.oci(cmd, "nosuch").Fails(t, 4)
	}
	e.oci("delete", "--force", "nosuch").OK(t)
	e.oci("kill", "a", "NOSUCHSIG").Fails(t, 2)

	e.oci("start", "a").OK(t)
	e.waitStatus(t, "a", "running")
	e.oci("start", "a").Fails(t, 9)
	e.oci("delete", "a").Fails(t, 9)
	e.oci("kill", "-s", "KILL", "a").OK(t)
	e.waitStatus(t, "a", "stopped")
	e.oci("exec", "a", "/bin/true").Fails(t, 9)
	e.oci("kill", "a").Fails(t, 9)
	e.oci("kill", "--all", "a", "TERM").OK(t)
	e.oci("delete", "a").OK(t)
	// A created container is not stopped: the spec says delete fails (runc lets it go).
	e.oci("delete", "b").Fails(t, 9)
	e.oci("delete", "--force", "b").OK(t)

	// config.json missing, or invalid.
	empty := s.Mkdir(h.Root, "empty")
	e.oci("create", "-b", empty, "c").Fails(t, 4)
	e.editSpec(t, func(sp *specs.Spec) {
		sp.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Soft: 1, Hard: 1}}
	})
	r := e.oci("create", "-b", e.bundle, "c")
	r.Fails(t, 2)
	if !strings.Contains(r.Stderr, "RLIMIT_BOGUS") {
		t.Errorf("error does not name the bad setting: %q", r.Stderr)
	}
	e.editSpec(t, func(sp *specs.Spec) { sp.Process.Rlimits = nil; sp.Process.Args = []string{"/no/such/binary"} })
	r = e.oci("create", "-b", e.bundle, "c")
	r.Fails(t, 1)
	if !strings.Contains(r.Stderr, "no such file") {
		t.Errorf("a missing executable is not reported as such at create: %q", r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(e.root, "c")); !os.IsNotExist(err) {
		t.Errorf("a failed create left its state: %v", err)
	}
	e.gone(t, "a", 0)
	e.gone(t, "b", 0)
	e.gone(t, "c", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}
