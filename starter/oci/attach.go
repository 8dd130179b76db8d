package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/kerr-hpc/kerr/errdefs"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

// The attach socket is a SOCK_SEQPACKET socket: one message per packet, its first byte
// its kind, so that stdout and stderr stay apart and message boundaries need no framing.
//
// A client first sends attachHello with one mode byte, then attachStdin packets and, at
// the end of its input, attachCloseStdin (run: the container's stdin ends with ours) or
// nothing (attach: other clients may still type). The monitor sends attachStdout and
// attachStderr packets as the container writes, and closes the connection once the
// container's output has ended.
const (
	attachHello      byte = 'H'
	attachStdin      byte = 'I'
	attachCloseStdin byte = 'C'
	attachStdout     byte = '1'
	attachStderr     byte = '2'
)

// Modes of attachHello. A follower that does not keep up (a write waits more than
// followerWait) is dropped, so that it can never hold the container's output up for long; a
// lossless client (run) gets every byte: the container's writes wait for it, as they would
// on a pipe.
const (
	attachFollow   byte = 'f'
	attachLossless byte = 'l'
)

const (
	// attachChunk is the most output one packet carries.
	attachChunk = 32 << 10
	// followerWait is how long a write to a follower may block.
	followerWait = 100 * time.Millisecond
)

// attachClient is one connection to the attach socket, as the monitor sees it.
type attachClient struct {
	conn     *net.UnixConn
	lossless bool
}

// serveAttach listens on path: a root client gets the container's output from the moment
// it connects, and what it sends goes to the container's stdin, or to its terminal. The
// socket goes with the container.
func (c *containerIO) serveAttach(path string) error {
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(true)
	c.attachLn = ln
	c.clients = map[*attachClient]struct{}{}
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go c.accept(conn)
		}
	}()
	return nil
}

// accept checks a new connection (root, a hello within a few seconds) and serves it.
func (c *containerIO) accept(conn *net.UnixConn) {
	if cred, err := peerCred(conn); err != nil || cred.Uid != 0 {
		conn.Close()
		return
	}
	buf := make([]byte, attachChunk+1)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || n != 2 || buf[0] != attachHello || (buf[1] != attachFollow && buf[1] != attachLossless) {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	a := &attachClient{conn: conn, lossless: buf[1] == attachLossless}
	c.clientsMu.Lock()
	if c.clients == nil { // the container's output has ended
		c.clientsMu.Unlock()
		conn.Close()
		return
	}
	c.clients[a] = struct{}{}
	c.clientsMu.Unlock()
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		switch buf[0] {
		case attachStdin:
			if in := c.input(); in != nil {
				_, _ = in.Write(buf[1:n])
			}
		case attachCloseStdin:
			c.closeStdin()
		}
	}
}

// input is where clients' keystrokes go: the terminal, else the container's stdin.
func (c *containerIO) input() *os.File {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.terminal != nil {
		return c.terminal
	}
	return c.stdin
}

// closeStdin ends the container's stdin (a pipe; a terminal has no end to send).
func (c *containerIO) closeStdin() {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
}

// fanOut gives one chunk of output to every client, written here (a hand-off to another
// goroutine per packet costs more than the copy): a lossless client is waited for, a
// follower for followerWait at most, then dropped.
func (c *containerIO) fanOut(kind byte, p []byte) {
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	if len(c.clients) == 0 {
		return
	}
	c.pkt = append(append(c.pkt[:0], kind), p...)
	for a := range c.clients {
		deadline := time.Time{}
		if !a.lossless {
			deadline = time.Now().Add(followerWait)
		}
		_ = a.conn.SetWriteDeadline(deadline)
		if _, err := a.conn.Write(c.pkt); err != nil {
			a.conn.Close()
			delete(c.clients, a)
		}
	}
}

// endClients closes every client: the container's output has all been sent.
func (c *containerIO) endClients() {
	c.clientsMu.Lock()
	for a := range c.clients {
		a.conn.Close()
	}
	c.clients = nil
	c.clientsMu.Unlock()
}

// attachOptions say how a client attaches.
type attachOptions struct {
	// lossless: every byte of output, even if the container waits for us (run).
	lossless bool
	// closeStdin: the end of our stdin ends the container's (run).
	closeStdin bool
	// noStdin: our stdin is not read at all.
	noStdin bool
	// terminal: the container has one; ours goes raw, its size follows ours.
	terminal bool
	// detachKeys, when our stdin is a terminal, leave the container running.
	detachKeys []byte
	control    string
}

// errDetached is attachStreams' answer when the user typed the detach keys.
var errDetached = errors.New("detached")

// dialAttach connects to a container's attach socket and says hello.
func dialAttach(path string, lossless bool) (*net.UnixConn, error) {
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("attach socket %s: %w", path, err)
	}
	mode := attachFollow
	if lossless {
		mode = attachLossless
	}
	if _, err := conn.Write([]byte{attachHello, mode}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach socket %s: %w", path, err)
	}
	return conn, nil
}

// attachStreams connects our stdio to the container's over conn until its output ends
// (nil) or the user types the detach keys (errDetached).
func attachStreams(conn *net.UnixConn, o attachOptions) error {
	stdinTTY := term.IsTerminal(0)
	if o.terminal && stdinTTY {
		if st, err := term.MakeRaw(0); err == nil {
			defer func() { _ = term.Restore(0, st) }()
		}
		stopResize := followWinsize(o.control)
		defer stopResize()
	}
	detached := make(chan struct{})
	if !o.noStdin {
		keys := o.detachKeys
		if !stdinTTY {
			keys = nil // piped input is data, never a key sequence
		}
		go sendInput(conn, keys, o.closeStdin, detached)
	}
	out := make(chan error, 1)
	go func() { out <- receiveOutput(conn) }()
	select {
	case err := <-out:
		return err
	case <-detached:
		conn.Close()
		return errDetached
	}
}

// receiveOutput writes the container's output to our stdout and stderr until the monitor
// closes the connection. ECONNRESET is such an end too: the monitor closed it with input
// of ours still unread (our stdin's end, sent as the container exited), which the kernel
// reports after the last output it queued for us.
func receiveOutput(conn *net.UnixConn) error {
	buf := make([]byte, attachChunk+1)
	for {
		n, err := conn.Read(buf)
		if n == 0 || err != nil {
			if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil
			}
			return fmt.Errorf("attach: %w", err)
		}
		w := os.Stdout
		if buf[0] == attachStderr {
			w = os.Stderr
		}
		if _, err := w.Write(buf[1:n]); err != nil {
			return fmt.Errorf("attach: write output: %w", err)
		}
	}
}

// sendInput passes our stdin on until it ends; keys (when set) detach instead, and are
// held back while they might be starting.
func sendInput(conn *net.UnixConn, keys []byte, closeAtEnd bool, detached chan struct{}) {
	buf := make([]byte, 4096)
	matched := 0
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			data, hit := scanDetach(buf[:n], keys, &matched)
			if len(data) > 0 {
				if _, werr := conn.Write(append([]byte{attachStdin}, data...)); werr != nil {
					return
				}
			}
			if hit {
				close(detached)
				return
			}
		}
		if err != nil {
			if closeAtEnd {
				_, _ = conn.Write([]byte{attachCloseStdin})
			}
			return
		}
	}
}

// scanDetach returns what of p is to be sent and whether it completed the detach keys;
// *matched carries a partial match across reads. Keys typed in part and then not
// completed are sent as typed.
func scanDetach(p, keys []byte, matched *int) ([]byte, bool) {
	if len(keys) == 0 {
		return p, false
	}
	var out []byte
	for _, b := range p {
		switch {
		case b == keys[*matched]:
			*matched++
			if *matched == len(keys) {
				*matched = 0
				return out, true
			}
		case *matched > 0:
			out = append(out, keys[:*matched]...)
			*matched = 0
			if b == keys[0] {
				*matched = 1
			} else {
				out = append(out, b)
			}
		default:
			out = append(out, b)
		}
	}
	return out, false
}

// followWinsize tells the monitor our terminal's size now and at each SIGWINCH, until the
// returned func is called.
func followWinsize(control string) func() {
	if control == "" {
		return func() {}
	}
	send := func() {
		ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
		if err == nil {
			_, _ = controlCall(control, controlRequest{Op: "resize", Rows: ws.Row, Cols: ws.Col})
		}
	}
	send()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				send()
			case <-stop:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(stop) }
}

// controlCall sends one request to a monitor's control socket and returns its answer.
func controlCall(path string, req controlRequest) (map[string]json.RawMessage, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	var ans map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(conn, 1<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	if e, ok := ans["error"]; ok {
		var msg string
		_ = json.Unmarshal(e, &msg)
		return nil, fmt.Errorf("monitor: %s", msg)
	}
	return ans, nil
}

// attach connects our stdio to the container's through the monitor's attach socket, until
// the container's output ends (it exited) or the user detaches. With a terminal, ours goes
// raw and its size goes along. Privileges: root (the socket is root's).
func (e Engine) attach(id string, cfg *ocicfg.Config) error {
	keys, err := ocicfg.ParseDetachKeys(cfg.DetachKeys)
	if err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		return err
	}
	spec, serr := readSpec(d)
	cur := status(d, s)
	d.close()
	if cur == StatusStopped {
		return fmt.Errorf("container %q is stopped: %w", id, errdefs.ErrState)
	}
	if s.AttachSocket == "" {
		return fmt.Errorf("container %q has no monitor to attach to (created with --no-monitor): %w", id, errdefs.ErrState)
	}
	conn, err := dialAttach(s.AttachSocket, false)
	if err != nil {
		return fmt.Errorf("attach %q: %w", id, err)
	}
	defer conn.Close()
	err = attachStreams(conn, attachOptions{
		terminal: serr == nil && spec.Process.Terminal, detachKeys: keys,
		noStdin: cfg.NoStdin, control: s.ControlSocket,
	})
	if errors.Is(err, errDetached) {
		return nil
	}
	return err
}

// runMonitored is run with the monitor: create (the monitor holds the container), attach
// before start so that no output is missed, start, pass our signals on, and once the output
// has ended take the exit status from the monitor, delete, and exit with it. Detaching
// leaves the container running (and not deleted). Privileges: root.
func (e Engine) runMonitored(id string, cfg *ocicfg.Config) error {
	keys, err := ocicfg.ParseDetachKeys(cfg.DetachKeys)
	if err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGCONT)
	defer signal.Stop(sigs)
	ccfg := *cfg
	ccfg.Action = ocicfg.ActionCreate
	if _, err := e.createWith(id, &ccfg, nil); err != nil {
		return err
	}
	remove := func() error {
		return e.delete(id, &ocicfg.Config{Action: ocicfg.ActionDelete, Root: cfg.Root, Force: true})
	}
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		_ = remove()
		return err
	}
	spec, err := readSpec(d)
	d.close()
	if err != nil {
		_ = remove()
		return err
	}
	conn, err := dialAttach(s.AttachSocket, true)
	if err != nil {
		_ = remove()
		return err
	}
	defer conn.Close()
	if err := e.start(id, cfg); err != nil {
		_ = remove()
		return err
	}
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	go func() {
		for {
			select {
			case sig := <-sigs:
				if us, ok := sig.(unix.Signal); ok {
					_ = signalProcess(s.Pid, s.StartTime, us)
				}
			case <-stopSignals:
				return
			}
		}
	}()
	err = attachStreams(conn, attachOptions{
		lossless: true, closeStdin: true, noStdin: cfg.NoStdin, terminal: spec.Process.Terminal,
		detachKeys: keys, control: s.ControlSocket,
	})
	if errors.Is(err, errDetached) {
		return nil
	}
	code, werr := exitStatusOf(cfg.Root, id, s.ControlSocket)
	if derr := remove(); derr != nil {
		return derr
	}
	if werr != nil {
		return fmt.Errorf("container %q: exit status unknown: %w", id, werr)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return ExitStatus(code)
	}
	return nil
}

// exitStatusOf is a monitored container's exit status once its output has ended: the
// monitor records it in the state before it closes the output, so the state has it; the
// control socket's wait answers it otherwise (the output ended early: a detached process
// held it), and the state again if the monitor has gone meanwhile.
func exitStatusOf(root, id, controlSocket string) (int, error) {
	recorded := func() (int, bool) {
		d, s, err := openState(root, id, lockShared)
		if err != nil {
			return 0, false
		}
		d.close()
		if s.ExitStatus == nil {
			return 0, false
		}
		return *s.ExitStatus, true
	}
	if code, ok := recorded(); ok {
		return code, nil
	}
	ans, err := controlCall(controlSocket, controlRequest{Op: "wait"})
	if err == nil {
		code := -1
		if err = json.Unmarshal(ans["exitStatus"], &code); err == nil {
			return code, nil
		}
	}
	if code, ok := recorded(); ok {
		return code, nil
	}
	return -1, err
}

// outputSplitter turns chunks of one stream's output into log records: whole lines as
// they complete, and a partial record when a line grows past maxPartial or the stream ends
// without a newline.
type outputSplitter struct {
	pending []byte
}

// maxPartial is the longest line kept back for its newline before it is logged in parts
// (the CRI format's partial records).
const maxPartial = 16 << 10

// split returns the records p completes: (text, partial) pairs.
func (s *outputSplitter) split(p []byte, emit func(line []byte, partial bool)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			for len(s.pending) >= maxPartial {
				emit(s.pending[:maxPartial], true)
				s.pending = append(s.pending[:0], s.pending[maxPartial:]...)
			}
			return
		}
		if len(s.pending) > 0 {
			s.pending = append(s.pending, p[:i]...)
			emit(s.pending, false)
			s.pending = s.pending[:0]
		} else {
			emit(p[:i], false)
		}
		p = p[i+1:]
	}
}

// flush logs what is left of a last line without its newline.
func (s *outputSplitter) flush(emit func(line []byte, partial bool)) {
	if len(s.pending) > 0 {
		emit(s.pending, true)
		s.pending = s.pending[:0]
	}
}
