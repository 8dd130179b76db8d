package oci

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
	"github.com/kerr-hpc/kerr/rpc/procstat"
)

// codedError carries an error's text and exit code across a process boundary.
func encodeError(err error) []byte {
	return append([]byte{byte(errdefs.ExitCode(err))}, errdefs.OneLine(err)...)
}

func decodeError(p []byte) error {
	if len(p) == 0 {
		return errors.New("unknown error")
	}
	msg := string(p[1:])
	if s := errdefs.FromCode(int(p[0])); s != nil {
		return fmt.Errorf("%s: %w", msg, s)
	}
	return errors.New(msg)
}

// monitor is the process that creates a container and stays as its parent: it records the
// exit status, writes the container's output to the log and serves the control socket.
// It runs in a session of its own, with the caller's stdio until the container has its
// copies. Privileges: root, in the runtime's namespaces.
func (e Engine) monitor(id string, cfg *ocicfg.Config) error {
	if e.SyncFD < 0 {
		return fmt.Errorf("the monitor is started by kerr only: %w", errdefs.ErrUsage)
	}
	unix.CloseOnExec(e.SyncFD)
	conn := nsplan.NewConn(os.NewFile(uintptr(e.SyncFD), "sync"))
	defer conn.Close()
	m, err := e.monitorCreate(id, cfg)
	if err != nil {
		if conn.Send(nsplan.MsgError, encodeError(err)) == nil {
			// create prints it; the monitor shares its stderr.
			return reportedError{err}
		}
		return err
	}
	defer m.d.close()
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(m.pid))
	// The caller may be gone (killed); the container stays either way.
	_ = conn.Send(nsplan.MsgReady, b[:])
	conn.Close()
	detachStdio()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(m.pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	code := exitCode(ws)
	// Killed by SIGKILL while the OOM killer has been at work in its cgroup: that was it.
	oom := false
	if ws.Signaled() && ws.Signal() == unix.SIGKILL {
		if st, err := m.d.readState(); err == nil {
			n, ok := oomKills(st)
			oom = ok && n > 0
		}
	}
	recordExit(m.d, code, oom, time.Now())
	if st, err := m.d.readState(); err == nil {
		notifySync(st, StatusStopped, 0)
	}
	m.io.wait()
	m.ctl.stop(code)
	return nil
}

// monitored is a container the monitor created.
type monitored struct {
	pid int
	d   *dir
	ctl *control
	io  *containerIO
}

// monitorCreate is create's work in the monitor.
func (e Engine) monitorCreate(id string, cfg *ocicfg.Config) (*monitored, error) {
	st := store{root: cfg.Root}
	// The create process holds the lock for us until we report.
	p, err := st.containerPath(id)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", p, err)
	}
	m := &monitored{d: &dir{path: p, fd: fd}}
	if err := e.monitorSetup(m, cfg); err != nil {
		if m.ctl != nil {
			m.ctl.close()
		}
		if m.io != nil {
			m.io.close()
		}
		m.d.close()
		return nil, err
	}
	return m, nil
}

func (e Engine) monitorSetup(m *monitored, cfg *ocicfg.Config) error {
	state, err := m.d.readState()
	if err != nil {
		return err
	}
	spec, err := loadSpec(cfg.Bundle)
	if err != nil {
		return err
	}
	state.MonitorPid = os.Getpid()
	if state.MonitorStartTime, err = procstat.StartTime(state.MonitorPid); err != nil {
		return err
	}
	state.ControlSocket = m.d.file(controlSock)
	m.ctl = serveControl(m.d)
	logPath := cfg.LogPath
	if logPath == "" {
		// The container's output goes with its state unless the caller wants it elsewhere.
		logPath = m.d.file(containerLog)
	}
	if m.io, err = startLogging(logPath, cfg.LogFormat); err != nil {
		return err
	}
	m.ctl.setIO(m.io)
	state.LogPath = logPath
	if m.io.serveAttach(m.d.file(attachSock)) == nil {
		state.AttachSocket = m.d.file(attachSock)
	}
	m.pid, err = e.createProcess(m.d, state, spec, cfg, m.io.container, m.io.addTerminal)
	m.io.handedOver()
	return err
}

// detachStdio points the monitor's stdio at /dev/null, so that it keeps no pipe or
// terminal of the caller open: the caller sees EOF when the container's process exits.
func detachStdio() {
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	for fd := 0; fd <= 2; fd++ {
		_ = unix.Dup3(null, fd, 0)
	}
	_ = unix.Close(null)
}

// reportedError is an error another process has already shown the user.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

// recordExit writes the exit status into the state, under the container's lock. A delete
// that holds the lock kills the monitor first, so waiting for it is safe.
func recordExit(d *dir, code int, oomKilled bool, finished time.Time) {
	for {
		err := unix.Flock(d.fd, unix.LOCK_EX)
		if err != unix.EINTR {
			if err != nil {
				return
			}
			break
		}
	}
	defer func() { _ = unix.Flock(d.fd, unix.LOCK_UN) }()
	var st unix.Stat_t
	if unix.Fstat(d.fd, &st) != nil || st.Nlink == 0 {
		return
	}
	s, err := d.readState()
	if err != nil {
		return
	}
	s.ExitStatus = &code
	s.OOMKilled = oomKilled
	s.Finished = &finished
	_ = d.writeState(s)
}

// containerIO is the monitor's side of a container's stdio: stdout and stderr are pipes
// (or the terminal) whose output goes to the log, one record per line, and to the clients
// of the attach socket as it comes; stdin is a pipe whose write end the monitor keeps open,
// so that a shell waits on it as on a quiet terminal.
type containerIO struct {
	container [3]*os.File // the container's ends, closed here once it has them
	stdin     *os.File    // the write end of its stdin, held for its life (or run's)
	terminal  *os.File    // the pty master, when the container has a terminal
	log       *os.File
	logPath   string
	format    string
	logMu     sync.Mutex // guards log, stdin and terminal
	copiers   sync.WaitGroup
	// clients are the connections to the attach socket (attach.go); nil once the
	// container's output has ended.
	clientsMu sync.Mutex
	clients   map[*attachClient]struct{}
	pkt       []byte // the packet being sent, reused (guarded by clientsMu)
	attachLn  *net.UnixListener
}

// startLogging makes the pipes and starts copying what comes out of them into path, one
// record per line, in format.
func startLogging(path, format string) (*containerIO, error) {
	log, err := openLog(path)
	if err != nil {
		return nil, err
	}
	c := &containerIO{log: log, logPath: path, format: format}
	var outR, errR *os.File
	c.container[0], c.stdin, err = os.Pipe()
	if err == nil {
		outR, c.container[1], err = os.Pipe()
	}
	if err == nil {
		errR, c.container[2], err = os.Pipe()
	}
	if err != nil {
		for _, f := range []*os.File{outR, c.stdin, c.container[0], c.container[1]} {
			if f != nil {
				f.Close()
			}
		}
		log.Close()
		return nil, fmt.Errorf("container stdio: %w", err)
	}
	c.copiers.Add(2)
	go c.copyOut(outR, attachStdout)
	go c.copyOut(errR, attachStderr)
	return c, nil
}

func openLog(path string) (*os.File, error) {
	log, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", path, errdefs.ClassifyIO(err))
	}
	return log, nil
}

// reopenLog opens the log file again at its path and writes there from now on: after a
// rotation (the old file renamed), the monitor starts a new one.
func (c *containerIO) reopenLog() error {
	log, err := openLog(c.logPath)
	if err != nil {
		return err
	}
	c.logMu.Lock()
	old := c.log
	c.log = log
	c.logMu.Unlock()
	if old != nil {
		old.Close()
	} else {
		log.Close() // the container's output has ended
	}
	return nil
}

// copyOut copies what comes out of r to the attached clients as it comes and into the log,
// one record per line, until EOF (or EIO: a pty whose slave is closed everywhere).
func (c *containerIO) copyOut(r *os.File, kind byte) {
	defer c.copiers.Done()
	defer r.Close()
	stream := "stdout"
	if kind == attachStderr {
		stream = "stderr"
	}
	var split outputSplitter
	// The records of one read go to the log in one write, built in rec without a string
	// per line: the monitor must keep up with a container that writes fast.
	var rec []byte
	var ts []byte
	logLine := func(line []byte, partial bool) {
		rec = appendLog(rec, c.format, ts, stream, bytes.TrimSuffix(line, []byte("\r")), partial)
	}
	flush := func() {
		if len(rec) == 0 {
			return
		}
		c.logMu.Lock()
		if c.log != nil {
			_, _ = c.log.Write(rec)
		}
		c.logMu.Unlock()
		rec = rec[:0]
	}
	buf := make([]byte, attachChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.fanOut(kind, buf[:n])
			ts = time.Now().UTC().AppendFormat(ts[:0], time.RFC3339Nano)
			split.split(buf[:n], logLine)
			flush()
		}
		if err != nil {
			ts = time.Now().UTC().AppendFormat(ts[:0], time.RFC3339Nano)
			split.flush(logLine)
			flush()
			return
		}
	}
}

// addTerminal logs what the container's terminal shows, as its stdout, and holds the
// master for the container's life.
func (c *containerIO) addTerminal(master *os.File, _ string) error {
	c.logMu.Lock()
	c.terminal = master
	c.logMu.Unlock()
	c.copiers.Add(1)
	go c.copyOut(master, attachStdout)
	return nil
}

// resize sets the terminal's size (attach follows the client's terminal).
func (c *containerIO) resize(rows, cols uint16) error {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.terminal == nil {
		return errors.New("the container has no terminal")
	}
	return unix.IoctlSetWinsize(int(c.terminal.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// handedOver closes the container's ends: its process has its own copies (or failed).
func (c *containerIO) handedOver() {
	for i, f := range c.container {
		if f != nil {
			f.Close()
			c.container[i] = nil
		}
	}
}

// wait waits until the container's output is all in the log and sent to the attached
// clients, then closes it. A process the container left behind may hold its stdout open:
// after a grace period the rest of its output is dropped rather than keeping the monitor,
// and with it the exit status.
func (c *containerIO) wait() {
	done := make(chan struct{})
	go func() { c.copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	c.close()
}

func (c *containerIO) close() {
	c.handedOver()
	if c.attachLn != nil {
		c.attachLn.Close()
	}
	c.endClients()
	c.logMu.Lock()
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
	if c.log != nil {
		c.log.Close()
		c.log = nil
	}
	c.logMu.Unlock()
}

// appendLog appends the record of one line (ts already formatted) to rec, as formatLog.
func appendLog(rec []byte, format string, ts []byte, stream string, line []byte, partial bool) []byte {
	switch format {
	case ocicfg.LogKubernetes:
		tag := " F "
		if partial {
			tag = " P "
		}
		rec = append(rec, ts...)
		rec = append(append(append(rec, ' '), stream...), tag...)
		return append(append(rec, line...), '\n')
	case ocicfg.LogJSON:
		return append(rec, jsonRecord(string(ts), stream, string(line), partial)...)
	}
	rec = append(rec, ts...)
	rec = append(append(append(rec, ' '), stream...), ' ')
	return append(append(rec, line...), '\n')
}

// formatLog renders one line of output. basic: "TIME STREAM LINE"; kubernetes: the CRI
// log format "TIME STREAM F|P LINE"; json: {"time","stream","log"} per line.
func formatLog(format string, t time.Time, stream, line string, partial bool) string {
	ts := t.UTC().Format(time.RFC3339Nano)
	switch format {
	case ocicfg.LogKubernetes:
		tag := "F"
		if partial {
			tag = "P"
		}
		return ts + " " + stream + " " + tag + " " + line + "\n"
	case ocicfg.LogJSON:
		return jsonRecord(ts, stream, line, partial)
	}
	return ts + " " + stream + " " + line + "\n"
}

// jsonRecord is one line of the json log format; the text ends with \n unless partial.
func jsonRecord(ts, stream, line string, partial bool) string {
	if !partial {
		line += "\n"
	}
	b, _ := json.Marshal(struct {
		Time   string `json:"time"`
		Stream string `json:"stream"`
		Log    string `json:"log"`
	}{ts, stream, line})
	return string(b) + "\n"
}

// control is the monitor's control socket: one JSON request per connection, one JSON
// answer. {"op":"state"} answers the container's state; {"op":"wait"} answers
// {"exitStatus":N} when the container's process has exited.
type control struct {
	ln   *net.UnixListener
	mu   sync.Mutex
	done chan struct{}
	code int
	io   *containerIO // set once the container's stdio exists
}

// setIO lets the control socket reach the container's stdio (resize, reopen-log).
func (c *control) setIO(cio *containerIO) {
	c.mu.Lock()
	c.io = cio
	c.mu.Unlock()
}

func serveControl(d *dir) *control {
	c := &control{done: make(chan struct{})}
	_ = unix.Unlinkat(d.fd, controlSock, 0)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.file(controlSock), Net: "unix"})
	if err != nil {
		return c
	}
	ln.SetUnlinkOnClose(true)
	c.ln = ln
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go c.handle(conn, d)
		}
	}()
	return c
}

// controlRequest is one request to the control socket. Ops: "state"; "wait" (answers
// {"exitStatus":N} once the process has exited); "resize" (rows, cols: the terminal's
// size); "reopen-log" (after log rotation). Errors answer {"error":"..."}.
type controlRequest struct {
	Op   string `json:"op"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

func (c *control) handle(conn *net.UnixConn, d *dir) {
	defer conn.Close()
	// Only root talks to a root monitor.
	if cred, err := peerCred(conn); err != nil || cred.Uid != 0 {
		return
	}
	var req controlRequest
	if err := json.NewDecoder(io.LimitReader(conn, 4096)).Decode(&req); err != nil {
		_ = json.NewEncoder(conn).Encode(map[string]string{"error": "bad request"})
		return
	}
	switch req.Op {
	case "wait":
		<-c.done
		c.mu.Lock()
		code := c.code
		c.mu.Unlock()
		_ = json.NewEncoder(conn).Encode(map[string]int{"exitStatus": code})
	case "state":
		s, err := d.readState()
		if err != nil {
			_ = json.NewEncoder(conn).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(conn).Encode(render(s, status(d, s)))
	case "resize", "reopen-log":
		c.mu.Lock()
		cio := c.io
		c.mu.Unlock()
		err := errors.New("the container's stdio is not set up yet")
		if cio != nil {
			if req.Op == "resize" {
				err = cio.resize(req.Rows, req.Cols)
			} else {
				err = cio.reopenLog()
			}
		}
		if err != nil {
			_ = json.NewEncoder(conn).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(conn).Encode(map[string]bool{"ok": true})
	default:
		_ = json.NewEncoder(conn).Encode(map[string]string{"error": "unknown op " + req.Op})
	}
}

// close closes the socket without answering (create failed).
func (c *control) close() {
	if c.ln != nil {
		c.ln.Close()
	}
}

// stop answers waiters and closes the socket, after a short grace so they get the answer.
func (c *control) stop(code int) {
	c.mu.Lock()
	c.code = code
	c.mu.Unlock()
	close(c.done)
	if c.ln != nil {
		time.Sleep(20 * time.Millisecond)
		c.ln.Close()
	}
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	return cred, err
}
