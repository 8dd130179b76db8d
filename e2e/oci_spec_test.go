//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// Runtime-spec features end to end: hooks with the state on stdin, a user namespace with
// mappings, namespaces joined by path, --no-pivot.

// Every hook kind runs at its point with the state on stdin; a failing createRuntime hook
// fails create and leaves nothing.
func TestOCIHooksGetTheState(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := s.Mkdir(h.Root, "hooks")
	hook := func(kind string) specs.Hook {
		// The state goes to a file named after the kind; createContainer and startContainer
		// run in the container's mount namespace, where the host's /bin/sh is not the
		// image's: busybox sh is in both.
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > ` + filepath.Join(out, kind) + `.json`}}
	}
	e := newOCIEnv(t, s, []string{"/bin/true"}, func(sp *specs.Spec) {
		sp.Hooks = &specs.Hooks{
			CreateRuntime: []specs.Hook{hook("createRuntime")},
			Poststart:     []specs.Hook{hook("poststart")},
			Poststop:      []specs.Hook{hook("poststop")},
		}
		sp.Annotations = map[string]string{"org.example.e2e": "yes"}
	})
	e.oci("create", "-b", e.bundle, "c1").OK(t)
	pid := e.state(t, "c1").Pid
	e.oci("start", "c1").OK(t)
	e.waitStatus(t, "c1", "stopped")
	e.oci("delete", "c1").OK(t)
	for kind, status := range map[string]string{"createRuntime": "creating", "poststart": "running", "poststop": "stopped"} {
		b, err := os.ReadFile(filepath.Join(out, kind+".json"))
		if err != nil {
			t.Errorf("%s hook did not run: %v", kind, err)
			continue
		}
		var st specs.State
		if err := json.Unmarshal(b, &st); err != nil {
			t.Errorf("%s hook got %q: %v", kind, b, err)
			continue
		}
		if st.ID != "c1" || string(st.Status) != status || st.Bundle != e.bundle || st.Annotations["org.example.e2e"] != "yes" {
			t.Errorf("%s hook got state %+v, want status %s", kind, st, status)
		}
		if kind != "poststop" && st.Pid != pid {
			t.Errorf("%s hook got pid %d, want %d", kind, st.Pid, pid)
		}
	}

	e.editSpec(t, func(sp *specs.Spec) {
		sp.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook says no >&2; exit 3"}}}}
	})
	r := e.oci("create", "-b", e.bundle, "c2")
	r.Fails(t, 1)
	if !strings.Contains(r.Stderr, "createRuntime") || !strings.Contains(r.Stderr, "hook says no") {
		t.Errorf("the hook's failure is not reported: %q", r.Stderr)
	}
	e.gone(t, "c2", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// A container in a user namespace: root inside is an unprivileged uid outside.
func TestOCIUserNamespace(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, func(sp *specs.Spec) {
		sp.Process.User = specs.User{UID: 0, GID: 0}
		sp.Process.Cwd = "/"
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		sp.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		sp.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	})
	// As with runc, the container's root (uid 100000 on the host) must reach its rootfs:
	// open the test's own directories on the way to it for others to traverse.
	for d := e.bundle; strings.HasPrefix(d, h.Tmp+"/"); d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.oci("create", "-b", e.bundle, "u1").OK(t)
	e.oci("start", "u1").OK(t)
	pid := e.waitStatus(t, "u1", "running").Pid
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "\nUid:\t100000\t100000\t100000\t100000\n") {
		t.Errorf("the container's root is not uid 100000 on the host:\n%s", st)
	}
	r := e.oci("exec", "u1", "/bin/sh", "-c", "id -u; cat /proc/self/uid_map").OK(t)
	if f := strings.Fields(r.Stdout); len(f) != 4 || f[0] != "0" || f[1] != "0" || f[2] != "100000" || f[3] != "65536" {
		t.Errorf("inside: %q, want uid 0 and the map 0 100000 65536", r.Stdout)
	}
	e.oci("delete", "--force", "u1").OK(t)
	e.gone(t, "u1", pid)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// Namespaces given by path are joined: here the network and uts namespaces of a process
// the test starts.
func TestOCIJoinsNamespacesByPath(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	holder := exec.Command("/bin/sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	ns := "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/"
	want, _ := os.Readlink(ns + "net")
	e := newOCIEnv(t, s, nil, func(sp *specs.Spec) {
		sp.Hostname = ""
		for i := range sp.Linux.Namespaces {
			switch sp.Linux.Namespaces[i].Type {
			case specs.NetworkNamespace:
				sp.Linux.Namespaces[i].Path = ns + "net"
			case specs.UTSNamespace:
				sp.Linux.Namespaces[i].Path = ns + "uts"
			}
		}
	})
	e.oci("create", "-b", e.bundle, "j1").OK(t)
	pid := e.state(t, "j1").Pid
	if got, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net"); got != want {
		t.Errorf("container's net namespace %s, want the holder's %s", got, want)
	}
	// exec joins the same ones.
	r := e.oci("exec", "j1", "/bin/sh", "-c", "readlink /proc/self/ns/net").OK(t)
	if strings.TrimSpace(r.Stdout) != want {
		t.Errorf("exec'd process is in %q, want %s", r.Stdout, want)
	}
	e.oci("delete", "--force", "j1").OK(t)
	e.gone(t, "j1", pid)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// --no-pivot enters the rootfs with MS_MOVE and chroot.
func TestOCINoPivot(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "cat /etc/hostname 2>/dev/null; ls /"}, nil)
	log := filepath.Join(s.Dir(h.Root), "out.log")
	e.oci("create", "--no-pivot", "-b", e.bundle, "--log-path", log, "np").OK(t)
	e.oci("start", "np").OK(t)
	st := e.waitStatus(t, "np", "stopped")
	if st.ExitStatus == nil || *st.ExitStatus != 0 {
		b, _ := os.ReadFile(log)
		t.Errorf("exit status %v; output:\n%s", st.ExitStatus, b)
	}
	e.oci("delete", "np").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// consoleReceiver listens on a unix socket as containerd's shim does and returns the
// first pty master sent to it, with its name.
type consoleReceiver struct {
	path string
	ln   *net.UnixListener
	got  chan consoleMsg
}

type consoleMsg struct {
	name   string
	master *os.File
	err    error
}

func newConsoleReceiver(t *testing.T, dir string) *consoleReceiver {
	t.Helper()
	c := &consoleReceiver{path: filepath.Join(dir, "console.sock"), got: make(chan consoleMsg, 1)}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	c.ln = ln
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			c.got <- consoleMsg{err: err}
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 4096), make([]byte, 4096)
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			c.got <- consoleMsg{err: err}
			return
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			c.got <- consoleMsg{err: fmt.Errorf("control messages %v: %v", msgs, err)}
			return
		}
		fds, err := syscall.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			c.got <- consoleMsg{err: fmt.Errorf("fds %v: %v", fds, err)}
			return
		}
		c.got <- consoleMsg{name: string(buf[:n]), master: os.NewFile(uintptr(fds[0]), "master")}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

// readUntil reads the pty master until want shows up (or a timeout).
func readUntil(t *testing.T, f *os.File, want string) string {
	t.Helper()
	var got strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for !strings.Contains(got.String(), want) {
			n, err := f.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		f.Close()
		<-done
	}
	return got.String()
}

// process.terminal: with the monitor, which logs what the terminal shows; without it,
// through a console socket (the pty master and its name, as runc sends them); exec --tty
// with a console socket and with kerr's own proxy.
func TestOCITerminal(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "tty; stat -c '%F %t' /dev/console; trap 'exit 143' TERM; while :; do sleep 1 & wait $!; done"},
		func(sp *specs.Spec) { sp.Process.Terminal = true })
	e.oci("create", "-b", e.bundle, "mon").OK(t)
	e.oci("start", "mon").OK(t)
	e.waitStatus(t, "mon", "running")
	log := filepath.Join(e.root, "mon", "container.log")
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, _ = os.ReadFile(log); strings.Contains(string(b), "character special file 88") {
			break
		}
	}
	if !strings.Contains(string(b), "stdout F /dev/pts/0") || !strings.Contains(string(b), "character special file 88") {
		t.Errorf("the container's terminal (tty, and /dev/console a pty of major 136 = 0x88): log\n%s", b)
	}
	// exec --tty with kerr's proxy: output through a pty (CR LF), exit status through.
	r := s.RunWith(h.Root, harness.Opts{Stdin: "echo hello\nexit 3\n"}, "oci", "--root", e.root, "exec", "--tty", "mon", "/bin/sh")
	if r.Code != 3 || !strings.Contains(r.Stdout, "hello\r\n") {
		t.Errorf("exec --tty:\n%s", r)
	}
	e.oci("delete", "--force", "mon").OK(t)

	// Without the monitor: a console socket is required, and gets the master.
	if r = e.quiet(t, "--no-monitor", "create", "-b", e.bundle, "nomon"); r.Code != 2 {
		t.Errorf("a terminal without the monitor or a console socket: exit %d, want 2", r.Code)
	}
	recv := newConsoleReceiver(t, s.Dir(h.Root))
	e.quiet(t, "--no-monitor", "create", "--console-socket", recv.path, "-b", e.bundle, "nomon").OK(t)
	m := <-recv.got
	if m.err != nil {
		t.Fatal(m.err)
	}
	defer m.master.Close()
	if m.name != "/dev/pts/0" {
		t.Errorf("console socket got the name %q, want /dev/pts/0", m.name)
	}
	e.quiet(t, "start", "nomon").OK(t)
	if out := readUntil(t, m.master, "88"); !strings.Contains(out, "/dev/pts/0") {
		t.Errorf("the container's terminal showed %q", out)
	}
	recv2 := newConsoleReceiver(t, s.Mkdir(h.Root, "exec"))
	e.quiet(t, "exec", "--tty", "--detach", "--console-socket", recv2.path, "nomon", "/bin/sh", "-c", "echo from-exec; sleep 1").OK(t)
	m2 := <-recv2.got
	if m2.err != nil {
		t.Fatal(m2.err)
	}
	if out := readUntil(t, m2.master, "from-exec"); !strings.Contains(out, "from-exec") {
		t.Errorf("exec's terminal showed %q", out)
	}
	m2.master.Close()
	e.oci("delete", "--force", "nomon").OK(t)
	e.gone(t, "nomon", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// create --sync-socket: the socket gets the state at each change, one connection each.
func TestOCISyncSocket(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sleep", "0.3"}, nil)
	path := filepath.Join(s.Dir(h.Root), "sync.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan specs.State, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			var st specs.State
			if json.NewDecoder(conn).Decode(&st) == nil {
				got <- st
			}
			conn.Close()
		}
	}()
	e.oci("create", "--sync-socket", path, "-b", e.bundle, "s1").OK(t)
	e.oci("start", "s1").OK(t)
	e.waitStatus(t, "s1", "stopped")
	var statuses []string
	for len(statuses) < 3 {
		select {
		case st := <-got:
			if st.ID != "s1" {
				t.Errorf("sync socket got the state of %q", st.ID)
			}
			statuses = append(statuses, string(st.Status))
		case <-time.After(5 * time.Second):
			t.Fatalf("sync socket got %v, want created, running, stopped", statuses)
		}
	}
	if strings.Join(statuses, " ") != "created running stopped" {
		t.Errorf("sync socket got %v, want created, running, stopped", statuses)
	}
	e.oci("delete", "s1").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// The monitor's attach socket: a client gets the container's output and feeds its stdin.
// It is a SOCK_SEQPACKET socket: a hello ('H', then 'f' to follow), then 'I'+data for
// stdin; output comes as '1'+data (stdout) and '2'+data (stderr).
func TestOCIAttachSocket(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "while read l; do echo \"$l\"; echo \"err $l\" >&2; done"}, nil)
	e.oci("create", "-b", e.bundle, "a1").OK(t)
	st := e.state(t, "a1")
	e.oci("start", "a1").OK(t)
	conn, err := net.Dial("unixpacket", st.AttachSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range []string{"Hf", "Ithrough the attach socket\n"} {
		if _, err := conn.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := map[byte]string{}
	buf := make([]byte, 64<<10)
	for got['1'] == "" || got['2'] == "" {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			t.Fatalf("attach socket: %v after %q", err, got)
		}
		got[buf[0]] += string(buf[1:n])
	}
	if got['1'] != "through the attach socket\n" || got['2'] != "err through the attach socket\n" {
		t.Errorf("attach socket: stdout %q, stderr %q", got['1'], got['2'])
	}
	// A connection without a hello is closed by the monitor.
	if bad, err := net.Dial("unixpacket", st.AttachSocket); err == nil {
		_, _ = bad.Write([]byte("Ino hello\n"))
		_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := bad.Read(buf); n != 0 || err == nil || os.IsTimeout(err) {
			t.Errorf("a client without hello read %q, %v; want the connection closed", buf[:n], err)
		}
		bad.Close()
	}
	// kerr oci attach: the same through the command, ended by the container's exit.
	att := s.Start(h.Root, harness.Opts{Stdin: "through kerr oci attach\n"}, "oci", "--root", e.root, "attach", "a1")
	time.Sleep(time.Second)
	e.oci("kill", "-s", "KILL", "a1").OK(t)
	if r := att.Wait(); r.Code != 0 || !strings.Contains(r.Stdout, "through kerr oci attach\n") || !strings.Contains(r.Stderr, "err through kerr oci attach\n") {
		t.Errorf("kerr oci attach:\n%s", r)
	}
	e.waitStatus(t, "a1", "stopped")
	// kerr oci logs: what the monitor logged, -f returns once the container is stopped.
	for _, args := range [][]string{{"logs", "a1"}, {"logs", "-f", "a1"}} {
		r := e.oci(args...).OK(t)
		// The default format is the CRI log format: TIME STREAM F|P LINE.
		if !strings.Contains(r.Stdout, " stdout F through the attach socket") || !strings.Contains(r.Stdout, " stdout F through kerr oci attach") {
			t.Errorf("kerr oci %v:\n%s", args, r.Stdout)
		}
	}
	e.oci("attach", "a1").Fails(t, 9)
	e.oci("delete", "a1").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// kerr-runc: runc's command line and runc's process model, no kerr process left after
// create (the state has no monitor), the exit status unknown to state.
func TestKerrRuncLeavesNoMonitor(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sleep", "0.2"}, nil)
	runc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	r := s.Exec(h.Root, harness.Opts{}, "/bin/sh", "-c", `exec "$@" </dev/null >/dev/null 2>&1`, "sh",
		runc, "--root", e.root, "create", "--bundle", e.bundle, "--pid-file", filepath.Join(e.root, "pid"), "r1")
	r.OK(t)
	b, err := os.ReadFile(filepath.Join(e.root, "r1", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "monitorPid") {
		t.Errorf("kerr-runc create left a monitor: %s", b)
	}
	pid, err := os.ReadFile(filepath.Join(e.root, "pid"))
	if err != nil || len(pid) == 0 || strings.ContainsAny(string(pid), "\n ") {
		t.Errorf("pid file %q (%v): want digits only", pid, err)
	}
	s.Exec(h.Root, harness.Opts{}, runc, "--root", e.root, "start", "r1").OK(t)
	e.waitStatus(t, "r1", "stopped")
	s.Exec(h.Root, harness.Opts{}, runc, "--root", e.root, "delete", "r1").OK(t)
	// An error goes to --log as a JSON line too.
	logFile := filepath.Join(s.Dir(h.Root), "runc.log")
	r = s.Exec(h.Root, harness.Opts{}, runc, "--root", e.root, "--log", logFile, "--log-format", "json", "state", "nosuch")
	if r.Code != 4 {
		t.Errorf("state of an unknown id: exit %d, want 4", r.Code)
	}
	var rec struct{ Level, Msg, Time string }
	if lb, err := os.ReadFile(logFile); err != nil || json.Unmarshal(lb, &rec) != nil || rec.Level != "error" || !strings.Contains(rec.Msg, "nosuch") {
		t.Errorf("--log got %q (%v)", lb, err)
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// pause freezes the container (state says paused), resume thaws it; update changes a
// running container's limits in its cgroup.
func TestOCIPauseResumeUpdate(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, nil, nil)
	e.oci("create", "-b", e.bundle, "p1").OK(t)
	e.oci("resume", "p1").Fails(t, 9)
	e.oci("start", "p1").OK(t)
	e.waitStatus(t, "p1", "running")
	e.oci("pause", "p1").OK(t)
	if st := e.state(t, "p1"); st.Status != "paused" {
		t.Errorf("after pause: %s", st.Status)
	}
	freezer, _ := os.ReadFile("/sys/fs/cgroup/freezer/kerr/p1/freezer.state")
	if strings.TrimSpace(string(freezer)) != "FROZEN" {
		t.Errorf("freezer.state %q, want FROZEN", freezer)
	}
	e.oci("pause", "p1").Fails(t, 9)
	e.oci("resume", "p1").OK(t)
	e.waitStatus(t, "p1", "running")

	e.oci("update", "--pids-limit", "42", "--memory", "134217728", "p1").OK(t)
	if b, _ := os.ReadFile("/sys/fs/cgroup/pids/kerr/p1/pids.max"); strings.TrimSpace(string(b)) != "42" {
		t.Errorf("pids.max %q after update, want 42", b)
	}
	if b, _ := os.ReadFile("/sys/fs/cgroup/memory/kerr/p1/memory.limit_in_bytes"); strings.TrimSpace(string(b)) != "134217728" {
		t.Errorf("memory.limit_in_bytes %q after update", b)
	}
	e.oci("update", "p1").Fails(t, 2)
	// ps: the container's host pids; events --stats: its cgroup statistics.
	pid := e.state(t, "p1").Pid
	r := e.oci("ps", "--format", "json", "p1").OK(t)
	var pids []int
	if err := json.Unmarshal([]byte(r.Stdout), &pids); err != nil || !slices.Contains(pids, pid) {
		t.Errorf("ps --format json: %q (%v), want a list with %d", r.Stdout, err, pid)
	}
	r = e.oci("list", "--format", "json").OK(t)
	var list []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list) != 1 || list[0].ID != "p1" || list[0].Status != "running" {
		t.Errorf("list --format json: %q (%v)", r.Stdout, err)
	}
	r = e.oci("features").OK(t)
	var feat struct {
		OCIVersionMax string
		Hooks         []string
		Linux         struct{ Namespaces []string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &feat); err != nil || feat.OCIVersionMax == "" || len(feat.Hooks) != 6 || !slices.Contains(feat.Linux.Namespaces, "user") {
		t.Errorf("features: %q (%v)", r.Stdout, err)
	}
	r = e.oci("events", "--stats", "p1").OK(t)
	var ev struct {
		Type string
		ID   string
		Data struct {
			PidsStats struct{ Current uint64 } `json:"pids_stats"`
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &ev); err != nil || ev.Type != "stats" || ev.ID != "p1" || ev.Data.PidsStats.Current == 0 {
		t.Errorf("events --stats: %q (%v)", r.Stdout, err)
	}
	e.oci("kill", "p1").OK(t)
	e.waitStatus(t, "p1", "stopped")
	e.oci("update", "--pids-limit", "5", "p1").Fails(t, 9)
	e.oci("delete", "p1").OK(t)
	e.gone(t, "p1", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}
