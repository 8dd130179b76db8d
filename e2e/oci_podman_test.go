//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// kerr-runc as podman's runtime (podman 4.3 and its conmon, Debian 12's), configured for a
// host without systemd: cgroupfs, events in a file, no network, and limits it may grant
// (no rlimit above the hard limit: root here lacks CAP_SYS_RESOURCE, and podman asks for
// 1048576 open files and processes unless told). Everything of podman's (storage, run
// dirs, networks, events) lives in the session's directory; the container cgroups under a
// parent of the test's own.

type podmanEnv struct {
	s            *harness.Session
	bin          string
	dir          string
	env          []string
	cgroupParent string
	runRoot      string
	madeDirs     []string // made by podman outside the test's dirs, innermost first
	image        string
}

// newPodman writes podman's configuration and loads the busybox OCI archive, or skips the
// test when podman is not installed.
func newPodman(t *testing.T, s *harness.Session) *podmanEnv {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman is not installed (Debian: apt-get install podman; scripts/install-deps.sh installs it)")
	}
	p := &podmanEnv{s: s, bin: bin, dir: s.Mkdir(h.Root, "podman")}
	p.cgroupParent = fmt.Sprintf("/kerr-e2e-podman-%d", os.Getpid())
	var lim unix.Rlimit
	nproc := uint64(4096)
	if unix.Getrlimit(unix.RLIMIT_NPROC, &lim) == nil && lim.Max < nproc {
		nproc = lim.Max
	}
	nofile := uint64(1024)
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Max < nofile {
		nofile = lim.Max
	}
	// Podman's run root must stay short: under a longer one (here ~55 characters) conmon's
	// attach socket cannot be made, and `podman run` waits 20 s for an exit it never sees.
	run, err := os.MkdirTemp("", "kerr-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p.runRoot = run
	// Rootful podman keeps netavark's run dir at /run/containers/networks whatever it is told;
	// the test removes what it made there.
	for _, d := range []string{"/run/containers", "/run/containers/networks"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			p.madeDirs = append([]string{d}, p.madeDirs...)
		}
	}
	d := p.dir
	conf := fmt.Sprintf(`[containers]
netns = "none"
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%s/events.log"
tmp_dir = "%s/tmp"
volume_path = "%s/volumes"
runtime = "kerr"

[engine.runtimes]
kerr = ["%s"]

[network]
network_config_dir = "%s/networks"
`, nofile, nofile, nproc, nproc, d, run, d, filepath.Join(h.Prefix, "bin", "kerr-runc"), d)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = \"%s\"\ngraphroot = \"%s/graph\"\n", run, d)
	for name, text := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{"CONTAINERS_CONF=" + filepath.Join(d, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(d, "storage.conf")}
	t.Cleanup(p.cleanup)

	r := p.run("load", "-i", h.Images.OCIArchive).OK(t)
	m := regexp.MustCompile(`Loaded image(?:\(s\))?: *(\S+)`).FindStringSubmatch(r.Stdout + r.Stderr)
	if m == nil {
		t.Fatalf("podman load named no image:\n%s", r)
	}
	p.image = "localhost/kerr-e2e-busybox:latest"
	p.run("tag", m[1], p.image).OK(t)
	return p
}

func (p *podmanEnv) run(args ...string) harness.Result {
	return p.runIn("", args...)
}

func (p *podmanEnv) runIn(stdin string, args ...string) harness.Result {
	return p.s.Exec(h.Root, harness.Opts{Env: p.env, Stdin: stdin}, p.bin, args...)
}

// cleanup removes what podman left: containers, the cgroups under the test's parent
// (conmon's included), podman's storage (vfs: plain directories).
func (p *podmanEnv) cleanup() {
	rm := exec.Command(p.bin, "rm", "--all", "--force")
	rm.Env = append(p.s.Env(h.Root), p.env...)
	_ = rm.Run()
	for _, hier := range cgroupHierarchies() {
		removeCgroupTree(filepath.Join(hier, p.cgroupParent))
	}
	for _, m := range mountsBelow(p.runRoot) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(p.runRoot)
	for _, d := range p.madeDirs {
		_ = os.Remove(d) // only if empty
	}
}

// mountsBelow lists the mount points under dir, innermost first.
func mountsBelow(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[1], dir+"/") {
			out = append([]string{f[1]}, out...)
		}
	}
	return out
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 and v2).
func cgroupHierarchies() []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, f[1])
		}
	}
	return out
}

// removeCgroupTree removes an (empty) cgroup and the ones below it.
func removeCgroupTree(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}

// cgroupsLeft lists the cgroups still under the test's parent.
func (p *podmanEnv) cgroupsLeft() []string {
	var left []string
	for _, hier := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(hier, p.cgroupParent), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != filepath.Join(hier, p.cgroupParent) && filepath.Base(path) != "conmon" {
				left = append(left, path)
			}
			return nil
		})
	}
	return left
}

// podman run --rm, -i, -d with exec, stop and rm, and -it from a terminal, with kerr-runc
// as the runtime; runc first as the control (a host where podman cannot run runc's
// containers cannot tell anything about kerr's).
func TestPodman(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	p := newPodman(t, s)
	cg := "--cgroup-parent=" + p.cgroupParent
	if runc, err := exec.LookPath("runc"); err == nil {
		r := p.run("--runtime", runc, "run", "--rm", cg, p.image)
		if r.Code != 0 {
			t.Skipf("podman cannot run a container with runc on this host either:\n%s", r)
		}
	}
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	rt := []string{"--runtime", kerrRunc}

	// The image's entrypoint and cmd, as its user (nobody), then stdout, stderr and the exit
	// code apart.
	r := p.run(append(rt, "run", "--rm", cg, p.image)...)
	if r.Code != 0 || r.Stdout != "FOO=bar ARGS=hello world\n" {
		t.Errorf("podman run --rm of the image's entrypoint:\n%s", r)
	}
	r = p.run(append(rt, "run", "--rm", cg, "--user", "0", "--entrypoint", "", p.image,
		"sh", "-c", "echo out; echo err >&2; ulimit -n; cat /proc/self/oom_score_adj; exit 3")...)
	if r.Code != 3 || r.Stdout != "out\n1024\n0\n" || r.Stderr != "err\n" {
		t.Errorf("podman run --rm: want exit 3, out/1024/0 on stdout and err on stderr:\n%s", r)
	}
	r = p.runIn("abc\n", append(rt, "run", "--rm", "-i", cg, "--user", "0", "--entrypoint", "", p.image,
		"sh", "-c", "read x; echo got $x")...)
	if r.Code != 0 || r.Stdout != "got abc\n" {
		t.Errorf("podman run -i:\n%s", r)
	}

	// Detached, then exec, stop, rm; the container's process is conmon's child.
	r = p.run(append(rt, "run", "-d", cg, "--user", "0", "--entrypoint", "", p.image,
		"sh", "-c", `trap "exit 143" TERM; while :; do sleep 1 & wait $!; done`)...).OK(t)
	id := strings.TrimSpace(r.Stdout)
	pid, _ := strconv.Atoi(strings.TrimSpace(p.run("inspect", "--format", "{{.State.Pid}}", id).OK(t).Stdout))
	if comm := parentComm(pid); comm != "conmon" {
		t.Errorf("the container's process %d has parent %q, want conmon", pid, comm)
	}
	r = p.run(append(rt, "exec", id, "sh", "-c", "echo in-exec; exit 4")...)
	if r.Code != 4 || r.Stdout != "in-exec\n" {
		t.Errorf("podman exec:\n%s", r)
	}
	p.run(append(rt, "stop", "--time", "20", id)...).OK(t)
	if st := strings.TrimSpace(p.run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", id).OK(t).Stdout); st != "exited 143" {
		t.Errorf("after podman stop: %q, want exited 143", st)
	}
	p.run(append(rt, "rm", id)...).OK(t)

	// -it from a terminal: the container's terminal, what we type reaches it.
	out, code := onTerminal(t, s, p.env, "hello\n", p.bin, append(rt, "run", "--rm", "-it", cg, "--user", "0", "--entrypoint", "", p.image,
		"sh", "-c", "tty; read x; echo got $x; exit 5")...)
	if code != 5 || !strings.Contains(out, "/dev/pts/0\r\n") || !strings.Contains(out, "got hello\r\n") {
		t.Errorf("podman run -it: exit %d, terminal showed %q", code, out)
	}

	if r := p.run("ps", "--all", "--quiet"); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("containers left: %q", r.Stdout)
	}
	if left := p.cgroupsLeft(); len(left) > 0 {
		t.Errorf("container cgroups left: %q", left)
	}
}

// parentComm is the name of pid's parent.
func parentComm(pid int) string {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return ""
	}
	comm, _ := os.ReadFile("/proc/" + f[1] + "/comm")
	return strings.TrimSpace(string(comm))
}

// onTerminal runs prog (podman, ctr) with env added on a pty of the test's own as its
// controlling terminal, types input once the container's terminal shows up, and returns
// what the terminal showed and prog's exit code.
func onTerminal(t *testing.T, s *harness.Session, env []string, input, prog string, args ...string) (string, int) {
	t.Helper()
	master, slave := openPty(t, 24, 80)
	cmd := exec.Command(prog, args...)
	cmd.Env = append(s.Env(h.Root), env...)
	cmd.Dir = s.Dir(h.Root)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	out := readUntil(t, master, "/dev/pts/")
	if _, err := master.WriteString(input); err != nil {
		t.Errorf("typing: %v", err)
	}
	code := waitExit(cmd, 60*time.Second)
	// The rest of the output, until the pty has no other end left (EIO).
	rest := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		rest <- b.String()
	}()
	select {
	case s := <-rest:
		out += s
	case <-time.After(5 * time.Second):
		master.Close()
		out += <-rest
	}
	return out, code
}
