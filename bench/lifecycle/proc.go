package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// The benchmark starts every command itself and reaps every process that ends up its child
// in one wait4(-1) loop. It has to: as the subreaper of the containers (runc's and crun's
// container processes, and kerr's with --no-monitor, are reparented to it when create
// exits; so is kerr's monitor) it reaps processes it never started, and a wait4(-1) would
// steal the status of a command that os/exec waits for. Nothing may use os/exec while the
// reaper runs.

// exitInfo is what wait4 said about one process.
type exitInfo struct {
	status unix.WaitStatus
	rusage unix.Rusage
	at     time.Time // when wait4 returned: the end of a command's wall time
	seq    uint64    // the reaper's count of exits so far, this one included
}

type reaper struct {
	mu      sync.Mutex
	seq     uint64
	exited  map[int]exitInfo // reaped, nobody waiting for it yet
	waiters map[int]chan exitInfo
	wake    chan struct{} // a process was started: there is a child to wait for again
}

// theReaper is the process's one reaper: a second wait4(-1) loop would take exits the
// first one's callers wait for.
var theReaper = sync.OnceValues(func() (*reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	r := &reaper{exited: map[int]exitInfo{}, waiters: map[int]chan exitInfo{}, wake: make(chan struct{}, 1)}
	go r.loop()
	return r, nil
})

// startReaper makes this process the subreaper of its descendants and reaps them from now
// on.
func startReaper() (*reaper, error) { return theReaper() }

func (r *reaper) loop() {
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		pid, err := unix.Wait4(-1, &ws, 0, &ru)
		at := time.Now()
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ECHILD:
			// No child: none can appear but by a start (an orphan's parent is a descendant),
			// which wakes us. The timeout is only a safety net.
			select {
			case <-r.wake:
			case <-time.After(50 * time.Millisecond):
			}
			continue
		case err != nil:
			harness.Logf("wait4: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r.mu.Lock()
		r.seq++
		e := exitInfo{status: ws, rusage: ru, at: at, seq: r.seq}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- e
		} else {
			r.exited[pid] = e
			r.prune(at)
		}
		r.mu.Unlock()
	}
}

// prune forgets exits nobody claimed for a minute (monitors, runtimes' helpers), so that
// the map stays small over a long run. Called with r.mu held.
func (r *reaper) prune(now time.Time) {
	if len(r.exited) < 1000 {
		return
	}
	for pid, e := range r.exited {
		if now.Sub(e.at) > time.Minute {
			delete(r.exited, pid)
		}
	}
}

// mark is the reaper's count of exits now. An exit reaped later has a higher seq: wait
// uses it to tell a process's exit from that of an earlier process with the same pid.
func (r *reaper) mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// started tells the reaper that it has a child to wait for.
func (r *reaper) started() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// wait returns the exit of pid, a process that started after mark returned since.
func (r *reaper) wait(ctx context.Context, pid int, since uint64) (exitInfo, error) {
	r.mu.Lock()
	if e, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		if e.seq > since {
			r.mu.Unlock()
			return e, nil
		}
	}
	ch := make(chan exitInfo, 1)
	r.waiters[pid] = ch
	r.mu.Unlock()
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.waiters, pid)
		r.mu.Unlock()
		return exitInfo{}, fmt.Errorf("waiting for pid %d: %w", pid, ctx.Err())
	}
}

// worker is what one sequence of commands needs for itself: the file that takes the
// commands' output (and the output of containers created with it as their stdio) and the
// file GNU time writes its figure to.
type worker struct {
	out     *os.File // O_APPEND, so that a container writing to it too cannot clobber
	rssPath string
}

func newWorker(dir string) (*worker, error) {
	f, err := os.CreateTemp(dir, "out-")
	if err != nil {
		return nil, err
	}
	// Reopen with O_APPEND: commands and the containers they leave share the file.
	name := f.Name()
	f.Close()
	out, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return &worker{out: out, rssPath: name + ".rss"}, nil
}

func (w *worker) close() {
	os.Remove(w.out.Name())
	os.Remove(w.rssPath)
	w.out.Close()
}

// result is one command's cost.
type result struct {
	wall   float64 // ms
	maxRSS int64   // KiB, from GNU time; 0 unless asked for
	out    string
}

// cmdTimeout bounds one runtime command; it is killed after that (a hung runtime).
const cmdTimeout = 2 * time.Minute

// exec runs args (args[0] an absolute path) with the worker's output file as stdout and
// stderr and /dev/null as stdin, in a process group of its own (a ^C at the terminal is
// for the benchmark, which then cleans up; a runtime killed half way would leave a mess),
// and times it from the fork to its reaping. With rss, it runs under GNU time for the peak
// RSS (see harness.Cmd.PeakRSS for why wait4's figure from here would not do). A command
// that fails returns an error with its status and output.
func (b *bench) exec(w *worker, rss bool, args ...string) (result, error) {
	shown := strings.Join(args, " ")
	if err := w.out.Truncate(0); err != nil {
		return result{}, err
	}
	argv := args
	if rss {
		os.Remove(w.rssPath)
		argv = append([]string{b.time, "-f", "%M", "-o", w.rssPath}, args...)
	}
	fd := int(w.out.Fd())
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{b.devNull.Fd(), uintptr(fd), uintptr(fd)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	since := b.reaper.mark()
	t0 := time.Now()
	pid, err := syscall.ForkExec(argv[0], argv, attr)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", shown, err)
	}
	b.reaper.started()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	e, err := b.reaper.wait(ctx, pid, since)
	cancel()
	if err != nil {
		_ = unix.Kill(-pid, unix.SIGKILL)
		if e, err = b.reaper.wait(context.Background(), pid, since); err != nil {
			return result{}, err
		}
		return result{}, fmt.Errorf("%s: no exit after %v, killed", shown, cmdTimeout)
	}
	r := result{wall: float64(e.at.Sub(t0)) / float64(time.Millisecond)}
	r.out = readAll(w.out)
	if rss {
		if b, err := os.ReadFile(w.rssPath); err == nil {
			r.maxRSS, _ = parseTimeRSS(string(b))
		}
	}
	if st := e.status; !st.Exited() || st.ExitStatus() != 0 {
		return r, fmt.Errorf("%s: %s\n%s", shown, describeStatus(st), strings.TrimSpace(r.out))
	}
	if rss && r.maxRSS <= 0 {
		return r, fmt.Errorf("%s: GNU time wrote no peak RSS to %s", shown, w.rssPath)
	}
	return r, nil
}

// readAll reads f from its start, up to 64 KiB.
func readAll(f *os.File) string {
	buf := make([]byte, 64<<10)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, os.ErrClosed) && n == 0 {
		return ""
	}
	return string(buf[:n])
}

func describeStatus(st unix.WaitStatus) string {
	switch {
	case st.Exited():
		return fmt.Sprintf("exit status %d", st.ExitStatus())
	case st.Signaled():
		return fmt.Sprintf("killed by signal %d (%v)", int(st.Signal()), st.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(st))
	}
}
