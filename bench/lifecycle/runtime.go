package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ociRuntime is one OCI runtime binary with its own state root.
type ociRuntime struct {
	name string // runc, crun, kerr, kerr-runc
	bin  string
	root string
}

// variant is one way of running a container that the benchmark measures.
type variant struct {
	// In IDs and the JSON report: runc-run, runc, crun-run, crun, kerr, kerr-nomon, kerr-run,
	// kerr-runc, kerr-runc-run.
	Key  string
	Name string // in the tables
	rt   *ociRuntime
	// run: one `run` command does create, start, wait and delete; else the four commands.
	run       bool
	noMonitor bool // kerr oci --no-monitor (kerr-runc never has a monitor)
	// ref: a reference point outside the comparison (no runtime: argv is the command).
	ref   bool
	argv  []string
	shown string // argv as the report shows it
}

// kerr is a variant of `kerr oci` (not of kerr-runc).
func (v *variant) kerr() bool { return v.rt != nil && v.rt.name == "kerr" }

// kerrState: the runtime keeps kerr's state.json (kerr oci and kerr-runc).
func (v *variant) kerrState() bool {
	return v.rt != nil && (v.rt.name == "kerr" || v.rt.name == "kerr-runc")
}

// monitored: the container's process is the child of kerr's monitor, which answers the
// wait on its control socket. `kerr oci run` stays the container's parent itself, and
// kerr-runc, like runc and crun, leaves the process to the caller's subreaper.
func (v *variant) monitored() bool { return v.kerr() && !v.noMonitor && !v.run }

// cmd is the command line of a runtime subcommand op for v.
func (v *variant) cmd(op string, args ...string) []string {
	var argv []string
	switch v.rt.name {
	case "kerr":
		argv = []string{v.rt.bin, "oci", "--root", v.rt.root}
		if v.noMonitor {
			argv = append(argv, "--no-monitor")
		}
	case "crun":
		// cgroupfs, as runc and kerr: systemd may not even run here.
		argv = []string{v.rt.bin, "--root", v.rt.root, "--cgroup-manager=cgroupfs"}
	default: // runc, kerr-runc
		argv = []string{v.rt.bin, "--root", v.rt.root}
	}
	return append(append(argv, op), args...)
}

// shownCommands is what the report says v runs, with placeholders.
func (v *variant) shownCommands() []string {
	if v.ref {
		return []string{v.shown}
	}
	generic := func(op string, args ...string) string {
		c := v.cmd(op, args...)
		c[0] = v.rt.name
		for i, a := range c {
			if a == v.rt.root {
				c[i] = "ROOT"
			}
		}
		return joinArgs(c)
	}
	if v.run {
		return []string{generic("run", "--bundle", "BUNDLE", "ID")}
	}
	wait := "wait4(pid from --pid-file), as the subreaper"
	if v.monitored() {
		wait = `{"op":"wait"} on ROOT/ID/control.sock, sent before start`
	}
	return []string{generic("create", "--bundle", "BUNDLE", "--pid-file", "FILE", "ID"),
		generic("start", "ID"), wait, generic("state", "ID"), generic("delete", "ID")}
}

// container is one container of a sequence.
type container struct {
	v       *variant
	id      string
	pidFile string
	since   uint64 // the reaper's mark before create: the container's exit comes later
	pid     int
	// waitConn is kerr's monitor's control socket with a wait request sent (see armWait).
	waitConn net.Conn
}

func (b *bench) newContainer(v *variant) *container {
	n := b.ids.Add(1)
	id := fmt.Sprintf("%s-%s-%d", b.idPrefix, v.Key, n)
	return &container{v: v, id: id, pidFile: filepath.Join(b.tmp, id+".pid")}
}

// create creates c from bundle and reads its pid.
func (b *bench) create(w *worker, c *container, bundle string, rss bool) (result, error) {
	c.since = b.reaper.mark()
	r, err := b.exec(w, rss, c.v.cmd("create", "--bundle", bundle, "--pid-file", c.pidFile, c.id)...)
	if err != nil {
		return r, err
	}
	data, err := os.ReadFile(c.pidFile)
	if err != nil {
		return r, fmt.Errorf("%s create %s: %w", c.v.Name, c.id, err)
	}
	os.Remove(c.pidFile)
	if c.pid, err = parsePidFile(string(data)); err != nil {
		return r, fmt.Errorf("%s create %s: --pid-file: %w", c.v.Name, c.id, err)
	}
	// Not timed. Without the monitor the wait is wait4 of that pid as the subreaper: a
	// monitor left by create would be the process's parent and reap it, and the wait would
	// only time out. Say so at once.
	if c.v.kerrState() && !c.v.monitored() {
		st, err := readKerrState(filepath.Join(c.v.rt.root, c.id, "state.json"))
		if err != nil {
			return r, fmt.Errorf("%s create %s: %w", c.v.Name, c.id, err)
		}
		if st.MonitorPid > 0 {
			return r, fmt.Errorf("%s create %s left kerr's monitor (state.json: monitorPid %d), the parent of the container's process, which should be the caller's child",
				c.v.Name, c.id, st.MonitorPid)
		}
	}
	return r, nil
}

// waitTimeout bounds the wait for a container's exit.
const waitTimeout = time.Minute

// armWait, in kerr's monitor mode, sends the monitor the wait request between create and
// start, as a caller that wants the exit status must: the monitor leaves 20 ms after its
// container, and a container as short as /bin/true is often gone before start returns.
// A failure here is left for wait to report.
func (b *bench) armWait(c *container) {
	if !c.v.monitored() {
		return
	}
	conn, err := net.DialTimeout("unix", filepath.Join(c.v.rt.root, c.id, "control.sock"), 10*time.Second)
	if err != nil {
		return
	}
	if _, err := conn.Write([]byte(waitRequest)); err != nil {
		conn.Close()
		return
	}
	c.waitConn = conn
}

const waitRequest = `{"op":"wait"}` + "\n"

// wait waits until c's process has exited and returns its exit code (128+signal when
// killed). In kerr's monitor mode the monitor is its parent and answers on the control
// socket; otherwise this process is its subreaper.
func (b *bench) wait(ctx context.Context, c *container) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if c.v.monitored() {
		code, err := b.waitMonitor(ctx, c)
		if err == nil {
			return code, nil
		}
		// Without an armed request the monitor may be gone; state.json has what it recorded.
		if code, ok := recordedExit(filepath.Join(c.v.rt.root, c.id, "state.json")); ok {
			b.monitorGone.Add(1)
			return code, nil
		}
		return 0, fmt.Errorf("%s: waiting for %s on its control socket: %w", c.v.Name, c.id, err)
	}
	e, err := b.reaper.wait(ctx, c.pid, c.since)
	if err != nil {
		return 0, fmt.Errorf("%s: waiting for %s: %w", c.v.Name, c.id, err)
	}
	return exitCode(e.status), nil
}

// waitMonitor reads the monitor's answer to the request armWait sent, or sends one now.
func (b *bench) waitMonitor(ctx context.Context, c *container) (int, error) {
	conn := c.waitConn
	c.waitConn = nil
	if conn == nil {
		var d net.Dialer
		var err error
		if conn, err = d.DialContext(ctx, "unix", filepath.Join(c.v.rt.root, c.id, "control.sock")); err != nil {
			return 0, err
		}
		if _, err := conn.Write([]byte(waitRequest)); err != nil {
			conn.Close()
			return 0, err
		}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // an interrupt
	defer stop()
	var ans map[string]any
	if err := json.NewDecoder(conn).Decode(&ans); err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	return parseWaitAnswer(ans)
}

func exitCode(st unix.WaitStatus) int {
	if st.Signaled() {
		return 128 + int(st.Signal())
	}
	return st.ExitStatus()
}

// sequence runs one container of bundle through the lifecycle and times each step (ms):
// create, start, wait for its exit, state (if withState), delete. total is the wall time
// from create's fork to delete's reaping, the work between the commands included.
type steps struct {
	Create float64 `json:"create_ms"`
	Start  float64 `json:"start_ms"`
	Wait   float64 `json:"wait_ms"` // from start's exit to the container's exit seen here
	State  float64 `json:"state_ms,omitempty"`
	Delete float64 `json:"delete_ms"`
	Total  float64 `json:"total_ms"`
}

// lifecycle runs one container of v (bundle's process must exit 0 on its own) and times it.
// On failure it force-deletes what it created.
func (b *bench) lifecycle(ctx context.Context, w *worker, v *variant, bundle string, withState bool) (s steps, err error) {
	if v.ref {
		r, err := b.exec(w, false, v.argv...)
		return steps{Total: r.wall}, err
	}
	c := b.newContainer(v)
	if v.run {
		r, err := b.exec(w, false, v.cmd("run", "--bundle", bundle, c.id)...)
		if err != nil {
			b.forceDelete(w, c)
		}
		return steps{Total: r.wall}, err
	}
	defer func() {
		if err != nil {
			b.forceDelete(w, c)
		}
	}()
	t0 := time.Now()
	r, err := b.create(w, c, bundle, false)
	if err != nil {
		return s, err
	}
	s.Create = r.wall
	b.armWait(c)
	if r, err = b.exec(w, false, v.cmd("start", c.id)...); err != nil {
		return s, err
	}
	s.Start = r.wall
	t1 := time.Now()
	code, err := b.wait(ctx, c)
	if err != nil {
		return s, err
	}
	s.Wait = ms(time.Since(t1))
	if code != 0 {
		return s, fmt.Errorf("%s: container %s exited with %d, want 0", v.Name, c.id, code)
	}
	if withState {
		if r, err = b.exec(w, false, v.cmd("state", c.id)...); err != nil {
			return s, err
		}
		s.State = r.wall
		if err := checkStopped(r.out); err != nil {
			return s, fmt.Errorf("%s state %s: %w", v.Name, c.id, err)
		}
	}
	if r, err = b.exec(w, false, v.cmd("delete", c.id)...); err != nil {
		return s, err
	}
	s.Delete = r.wall
	s.Total = ms(time.Since(t0))
	// Not timed: delete removed the state.
	if _, err := os.Lstat(filepath.Join(v.rt.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("%s delete %s left its state directory (%v)", v.Name, c.id, err)
	}
	return s, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// forceDelete removes a container that a failed sequence left, logging what it cannot.
func (b *bench) forceDelete(w *worker, c *container) {
	if c.waitConn != nil {
		c.waitConn.Close()
		c.waitConn = nil
	}
	if _, err := os.Lstat(filepath.Join(c.v.rt.root, c.id)); errors.Is(err, os.ErrNotExist) {
		return
	}
	if _, err := b.exec(w, false, c.v.cmd("delete", "--force", c.id)...); err != nil {
		b.logf("cleaning up: %v", err)
	}
}
