//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
	"github.com/kerr-hpc/kerr/e2e/internal/ocisuite"
)

// kerr-runc under containerd's runc shim (runc.v2): cmd/kerr-shim plays the shim (a child
// subreaper that runs `RUNTIME --root R --log L --log-format json create --bundle B
// --pid-file P ID` with pipes of its own as the container's stdio, reaps the container's
// process with wait4 and never asks the runtime for its exit status). runc runs the same
// steps on the same bundle as the control.

// shimReport is what kerr-shim prints (cmd/kerr-shim's Report).
type shimReport struct {
	ShimPid     int      `json:"shimPid"`
	Create      int      `json:"create"`
	PidFile     string   `json:"pidFile"`
	Pid         int      `json:"pid"`
	Ppid        int      `json:"ppid"`
	Children    []string `json:"children"`
	ConsoleName string   `json:"consoleName"`
	ConsoleFds  int      `json:"consoleFds"`
	Start       int      `json:"start"`
	Exec        *struct {
		Code    int    `json:"code"`
		PidFile string `json:"pidFile"`
		Pid     int    `json:"pid"`
		Ppid    int    `json:"ppid"`
		Exit    int    `json:"exit"`
		Stdout  string `json:"stdout"`
	} `json:"exec"`
	Stdout          string   `json:"stdout"`
	Stderr          string   `json:"stderr"`
	Fd3             string   `json:"fd3"`
	Exit            int      `json:"exit"`
	State           string   `json:"state"`
	StateCode       int      `json:"stateCode"`
	KillAll         int      `json:"killAll"`
	Delete          int      `json:"delete"`
	Log             string   `json:"log"`
	KilledByKillAll []string `json:"killedByKillAll"`
	Strays          []string `json:"strays"`
	RuntimeErr      string   `json:"runtimeErr"`
}

var shimBuild struct {
	once sync.Once
	bin  string
	err  error
}

// buildShim builds cmd/kerr-shim once per test process.
func buildShim(t *testing.T) string {
	t.Helper()
	b := &shimBuild
	b.once.Do(func() {
		goCmd, err := ocisuite.FindGo()
		if err != nil {
			b.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		b.bin = filepath.Join(h.Tmp, "kerr-shim")
		cmd := exec.CommandContext(ctx, goCmd, "build", "-o", b.bin, "./e2e/cmd/kerr-shim")
		cmd.Dir = h.Repo
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = &buildError{err, string(out)}
		}
	})
	if b.err != nil {
		t.Fatalf("building e2e/cmd/kerr-shim: %v", b.err)
	}
	return b.bin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// shim runs kerr-shim against runtime on the env's bundle as container id, with args.
func (e *ociEnv) shim(t *testing.T, runtime, id string, args ...string) (shimReport, string) {
	t.Helper()
	log := filepath.Join(e.s.Dir(h.Root), id+".log.json")
	root := e.root
	if filepath.Base(runtime) == "runc" {
		root = e.root + "-runc"
	}
	r := e.s.Exec(h.Root, harness.Opts{}, buildShim(t), append([]string{"-runtime", runtime, "-root", root,
		"-log", log, "-bundle", e.bundle, "-id", id}, args...)...)
	r.OK(t)
	var rep shimReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("kerr-shim's report: %v\n%s", err, r)
	}
	return rep, log
}

var digitsOnly = regexp.MustCompile(`^[1-9][0-9]*$`)

// checkShimRun checks what every container run under the shim must show: the pid file,
// the container's process a child of the shim with nothing of the runtime left, the exit
// status from wait4, then state, kill --all and delete of the stopped container.
func checkShimRun(t *testing.T, name string, rep shimReport, wantExit int) {
	t.Helper()
	checkShimRunLeft(t, name, rep, wantExit, 0)
}

// checkShimRunLeft is checkShimRun for a container that leaves left processes in its
// cgroup when its own exits: kill --all must kill them (SIGKILL: 137), before delete.
func checkShimRunLeft(t *testing.T, name string, rep shimReport, wantExit, left int) {
	t.Helper()
	if rep.Create != 0 {
		t.Fatalf("%s: create exited %d; stderr %q, log %q", name, rep.Create, rep.Stderr, rep.Log)
	}
	if !digitsOnly.MatchString(rep.PidFile) {
		t.Errorf("%s: the pid file holds %q, want the pid as digits only", name, rep.PidFile)
	}
	if rep.Ppid != rep.ShimPid {
		t.Errorf("%s: the container's process %d has parent %d, want the shim %d", name, rep.Pid, rep.Ppid, rep.ShimPid)
	}
	if len(rep.Children) != 1 || !strings.HasPrefix(rep.Children[0], itoa(rep.Pid)+" ") {
		t.Errorf("%s: the shim's children after create: %q, want the container's process %d alone", name, rep.Children, rep.Pid)
	}
	if rep.Start != 0 {
		t.Errorf("%s: start exited %d: %s", name, rep.Start, rep.RuntimeErr)
	}
	if rep.Exit != wantExit {
		t.Errorf("%s: wait4 gave exit status %d, want %d", name, rep.Exit, wantExit)
	}
	if rep.StateCode != 0 || rep.State != "stopped" {
		t.Errorf("%s: state after the exit: %q (exit %d), want stopped: %s", name, rep.State, rep.StateCode, rep.RuntimeErr)
	}
	if rep.KillAll != 0 {
		t.Errorf("%s: kill --all of a stopped container exited %d, want 0: %s", name, rep.KillAll, rep.RuntimeErr)
	}
	killed := 0
	for _, k := range rep.KilledByKillAll {
		if strings.HasSuffix(k, " 137") {
			killed++
		}
	}
	if killed != left || len(rep.KilledByKillAll) != left {
		t.Errorf("%s: kill --all of the stopped container killed %q, want %d processes killed by SIGKILL", name, rep.KilledByKillAll, left)
	}
	if rep.Delete != 0 {
		t.Errorf("%s: delete exited %d: %s", name, rep.Delete, rep.RuntimeErr)
	}
	if len(rep.Strays) != 0 {
		t.Errorf("%s: processes other than the container's were left to the shim: %q", name, rep.Strays)
	}
	if rep.Log != "" {
		t.Errorf("%s: the runtime logged errors: %s", name, rep.Log)
	}
}

func runcControl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("no runc for the control run")
	}
	return p
}

// The container's stdio are the shim's pipes; --preserve-fds passes fd 3 and nothing else
// of the caller's (an fd the shim leaves without close-on-exec stays out); exec --detach
// --pid-file leaves its process to the shim too. With flags as `--flag value` and as
// `--flag=value` (podman's conmon), and runc as the control.
func TestShimLifecycle(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	script := `echo out; echo err >&2; for f in /proc/$$/fd/*; do echo fd ${f##*/} $(readlink $f); done; ` +
		`echo fd3 >&3; read x; echo got $x; exit 3`
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", script}, nil)
	proc := filepath.Join(s.Dir(h.Root), "process.json")
	pb, _ := json.Marshal(specs.Process{Args: []string{"/bin/sh", "-c", "echo from-exec; exit 5"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if err := os.WriteFile(proc, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	for _, tc := range []struct {
		name, runtime string
		eq            bool
	}{
		{"runc", "runc", false}, {"kerr-runc", kerrRunc, false}, {"kerr-runc=", kerrRunc, true},
	} {
		runtime := tc.runtime
		if runtime == "runc" {
			runtime = runcControl(t)
		}
		id := "shim-" + strings.TrimSuffix(strings.ReplaceAll(tc.name, "=", "-eq"), "-")
		args := []string{"-stdin", "hello\n", "-preserve-fd", "-leak-fd", "-exec", proc}
		if tc.eq {
			args = append(args, "-eq")
		}
		rep, _ := e.shim(t, runtime, id, args...)
		checkShimRun(t, tc.name, rep, 3)
		if !strings.HasPrefix(rep.Stdout, "out\n") || !strings.HasSuffix(rep.Stdout, "got hello\n") || rep.Stderr != "err\n" {
			t.Errorf("%s: the container's stdout %q, stderr %q", tc.name, rep.Stdout, rep.Stderr)
		}
		for fd := 0; fd <= 3; fd++ {
			if !strings.Contains(rep.Stdout, "fd "+itoa(fd)+" pipe:") {
				t.Errorf("%s: the container's fd %d is not the shim's pipe: %q", tc.name, fd, rep.Stdout)
			}
		}
		if strings.Contains(rep.Stdout, "/dev/null") {
			t.Errorf("%s: an fd of the shim's that was not preserved reached the container: %q", tc.name, rep.Stdout)
		}
		if rep.Fd3 != "fd3\n" {
			t.Errorf("%s: the preserved fd 3 got %q", tc.name, rep.Fd3)
		}
		switch x := rep.Exec; {
		case x == nil || x.Code != 0:
			t.Errorf("%s: exec --detach: %+v %s", tc.name, x, rep.RuntimeErr)
		default:
			if !digitsOnly.MatchString(x.PidFile) || x.Ppid != rep.ShimPid || x.Exit != 5 || x.Stdout != "from-exec\n" {
				t.Errorf("%s: exec --detach: pid file %q, parent %d (shim %d), exit %d, output %q", tc.name, x.PidFile, x.Ppid, rep.ShimPid, x.Exit, x.Stdout)
			}
		}
		if tc.runtime != "runc" {
			e.gone(t, id, rep.Pid)
		}
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// process.terminal: create --console-socket sends the pty master (one fd) and its name;
// the shim feeds and reads the terminal and reaps the process.
func TestShimTerminal(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "tty; read x; echo got $x; exit 4"},
		func(sp *specs.Spec) { sp.Process.Terminal = true })
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	rep, _ := e.shim(t, kerrRunc, "shim-tty", "-console", s.Mkdir(h.Root, "console"), "-stdin", "hello\n")
	checkShimRun(t, "kerr-runc", rep, 4)
	if rep.ConsoleFds != 1 || rep.ConsoleName != "/dev/pts/0" {
		t.Errorf("the console socket got %d fds and the name %q, want 1 and /dev/pts/0", rep.ConsoleFds, rep.ConsoleName)
	}
	if !strings.Contains(rep.Stdout, "/dev/pts/0\r\n") || !strings.Contains(rep.Stdout, "got hello\r\n") {
		t.Errorf("the terminal showed %q", rep.Stdout)
	}
	e.gone(t, "shim-tty", rep.Pid)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// What the shim relies on when things go wrong: a missing executable fails create, with
// "no such file" as the last msg of the JSON log (containerd shows it) and once on the
// container's stderr (kerr-runc's line, not the container process's too), nothing left;
// delete --force of an unknown id and kill --all of a stopped container succeed.
func TestShimErrors(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/no/such/binary"}, nil)
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	rep, logFile := e.shim(t, kerrRunc, "shim-enoent")
	if rep.Create == 0 {
		t.Fatalf("create of a missing executable succeeded: %+v", rep)
	}
	lines := strings.Split(strings.TrimSpace(rep.Log), "\n")
	var last struct{ Level, Msg, Time string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "error" ||
		!strings.Contains(last.Msg, "no such file") || last.Time == "" {
		t.Errorf("the log's last line %q (%v): want a JSON error whose msg says no such file", lines[len(lines)-1], err)
	}
	if _, err := time.Parse(time.RFC3339Nano, last.Time); err != nil {
		t.Errorf("the log's time %q: %v", last.Time, err)
	}
	if n := strings.Count(rep.Stderr, "no such file"); n != 1 || !strings.HasPrefix(rep.Stderr, "kerr-runc: ") {
		t.Errorf("create's stderr (the container's) %q: want kerr-runc's error line once", rep.Stderr)
	}
	if rep.Pid != 0 || len(rep.Strays) != 0 {
		t.Errorf("a failed create left a process to the shim: %+v", rep)
	}
	e.gone(t, "shim-enoent", 0)

	run := func(args ...string) harness.Result {
		return s.Exec(h.Root, harness.Opts{}, kerrRunc, append([]string{"--root=" + e.root, "--log=" + logFile, "--log-format=json"}, args...)...)
	}
	run("delete", "--force", "nosuch").OK(t)
	if r := run("kill", "--all", "nosuch", "KILL"); r.Code == 0 {
		t.Errorf("kill --all of an unknown id succeeded:\n%s", r)
	}
	// A container that ran /bin/true: kill --all once it has exited is no error (checkShimRun).
	e.editSpec(t, func(sp *specs.Spec) { sp.Process.Args = []string{"/bin/true"} })
	rep, _ = e.shim(t, kerrRunc, "shim-true")
	checkShimRun(t, "kerr-runc", rep, 0)
	e.gone(t, "shim-true", rep.Pid)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// A container without a pid namespace of its own (as in a pod, whose containers share the
// sandbox's) leaves its background processes alive when its process exits; containerd's
// shim then runs `kill --all ID 9`, which must kill them although the container is stopped
// (runc signals a stopped container's cgroup too), and reaps them.
func TestShimKillAllStopped(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "sleep 1000 & sleep 1000 & exit 7"}, func(sp *specs.Spec) {
		var ns []specs.LinuxNamespace
		for _, n := range sp.Linux.Namespaces {
			if n.Type != specs.PIDNamespace {
				ns = append(ns, n)
			}
		}
		sp.Linux.Namespaces = ns
	})
	for _, runtime := range []string{"runc", filepath.Join(h.Prefix, "bin", "kerr-runc")} {
		if runtime == "runc" {
			runtime = runcControl(t)
		}
		name := filepath.Base(runtime)
		rep, _ := e.shim(t, runtime, "shim-left-"+name)
		checkShimRunLeft(t, name, rep, 7, 2)
		if name == "kerr-runc" {
			e.gone(t, "shim-left-"+name, rep.Pid)
		}
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}
