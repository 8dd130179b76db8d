//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// kerr oci run with the monitor: stdout and stderr apart, stdin's end passed on, the exit
// status as kerr's, the log written in the chosen format, nothing left after.
func TestOCIRunWithMonitor(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "echo out; echo err >&2; while read l; do echo \"got $l\"; done; printf 'no newline'; exit 7"}, nil)
	log := filepath.Join(s.Dir(h.Root), "run.log")
	r := s.RunWith(h.Root, harness.Opts{Stdin: "a\nb\n"}, "oci", "--root", e.root, "run", "--log-path", log, "--log-format", "json", "-b", e.bundle, "r1")
	if r.Code != 7 || r.Stdout != "out\ngot a\ngot b\nno newline" || r.Stderr != "err\n" {
		t.Errorf("run: want exit 7, stdout %q, stderr %q; got\n%s", "out\ngot a\ngot b\nno newline", "err\n", r)
	}
	e.gone(t, "r1", 0)
	// The json log: one object per line; a line's text ends with \n unless it is partial.
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var rec struct{ Time, Stream, Log string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec.Time); err != nil {
			t.Errorf("log line %q: time: %v", line, err)
		}
		switch rec.Stream {
		case "stdout":
			out.WriteString(rec.Log)
		case "stderr":
			errs.WriteString(rec.Log)
		default:
			t.Errorf("log line %q: stream %q", line, rec.Stream)
		}
	}
	if out.String() != "out\ngot a\ngot b\nno newline" || errs.String() != "err\n" {
		t.Errorf("json log: stdout %q, stderr %q", out.String(), errs.String())
	}

	// Killed from outside: 128+9, and the state says so until the end.
	e.editSpec(t, func(sp *specs.Spec) { sp.Process.Args = []string{"/bin/sleep", "60"} })
	run := s.Start(h.Root, harness.Opts{}, "oci", "--root", e.root, "run", "-b", e.bundle, "r2")
	e.waitRunning(t, "r2", run)
	e.oci("kill", "-s", "KILL", "r2").OK(t)
	if r := run.Wait(); r.Code != 137 {
		t.Errorf("run of a container killed by SIGKILL: exit %d, want 137\n%s", r.Code, r)
	}
	e.gone(t, "r2", 0)

	// Our SIGTERM reaches the container's process (a shell that exits 3 on it).
	e.editSpec(t, func(sp *specs.Spec) {
		sp.Process.Args = []string{"/bin/sh", "-c", "trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 1 & wait $!; done"}
	})
	run = s.Start(h.Root, harness.Opts{}, "oci", "--root", e.root, "run", "-b", e.bundle, "r3")
	e.waitRunning(t, "r3", run)
	time.Sleep(300 * time.Millisecond) // the trap is set once "ready" is printed
	if err := run.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := run.Wait(); r.Code != 3 || r.Stdout != "ready\nterm\n" {
		t.Errorf("run passed SIGTERM on: want exit 3 and ready, term; got\n%s", r)
	}
	e.gone(t, "r3", 0)

	// Bad detach keys: a usage error before anything is made.
	e.oci("run", "--detach-keys", "ctrl-1", "-b", e.bundle, "r4").Fails(t, 2)
	e.gone(t, "r4", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// waitRunning waits until the container id that run (in the background) makes is running.
func (e *ociEnv) waitRunning(t *testing.T, id string, run *harness.Running) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r := e.s.Run(h.Root, "oci", "--root", e.root, "state", id)
		if r.Code == 0 && strings.Contains(r.Stdout, `"status": "running"`) {
			return
		}
	}
	t.Fatalf("container %s is not running; run:\n%s", id, run.Wait())
}

// openPty opens a pty pair of the test's own, rows x cols.
func openPty(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := os.OpenFile("/dev/pts/"+itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(sl.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); sl.Close() })
	return m, sl
}

// startOnPty runs the installed kerr with args on the pty slave as its controlling terminal.
func startOnPty(t *testing.T, s *harness.Session, slave *os.File, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(h.Kerr, args...)
	cmd.Env = s.Env(h.Root)
	cmd.Dir = s.Dir(h.Root)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// waitExit waits for cmd at most d and returns its exit code (-1: still running, killed).
func waitExit(cmd *exec.Cmd, d time.Duration) int {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return -1
	}
}

// kerr oci attach to a container with a terminal, from a terminal: typing reaches the
// container's, the container's terminal takes our size and follows it when it changes, the
// detach keys leave the container running, and a second attach finds it as it was.
func TestOCIAttachTerminalResizeDetach(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "while read l; do case $l in size) stty size;; *) echo \"got $l\";; esac; done"},
		func(sp *specs.Spec) { sp.Process.Terminal = true })
	e.oci("create", "-b", e.bundle, "t1").OK(t)
	e.oci("start", "t1").OK(t)
	e.waitStatus(t, "t1", "running")

	master, slave := openPty(t, 30, 100)
	cmd := startOnPty(t, s, slave, "oci", "--root", e.root, "attach", "t1")
	time.Sleep(500 * time.Millisecond) // attached, size sent
	if _, err := master.WriteString("size\r"); err != nil {
		t.Fatal(err)
	}
	if out := readUntil(t, master, "30 100"); !strings.Contains(out, "30 100") {
		t.Errorf("the container's terminal size: %q, want 30 100", out)
	}
	// Our terminal is resized: the kernel sends kerr SIGWINCH, kerr tells the monitor.
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 41, Col: 123}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := master.WriteString("size\r"); err != nil {
		t.Fatal(err)
	}
	if out := readUntil(t, master, "41 123"); !strings.Contains(out, "41 123") {
		t.Errorf("the container's terminal after a resize: %q, want 41 123", out)
	}
	// ctrl-p ctrl-q: kerr exits 0, the container runs on.
	if _, err := master.Write([]byte{0x10, 0x11}); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(cmd, 10*time.Second); code != 0 {
		t.Errorf("attach after the detach keys: exit %d, want 0", code)
	}
	if st := e.state(t, "t1"); st.Status != "running" {
		t.Errorf("after detaching the container is %s, want running", st.Status)
	}
	// Attach again (no terminal on our side, stdin from a pipe): still the same shell.
	// The pipe's end does not end the container's input: attach goes on until the
	// container stops, which the delete below does.
	att := s.Start(h.Root, harness.Opts{Stdin: "again\n"}, "oci", "--root", e.root, "attach", "t1")
	time.Sleep(time.Second)
	e.oci("delete", "--force", "t1").OK(t)
	if r := att.Wait(); r.Code != 0 || !strings.Contains(r.Stdout, "got again") {
		t.Errorf("second attach:\n%s", r)
	}
	e.gone(t, "t1", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// Log rotation: after the log is renamed, logs --reopen makes the monitor start a new file
// at the same path; nothing is lost across the two.
func TestOCILogReopen(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done"}, nil)
	log := filepath.Join(s.Dir(h.Root), "c.log")
	e.oci("create", "--log-path", log, "-b", e.bundle, "l1").OK(t)
	e.oci("start", "l1").OK(t)
	time.Sleep(500 * time.Millisecond)
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	e.oci("logs", "--reopen", "l1").OK(t)
	time.Sleep(500 * time.Millisecond)
	e.oci("kill", "-s", "KILL", "l1").OK(t)
	e.waitStatus(t, "l1", "stopped")
	old, err1 := os.ReadFile(log + ".1")
	cur, err2 := os.ReadFile(log)
	if err1 != nil || err2 != nil {
		t.Fatalf("logs: %v, %v", err1, err2)
	}
	// Every line once, in order, across the rotated file and the new one.
	var n int
	for _, rec := range strings.Split(strings.TrimSuffix(string(old)+string(cur), "\n"), "\n") {
		f := strings.Fields(rec) // TIME stdout F line N
		if len(f) != 5 || f[1] != "stdout" || f[2] != "F" || f[3] != "line" || f[4] != itoa(n+1) {
			t.Fatalf("record %q after line %d", rec, n)
		}
		n++
	}
	if !strings.Contains(string(cur), " stdout F line ") || !strings.Contains(string(old), " stdout F line 1\n") {
		t.Errorf("rotated log has %d bytes, new log %q", len(old), cur)
	}
	// Reopen and follow do not go together; a stopped container has no log open.
	e.oci("logs", "--reopen", "--follow", "l1").Fails(t, 2)
	e.oci("logs", "--reopen", "l1").Fails(t, 9)
	e.oci("delete", "l1").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// A container over its memory limit is killed by the kernel's OOM killer, and its state
// says so.
func TestOCIOOMKilledInState(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	limit := int64(16 << 20)
	// tail of /dev/zero keeps its one endless "line" in memory.
	e := newOCIEnv(t, s, []string{"/bin/tail", "/dev/zero"}, func(sp *specs.Spec) {
		if sp.Linux.Resources == nil {
			sp.Linux.Resources = &specs.LinuxResources{}
		}
		sp.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			sp.Linux.Resources.Memory.Swap = &limit
		}
	})
	e.oci("create", "-b", e.bundle, "o1").OK(t)
	e.oci("start", "o1").OK(t)
	st := e.waitStatus(t, "o1", "stopped")
	for deadline := time.Now().Add(5 * time.Second); st.ExitStatus == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st = e.state(t, "o1")
	}
	if st.ExitStatus == nil || *st.ExitStatus != 137 || !st.OOMKilled {
		t.Errorf("state after the OOM kill: exitStatus %v, oomKilled %v; want 137, true", st.ExitStatus, st.OOMKilled)
	}
	e.oci("delete", "o1").OK(t)
	e.gone(t, "o1", 0)
	// Killed by us, not the OOM killer: not oomKilled.
	e.editSpec(t, func(sp *specs.Spec) { sp.Process.Args = []string{"/bin/sleep", "60"} })
	e.oci("create", "-b", e.bundle, "o2").OK(t)
	e.oci("start", "o2").OK(t)
	e.oci("kill", "-s", "KILL", "o2").OK(t)
	st = e.waitStatus(t, "o2", "stopped")
	for deadline := time.Now().Add(5 * time.Second); st.ExitStatus == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st = e.state(t, "o2")
	}
	if st.ExitStatus == nil || *st.ExitStatus != 137 || st.OOMKilled {
		t.Errorf("state after kill -9: exitStatus %v, oomKilled %v; want 137, false", st.ExitStatus, st.OOMKilled)
	}
	e.oci("delete", "o2").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}
