// Command kerr-shim plays containerd's runc shim (runc.v2) against an OCI runtime with
// runc's command line, for the e2e suite and for trying a runtime by hand. It becomes a
// child subreaper, as the shim is, and drives one container the way the shim does:
//
//	RUNTIME --root R --log L --log-format json create --bundle B --pid-file P [--console-socket S] [--preserve-fds 1] ID
//
// with pipes of its own as the container's stdio (as the shim passes its fifos), reads the
// pid file, checks that the container's process is its child (no runtime process left in
// between), starts it, optionally runs `exec --process FILE --detach --pid-file F` in it and
// reaps that process, feeds the container's stdin, reaps its process with wait4 (the shim
// never asks the runtime for the exit status), runs kill --all and reaps what it killed,
// reads the container's output, then runs state and delete. It prints what it saw as one JSON object on stdout and exits 0 unless it could
// not do its own part (then 1, the error on stderr).
//
//	kerr-shim -runtime PATH -root DIR -log FILE -bundle DIR -id ID [-eq] [-console DIR]
//	          [-stdin TEXT] [-preserve-fd] [-leak-fd] [-exec FILE] [-timeout 60s]
//
// -eq gives the runtime's flags in the --flag=value form (as podman's conmon does). It runs
// as root (the runtime needs it), with the caller's privileges otherwise.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Report is what the shim saw; the e2e tests decode it.
type Report struct {
	ShimPid int `json:"shimPid"`
	// Create is the create command's exit code. What the runtime prints goes to the
	// container's stdio (Stdout, Stderr), as under a shim.
	Create int `json:"create"`
	// PidFile is the pid file as read right after create returned, byte for byte.
	PidFile string `json:"pidFile"`
	Pid     int    `json:"pid"`
	// Ppid is the parent of Pid after create returned; Children are all of the shim's
	// children then ("pid comm"), which should be the container's process alone.
	Ppid     int      `json:"ppid"`
	Children []string `json:"children"`
	// ConsoleName is the name the console socket got, ConsoleFds how many fds came with it.
	ConsoleName string `json:"consoleName,omitempty"`
	ConsoleFds  int    `json:"consoleFds,omitempty"`
	Start       int    `json:"start"`
	Exec        *Exec  `json:"exec,omitempty"`
	// Stdout and Stderr are the container's (or its terminal's output, in Stdout); Fd3 what
	// came through the preserved fd.
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Fd3    string `json:"fd3,omitempty"`
	// Exit is the container's exit status as wait4 gave it: the code, or 128+signal.
	Exit int `json:"exit"`
	// KillAll is the exit code of `kill --all ID 9` right after the process was reaped;
	// State the status `state` printed then (its exit code in StateCode); Delete an exit
	// code. None of them run after a failed create.
	State     string `json:"state"`
	StateCode int    `json:"stateCode"`
	KillAll   int    `json:"killAll"`
	Delete    int    `json:"delete"`
	// Log is the runtime's --log file at the end.
	Log string `json:"log"`
	// KilledByKillAll are the processes reparented to the shim that kill --all killed
	// ("pid status"), Strays the ones reaped at the end, after delete.
	KilledByKillAll []string `json:"killedByKillAll"`
	Strays          []string `json:"strays"`
	// RuntimeErr is the runtime's stderr of the commands other than create and exec.
	RuntimeErr string `json:"runtimeErr,omitempty"`
}

// Exec is what exec --detach did.
type Exec struct {
	Code    int    `json:"code"`
	PidFile string `json:"pidFile"`
	Pid     int    `json:"pid"`
	Ppid    int    `json:"ppid"`
	Exit    int    `json:"exit"`
	Stdout  string `json:"stdout"`
}

type shim struct {
	runtime, root, log, bundle, id string
	eq                             bool
	timeout                        time.Duration
	rep                            Report
	runtimeErr                     bytes.Buffer
}

func main() {
	var s shim
	var consoleDir, stdin, execFile string
	var preserve, leak bool
	flag.StringVar(&s.runtime, "runtime", "", "the runtime binary (runc's command line)")
	flag.StringVar(&s.root, "root", "", "the runtime's --root")
	flag.StringVar(&s.log, "log", "", "the runtime's --log (JSON lines)")
	flag.StringVar(&s.bundle, "bundle", "", "the bundle")
	flag.StringVar(&s.id, "id", "", "the container id")
	flag.BoolVar(&s.eq, "eq", false, "give flags as --flag=value")
	flag.StringVar(&consoleDir, "console", "", "process.terminal: listen on DIR/console.sock for the pty master")
	flag.StringVar(&stdin, "stdin", "", "what to write to the container's stdin (or terminal) once started")
	flag.BoolVar(&preserve, "preserve-fd", false, "pass a pipe as fd 3 with --preserve-fds 1")
	flag.BoolVar(&leak, "leak-fd", false, "leave an fd without close-on-exec open across create")
	flag.StringVar(&execFile, "exec", "", "a process.json to run with exec --detach once started")
	flag.DurationVar(&s.timeout, "timeout", time.Minute, "how long to wait for a process")
	flag.Parse()
	if s.runtime == "" || s.root == "" || s.log == "" || s.bundle == "" || s.id == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := s.run(consoleDir, stdin, execFile, preserve, leak); err != nil {
		fmt.Fprintln(os.Stderr, "kerr-shim:", err)
		os.Exit(1)
	}
	s.rep.RuntimeErr = s.runtimeErr.String()
	b, _ := json.MarshalIndent(&s.rep, "", "  ")
	os.Stdout.Write(append(b, '\n'))
}

// flag renders --name value, or --name=value with -eq.
func (s *shim) flag(name, value string) []string {
	if s.eq {
		return []string{"--" + name + "=" + value}
	}
	return []string{"--" + name, value}
}

// cmd is the runtime with the global flags, as the shim (go-runc) puts them.
func (s *shim) cmd(args ...string) *exec.Cmd {
	var a []string
	a = append(a, s.flag("root", s.root)...)
	a = append(a, s.flag("log", s.log)...)
	a = append(a, s.flag("log-format", "json")...)
	return exec.Command(s.runtime, append(a, args...)...)
}

// plain runs a runtime command that is not create or exec; it returns its exit code and
// stdout, its stderr going to the report.
func (s *shim) plain(args ...string) (int, string) {
	c := s.cmd(args...)
	var out bytes.Buffer
	c.Stdout = &out
	c.Stderr = &s.runtimeErr
	return code(c.Run()), out.String()
}

func code(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

func (s *shim) run(consoleDir, stdin, execFile string, preserve, leak bool) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	s.rep.ShimPid = os.Getpid()
	tmp, err := os.MkdirTemp("", "kerr-shim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pidFile := filepath.Join(tmp, "init.pid")

	// The container's stdio: pipes, our ends kept, its ends closed once create returned.
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	args := []string{"create"}
	args = append(args, s.flag("bundle", s.bundle)...)
	args = append(args, s.flag("pid-file", pidFile)...)
	var ln *net.UnixListener
	if consoleDir != "" {
		sock := filepath.Join(consoleDir, "console.sock")
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"}); err != nil {
			return err
		}
		defer ln.Close()
		args = append(args, s.flag("console-socket", sock)...)
	}
	var fd3R, fd3W *os.File
	if preserve {
		if fd3R, fd3W, err = os.Pipe(); err != nil {
			return err
		}
		args = append(args, s.flag("preserve-fds", "1")...)
	}
	c := s.cmd(append(args, s.id)...)
	c.Stdin, c.Stdout, c.Stderr = inR, outW, errW
	if fd3W != nil {
		c.ExtraFiles = []*os.File{fd3W}
	}
	if leak {
		// An fd of ours that the runtime inherits without being told: it must not reach the
		// container (runc closes every fd above 2 but the preserved ones).
		f, err := os.Open("/dev/null")
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			return err
		}
	}
	// The console socket is served while create runs: create returns only once it sent.
	type consoleMsg struct {
		name   string
		master *os.File
		fds    int
		err    error
	}
	consoleCh := make(chan consoleMsg, 1)
	if ln != nil {
		go func() {
			var m consoleMsg
			m.name, m.master, m.fds, m.err = receiveConsole(ln)
			consoleCh <- m
		}()
	}
	s.rep.Create = code(c.Run())
	inR.Close()
	outW.Close()
	errW.Close()
	if fd3W != nil {
		fd3W.Close()
	}
	// Whatever the runtime or the container writes from now on.
	stdout, stderr := readAll(outR), readAll(errR)
	var fd3 chan string
	if fd3R != nil {
		fd3 = readAll(fd3R)
	}
	if s.rep.Create != 0 {
		inW.Close()
		s.rep.Stdout, s.rep.Stderr = wait(stdout, 5*time.Second), wait(stderr, 5*time.Second)
		s.finish()
		return nil
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("create succeeded without a pid file: %w", err)
	}
	s.rep.PidFile = string(b)
	if s.rep.Pid, err = strconv.Atoi(string(b)); err != nil {
		s.rep.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if s.rep.Pid <= 0 {
		return fmt.Errorf("pid file %q holds no pid", b)
	}
	s.rep.Ppid = ppid(s.rep.Pid)
	s.rep.Children = children(os.Getpid())

	var master *os.File
	if ln != nil {
		select {
		case m := <-consoleCh:
			if m.err != nil {
				return fmt.Errorf("console socket: %w", m.err)
			}
			s.rep.ConsoleName, s.rep.ConsoleFds, master = m.name, m.fds, m.master
		case <-time.After(5 * time.Second):
			return errors.New("create returned and the console socket got nothing")
		}
		defer master.Close()
		stdout = readAll(master)
	}

	s.rep.Start, _ = s.plain("start", s.id)
	if execFile != "" {
		s.rep.Exec = s.exec(execFile)
	}
	// Once the exec is done, the container may go on: its input, then its end.
	if master != nil {
		_, _ = master.WriteString(stdin)
	} else {
		_, _ = inW.WriteString(stdin)
	}
	inW.Close()
	s.rep.Exit = s.reap(s.rep.Pid)
	// As the shim does once the container's process has exited (it does when the pid
	// namespace is not the container's own: here always, a no-op otherwise): what is left
	// of the container goes, and is reaped here. Its output ends only then.
	s.rep.KillAll, _ = s.plain("kill", "--all", s.id, "9")
	s.rep.KilledByKillAll = s.reapChildren(5 * time.Second)
	s.rep.Stdout, s.rep.Stderr = wait(stdout, time.Second), wait(stderr, 5*time.Second)
	if fd3 != nil {
		s.rep.Fd3 = wait(fd3, 5*time.Second)
	}
	s.finish()
	return nil
}

// exec runs exec --detach with the process file, and reaps the process it leaves.
func (s *shim) exec(processFile string) *Exec {
	e := &Exec{}
	dir, err := os.MkdirTemp("", "kerr-shim-exec-")
	if err != nil {
		e.Code = -1
		return e
	}
	defer os.RemoveAll(dir)
	pidFile := filepath.Join(dir, "exec.pid")
	outR, outW, err := os.Pipe()
	if err != nil {
		e.Code = -1
		return e
	}
	args := append([]string{"exec"}, s.flag("process", processFile)...)
	args = append(args, "--detach")
	args = append(args, s.flag("pid-file", pidFile)...)
	c := s.cmd(append(args, s.id)...)
	c.Stdout, c.Stderr = outW, outW
	e.Code = code(c.Run())
	outW.Close()
	out := readAll(outR)
	if e.Code != 0 {
		e.Stdout = <-out
		return e
	}
	b, _ := os.ReadFile(pidFile)
	e.PidFile = string(b)
	e.Pid, _ = strconv.Atoi(string(b))
	if e.Pid > 0 {
		e.Ppid = ppid(e.Pid)
		e.Exit = s.reap(e.Pid)
	}
	e.Stdout = <-out
	return e
}

// finish runs what the shim runs once the container's process is gone, and reaps strays.
// After a failed create only the log is read, as the shim reads it for the error (its
// last line is create's). kill --all ran already, once the container's process was reaped.
func (s *shim) finish() {
	if s.rep.Create == 0 {
		var out string
		s.rep.StateCode, out = s.plain("state", s.id)
		var st struct{ Status string }
		if json.Unmarshal([]byte(out), &st) == nil {
			s.rep.State = st.Status
		}
		s.rep.Delete, _ = s.plain("delete", s.id)
	}
	b, _ := os.ReadFile(s.log)
	s.rep.Log = string(b)
	s.rep.Strays = s.reapChildren(0)
}

// reapChildren reaps the shim's children as "pid status" until it has none left, waiting
// for them at most d (0: only those already gone).
func (s *shim) reapChildren(d time.Duration) []string {
	out := []string{}
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil: // ECHILD: none left
			return out
		case pid > 0:
			out = append(out, fmt.Sprintf("%d %d", pid, status(ws)))
			continue
		}
		if time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reap waits for pid with wait4, as the shim's reaper does; past the timeout it kills it.
func (s *shim) reap(pid int) int {
	done := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				if err != nil {
					ws = unix.WaitStatus(255 << 8)
				}
				break
			}
		}
		done <- ws
	}()
	select {
	case ws := <-done:
		return status(ws)
	case <-time.After(s.timeout):
		_ = unix.Kill(pid, unix.SIGKILL)
		<-done
		return -1
	}
}

func status(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// receiveConsole accepts one connection and reads the one message with the pty master,
// as the shim's console socket does.
func receiveConsole(ln *net.UnixListener) (string, *os.File, int, error) {
	_ = ln.SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := ln.AcceptUnix()
	if err != nil {
		return "", nil, 0, err
	}
	defer conn.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", nil, 0, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return "", nil, 0, fmt.Errorf("want one control message, got %d (%v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return "", nil, 0, fmt.Errorf("no fd in the message (%v)", err)
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	return string(buf[:n]), os.NewFile(uintptr(fds[0]), "pty-master"), len(fds), nil
}

// readAll reads f to its end (EIO, for a pty master whose slave is closed everywhere).
func readAll(f *os.File) chan string {
	ch := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(f)
		ch <- string(b)
	}()
	return ch
}

// wait takes what ch got, or gives up after d (a terminal's output ends only once every
// process holding the slave has gone).
func wait(ch chan string, d time.Duration) string {
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		return "(output did not end)"
	}
}

// ppid is the parent of pid, from /proc/PID/stat.
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...: comm may hold anything, so look after its last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return -1
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// children lists the processes whose parent is pid, as "pid comm".
func children(pid int) []string {
	out := []string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || ppid(p) != pid {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
	}
	return out
}
