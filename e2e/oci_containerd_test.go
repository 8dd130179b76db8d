//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// kerr-runc under containerd (Debian 12's 1.6) and its runc shim (io.containerd.runc.v2,
// BinaryName through `ctr run --runc-binary`), driven with ctr: a containerd of the test's
// own (its config, root, state and socket in a short temp dir, no CRI plugin), the busybox
// OCI archive imported, containers in a namespace of the test's (so their cgroups are under
// /NAMESPACE, removed at the end).

type containerdEnv struct {
	s        *harness.Session
	dir      string
	ns       string
	sock     string
	daemon   *exec.Cmd
	done     chan struct{}
	madeDirs []string
	image    string
	// cgroup is where the containers' cgroups go (default: /NAMESPACE, ctr's choice);
	// beforeStop run before containerd is stopped (crictl's cleanup).
	cgroup     string
	beforeStop []func()
	// sd, when set, is the systemd that containerd and ctr run under (in its namespaces).
	sd *harness.Systemd
}

// argv is argv as run by the test: in systemd's namespaces when containerd runs there.
func (c *containerdEnv) argv(argv ...string) []string {
	if c.sd != nil {
		return c.sd.Argv(argv...)
	}
	return argv
}

func (c *containerdEnv) cgroupParent() string {
	if c.cgroup != "" {
		return c.cgroup
	}
	return "/" + c.ns
}

// newContainerd starts containerd (with extra appended to its config), or skips the test
// when it is not installed.
func newContainerd(t *testing.T, s *harness.Session, ns, extra string) *containerdEnv {
	t.Helper()
	return newContainerdIn(t, s, ns, extra, nil)
}

// newContainerdIn is newContainerd with containerd (and ctr) in sd's namespaces when sd is
// not nil: a containerd on a systemd host.
func newContainerdIn(t *testing.T, s *harness.Session, ns, extra string, sd *harness.Systemd) *containerdEnv {
	t.Helper()
	for _, prog := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install containerd; scripts/install-deps.sh installs it)", prog)
		}
	}
	// The socket's path must fit a sockaddr_un: a short dir of its own, not the session's.
	dir, err := os.MkdirTemp("", "kerr-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerdEnv{s: s, dir: dir, ns: ns, sock: filepath.Join(dir, "c.sock"), done: make(chan struct{}), sd: sd}
	// containerd 1.6 keeps shim sockets in /run/containerd/s and ctr its fifos in
	// /run/containerd/fifo whatever it is told (ctr's --fifo-dir is used below); the test
	// removes what it made there.
	for _, d := range []string{"/run/containerd", "/run/containerd/s", "/run/containerd/fifo"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.madeDirs = append([]string{d}, c.madeDirs...)
		}
	}
	t.Cleanup(func() { c.cleanup(t) })
	disabled := `"io.containerd.grpc.v1.cri", `
	if extra != "" {
		disabled = ""
	}
	conf := fmt.Sprintf(`version = 2
root = "%[1]s/root"
state = "%[1]s/state"
disabled_plugins = [%[2]s"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "%[1]s/c.sock"

[ttrpc]
  address = "%[1]s/c.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
`, dir, disabled) + strings.ReplaceAll(extra, "DIR", dir)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "fifo"), 0o700); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	argv := c.argv("containerd", "--config", filepath.Join(dir, "config.toml"))
	c.daemon = exec.Command(argv[0], argv[1:]...)
	c.daemon.Env = s.Env(h.Root)
	c.daemon.Stdout, c.daemon.Stderr = log, log
	c.daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.daemon.Wait(); close(c.done) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err := net.Dial("unix", c.sock); err == nil {
			conn.Close()
			break
		}
		select {
		case <-c.done:
			t.Fatalf("containerd exited at start:\n%s", tailFile(log.Name()))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen within 20 s:\n%s", tailFile(log.Name()))
		}
	}
	c.ctr("images", "import", "--snapshotter", "native", "--base-name", "localhost/kerr-e2e-busybox", h.Images.OCIArchive).OK(t)
	c.image = "localhost/kerr-e2e-busybox:latest"
	return c
}

// containerdNS is a containerd namespace of this test process's, so that the cgroups of
// its containers (/NAMESPACE/ID with ctr) are its own.
func containerdNS() string { return fmt.Sprintf("kerr-e2e-%d", os.Getpid()) }

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// ctrArgs is ctr's command line for args, against our containerd and namespace.
func (c *containerdEnv) ctrArgs(args ...string) []string {
	return append([]string{"--address", c.sock, "--namespace", c.ns}, args...)
}

func (c *containerdEnv) ctr(args ...string) harness.Result {
	argv := c.argv(append([]string{"ctr"}, c.ctrArgs(args...)...)...)
	return c.s.Exec(h.Root, harness.Opts{}, argv[0], argv[1:]...)
}

// run is `ctr run` of the image with runtime as the runc shim's binary.
func (c *containerdEnv) run(runtime string, flags []string, id string, cmd ...string) harness.Result {
	args := append([]string{"run", "--snapshotter", "native", "--fifo-dir", filepath.Join(c.dir, "fifo"),
		"--runc-binary", runtime, "--runc-root", filepath.Join(c.dir, "runc")}, flags...)
	args = append(append(args, c.image, id), cmd...)
	return c.ctr(args...)
}

// cleanup removes every container of the namespace, stops containerd and removes its dirs,
// the namespace's cgroups and what containerd made under /run/containerd.
func (c *containerdEnv) cleanup(t *testing.T) {
	if c.daemon != nil && c.daemon.Process != nil {
		ctr := func(args ...string) string {
			argv := c.argv(append([]string{"ctr"}, c.ctrArgs(args...)...)...)
			out, _ := exec.Command(argv[0], argv[1:]...).Output()
			return string(out)
		}
		for _, f := range c.beforeStop {
			f()
		}
		for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
			ctr("tasks", "kill", "--signal", "SIGKILL", id)
			ctr("tasks", "delete", "--force", id)
		}
		for _, id := range strings.Fields(ctr("containers", "ls", "-q")) {
			ctr("containers", "rm", id)
		}
		// The process group: containerd, or in systemd's namespaces nsenter and containerd
		// (nsenter passes no signal on).
		pgid := c.daemon.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case <-c.done:
		case <-time.After(time.Until(deadline)):
		}
		if syscall.Kill(-pgid, 0) == nil {
			t.Errorf("containerd did not stop on SIGTERM")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-c.done
		}
	}
	for _, m := range mountsBelow(c.dir) {
		t.Errorf("leak: mount %s left by containerd", m)
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("removing %s: %v", c.dir, err)
	}
	for _, hier := range cgroupHierarchies() {
		removeCgroupTree(filepath.Join(hier, c.cgroupParent()))
	}
	for _, d := range c.madeDirs {
		_ = os.Remove(d) // only if empty
	}
}

// ctr run --rm, run -d with task exec, ps, pause, resume, kill and delete, run -t from a
// terminal, and a missing executable, with kerr-runc as the shim's runc; runc first as the
// control.
func TestContainerd(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	c := newContainerd(t, s, containerdNS(), "")
	if runc, err := exec.LookPath("runc"); err == nil {
		if r := c.run(runc, []string{"--rm"}, "control-runc"); r.Code != 0 || r.Stdout != "FOO=bar ARGS=hello world\n" {
			t.Skipf("containerd cannot run a container with runc on this host either:\n%s", r)
		}
	}
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")

	// The image's entrypoint, then stdout, stderr and the exit code apart.
	if r := c.run(kerrRunc, []string{"--rm"}, "k1"); r.Code != 0 || r.Stdout != "FOO=bar ARGS=hello world\n" {
		t.Errorf("ctr run --rm of the image's entrypoint:\n%s", r)
	}
	r := c.run(kerrRunc, []string{"--rm"}, "k2", "sh", "-c", "echo out; echo err >&2; ulimit -n; cat /proc/self/oom_score_adj; exit 3")
	if r.Code != 3 || !strings.HasPrefix(r.Stdout, "out\n1024\n") || r.Stderr != "err\n" {
		t.Errorf("ctr run --rm: want exit 3, out and 1024 on stdout, err on stderr:\n%s", r)
	} else if adj, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(r.Stdout, "out\n1024\n"))); adj < 0 {
		t.Errorf("the container got a negative oom_score_adj: %s", r.Stdout)
	}

	// Detached: the container's process is the shim's child; exec, ps, pause, resume, kill.
	c.run(kerrRunc, []string{"-d"}, "k3", "sh", "-c", `trap "exit 143" TERM; while :; do sleep 1 & wait $!; done`).OK(t)
	pid := c.taskPid(t, "k3", "RUNNING")
	if comm := parentComm(pid); comm != "containerd-shim" {
		t.Errorf("the container's process %d has parent %q, want the shim (containerd-shim)", pid, comm)
	}
	r = c.ctr("tasks", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "--exec-id", "e1", "k3", "sh", "-c", "echo in-exec; exit 4")
	if r.Code != 4 || r.Stdout != "in-exec\n" {
		t.Errorf("ctr task exec:\n%s", r)
	}
	if r := c.ctr("tasks", "ps", "k3").OK(t); !strings.Contains(r.Stdout, itoa(pid)) {
		t.Errorf("ctr task ps does not list the container's process %d:\n%s", pid, r)
	}
	c.ctr("tasks", "pause", "k3").OK(t)
	c.taskPid(t, "k3", "PAUSED")
	c.ctr("tasks", "resume", "k3").OK(t)
	c.taskPid(t, "k3", "RUNNING")
	c.ctr("tasks", "kill", "k3").OK(t)
	c.taskPid(t, "k3", "STOPPED")
	if r := c.ctr("tasks", "delete", "k3").OK(t); !strings.Contains(r.Stderr, "exit code 143") {
		t.Errorf("ctr task delete does not report the exit status 143 (SIGTERM's trap):\n%s", r)
	}
	c.ctr("containers", "rm", "k3").OK(t)

	// -t from a terminal.
	out, code := onTerminal(t, s, nil, "hello\n", "ctr", c.ctrArgs("run", "--rm", "-t", "--snapshotter", "native",
		"--fifo-dir", filepath.Join(c.dir, "fifo"), "--runc-binary", kerrRunc, "--runc-root", filepath.Join(c.dir, "runc"),
		c.image, "k4", "sh", "-c", "tty; read x; echo got $x; exit 5")...)
	if code != 5 || !strings.Contains(out, "/dev/pts/0") || !strings.Contains(out, "got hello") {
		t.Errorf("ctr run -t: exit %d, the terminal showed %q", code, out)
	}

	// A missing executable: create fails with kerr-runc's message, which containerd shows.
	r = c.run(kerrRunc, []string{"--rm"}, "k5", "/no/such/binary")
	if r.Code == 0 || !strings.Contains(r.Stderr, "OCI runtime create failed") || !strings.Contains(r.Stderr, "no such file") {
		t.Errorf("ctr run of a missing executable:\n%s", r)
	}
	c.ctr("containers", "rm", "k5")

	if r := c.ctr("containers", "ls", "-q").OK(t); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("containers left: %q", r.Stdout)
	}
	var left []string
	for _, hier := range cgroupHierarchies() {
		ents, _ := os.ReadDir(filepath.Join(hier, c.ns))
		for _, e := range ents {
			if e.IsDir() {
				left = append(left, filepath.Join(hier, c.ns, e.Name()))
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("container cgroups left: %q", left)
	}
}

// taskPid waits until `ctr task ls` shows id with status want, and returns its pid.
func (c *containerdEnv) taskPid(t *testing.T, id, want string) int {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("ctr", c.ctrArgs("tasks", "ls")...).Output()
		last = string(out)
		for _, l := range strings.Split(last, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id && f[2] == want {
				pid, _ := strconv.Atoi(f[1])
				return pid
			}
		}
	}
	t.Fatalf("task %s is not %s:\n%s", id, want, last)
	return 0
}
