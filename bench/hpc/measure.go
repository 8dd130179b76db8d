package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// variant is one command the benchmark times.
type variant struct {
	Key  string // in the report: true, kerr-root, kerr-user, runc, crun, unshare
	Name string // in the tables
	// user: it runs as the account (in its home); else as root (in the run directory).
	user bool
	// kerr: a kerr exec; afterwards the benchmark waits, untimed, until no process of the
	// account is left (squashfuse outlives the payload).
	kerr bool
	// sif: the image a kerr variant runs, whose loop devices the concurrent rounds count.
	sif string
	// argv is the command line of one run (runc and crun get a fresh container ID each).
	argv  func() []string
	shown string // the command line in the report, with placeholders
}

// bench holds what every measurement needs.
type bench struct {
	acct     *account
	runDir   string // root's cwd, the runtimes' roots and the commands' output files
	userEnv  []string
	rootEnv  []string
	idPrefix string // of every runc and crun container ID of this run
	ids      int64
	idMu     sync.Mutex
	rep      *report
	failed   map[string]bool // variants that failed: left out of the rest of the run
	logMu    sync.Mutex
	lingerMu sync.Mutex
}

func (b *bench) logf(format string, args ...any) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	harness.Logf(format, args...)
}

func (b *bench) newID(key string) string {
	b.idMu.Lock()
	defer b.idMu.Unlock()
	b.ids++
	return fmt.Sprintf("%s-%s-%d", b.idPrefix, key, b.ids)
}

// result is what one command cost, in ms.
type result struct {
	wall float64
	cpu  float64 // user + system of the command and the descendants it waited for
}

// cmdTimeout bounds one command; it is killed after that (with its process group).
const cmdTimeout = 2 * time.Minute

// exec runs one command of v with out as its stdout and stderr and /dev/null as its
// stdin, in a process group of its own (a ^C at the terminal is for the benchmark, which
// then stops between commands and cleans up), and times it from before the fork to the
// return of its wait. A command that fails returns an error with its status and output.
func (b *bench) exec(v *variant, out *os.File) (result, error) {
	argv := v.argv()
	shown := strings.Join(argv, " ")
	if err := out.Truncate(0); err != nil {
		return result{}, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir, cmd.Env = b.runDir, b.rootEnv
	if v.user {
		cmd.Dir, cmd.Env = b.acct.home, b.userEnv
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: b.acct.uid, Gid: b.acct.gid, Groups: []uint32{}}
		shown = "[" + b.acct.name + "] " + shown
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("%s: %w", shown, err)
	}
	pid := cmd.Process.Pid
	killer := time.AfterFunc(cmdTimeout, func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	err := cmd.Wait()
	wall := time.Since(t0)
	timedOut := !killer.Stop()
	r := result{wall: ms(wall)}
	if ps := cmd.ProcessState; ps != nil {
		r.cpu = ms(ps.UserTime() + ps.SystemTime())
	}
	if err != nil {
		msg := readAll(out)
		if timedOut {
			return r, fmt.Errorf("%s: no exit after %v, killed\n%s", shown, cmdTimeout, msg)
		}
		return r, fmt.Errorf("%s: %w\n%s", shown, err, msg)
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// readAll reads f from its start, up to 16 KiB, trimmed.
func readAll(f *os.File) string {
	buf := make([]byte, 16<<10)
	n, _ := f.ReadAt(buf, 0)
	return strings.TrimSpace(string(buf[:n]))
}

// outFile makes a file in the run directory for commands' output (the account's
// commands write to it through the fd the benchmark opened), opened with O_APPEND: exec
// truncates it before each command, and the commands' writes then start at its beginning.
func (b *bench) outFile() (*os.File, error) {
	f, err := os.CreateTemp(b.runDir, "out-")
	if err != nil {
		return nil, err
	}
	name := f.Name()
	f.Close()
	return os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
}

// order is the variants' order in repetition i: rotated by one each time, so that no
// variant always follows the same one.
func order(n, i int) []int {
	o := make([]int, n)
	for j := range o {
		o[j] = (i + j) % n
	}
	return o
}

func (b *bench) fail(part string, v *variant, err error) {
	b.logf("%s: %s FAILED: %v", part, v.Name, err)
	b.failed[v.Key] = true
	b.rep.Errors = append(b.rep.Errors, failure{Part: part, Variant: v.Key, Error: err.Error()})
}

// sequential runs every variant n times one at a time, after one round that is not
// counted (binaries, libraries and images into the page cache), rotating their order.
func (b *bench) sequential(ctx context.Context, vs []*variant, n int) error {
	out, err := b.outFile()
	if err != nil {
		return err
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	harness.Logf("one at a time: %d variants, 1 warm-up round + %d", len(vs), n)
	others := map[string]*othersAcc{}
	for i := -1; i < n; i++ {
		for _, j := range order(len(vs), max(i, 0)) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			v := vs[j]
			if b.failed[v.Key] {
				continue
			}
			s := startCPU()
			r, err := b.exec(v, out)
			busy, own := s.since()
			if err == nil && v.kerr {
				var linger float64
				if linger, err = b.settle(ctx, v); err == nil && i >= 0 {
					sr := b.rep.seq(v.Key)
					sr.Linger = append(sr.Linger, linger)
				}
			}
			if err != nil {
				b.fail("sequential", v, err)
				continue
			}
			if i < 0 {
				continue
			}
			sr := b.rep.seq(v.Key)
			sr.Runs = append(sr.Runs, r.wall)
			sr.CPU = append(sr.CPU, r.cpu)
			acc := others[v.Key]
			if acc == nil {
				acc = &othersAcc{}
				others[v.Key] = acc
			}
			acc.add(r.wall/1000, busy, own)
		}
	}
	for k, acc := range others {
		b.rep.seq(k).Others = acc.share()
	}
	return nil
}

// concurrent starts conc commands of each variant at once, n rounds after one that is
// not counted, and times each round until the last command has exited. In the kerr
// rounds it watches the loop devices attached to the variant's image: every 2 ms in the
// warm-up round, every 50 ms in the timed ones (cheap enough not to matter).
func (b *bench) concurrent(ctx context.Context, vs []*variant, conc, n int) error {
	outs := make([]*os.File, conc)
	for i := range outs {
		f, err := b.outFile()
		if err != nil {
			return err
		}
		defer func() { f.Close(); os.Remove(f.Name()) }()
		outs[i] = f
	}
	harness.Logf("%d at once: %d variants, 1 warm-up round + %d", conc, len(vs), n)
	others := map[string]*othersAcc{}
	for i := -1; i < n; i++ {
		for _, j := range order(len(vs), max(i, 0)) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			v := vs[j]
			if b.failed[v.Key] {
				continue
			}
			var lw *loopWatch
			if v.sif != "" {
				every := 50 * time.Millisecond
				if i < 0 {
					every = 2 * time.Millisecond
				}
				lw = watchLoops(v.sif, every)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var first error
			nfail := 0
			for _, out := range outs {
				wg.Go(func() {
					<-start
					if _, err := b.exec(v, out); err != nil {
						mu.Lock()
						nfail++
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				})
			}
			s := startCPU()
			t0 := time.Now()
			close(start)
			wg.Wait()
			total := ms(time.Since(t0))
			busy, own := s.since()
			var seen loopSeen
			if lw != nil {
				seen = lw.stop()
			}
			cs := b.rep.conc(v.Key)
			if first != nil {
				b.fail("concurrent", v, fmt.Errorf("%d of %d commands failed; the first: %w", nfail, conc, first))
			}
			if v.kerr {
				linger, err := b.settle(ctx, v)
				if err != nil {
					b.fail("concurrent", v, err)
				} else if i >= 0 {
					cs.Linger = append(cs.Linger, linger)
				}
				if v.sif != "" {
					gone, err := loopsGone(v.sif, 5*time.Second)
					if err != nil {
						b.fail("concurrent", v, err)
					} else if i >= 0 {
						cs.LoopsGone = append(cs.LoopsGone, gone)
					}
				}
			}
			if b.failed[v.Key] {
				continue
			}
			if lw != nil {
				cs.Loops = append(cs.Loops, seen)
			}
			if i < 0 {
				b.logf("   %s: %.0f ms (warm-up)%s", v.Name, total, seen.describe())
				continue
			}
			cs.Runs = append(cs.Runs, total)
			acc := others[v.Key]
			if acc == nil {
				acc = &othersAcc{}
				others[v.Key] = acc
			}
			acc.add(total/1000, busy, own)
			b.logf("   %s: %.0f ms%s", v.Name, total, seen.describe())
		}
	}
	for k, acc := range others {
		b.rep.conc(k).Others = acc.share()
	}
	return nil
}

// settleTimeout bounds the wait for the account's processes to end after a kerr exec.
const settleTimeout = 10 * time.Second

// settle waits until no process of the account is left (squashfuse, a child of the
// payload, outlives it by a little) and returns how long that took in ms: 0 when none was
// left. A process left after settleTimeout is an error, and killed.
func (b *bench) settle(ctx context.Context, v *variant) (float64, error) {
	t0 := time.Now()
	for scan := 0; ; scan++ {
		procs := processesOf(b.acct.uid)
		if len(procs) == 0 {
			if scan == 0 {
				return 0, nil
			}
			return ms(time.Since(t0)), nil
		}
		b.lingered(v.Key, procs)
		if time.Since(t0) > settleTimeout || ctx.Err() != nil {
			killProcessesOf(b.acct.uid)
			return 0, fmt.Errorf("%s: %d processes of %s still running %v after it exited: %s",
				v.Name, len(procs), b.acct.name, settleTimeout, strings.Join(procs, "; "))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// lingered records the names of the account's processes that outlived a command of key.
func (b *bench) lingered(key string, procs []string) {
	b.lingerMu.Lock()
	defer b.lingerMu.Unlock()
	if b.rep.Lingering == nil {
		b.rep.Lingering = map[string][]string{}
	}
	for _, p := range procs {
		if f := strings.Fields(p); len(f) > 1 && !slices.Contains(b.rep.Lingering[key], f[1]) {
			b.rep.Lingering[key] = append(b.rep.Lingering[key], f[1])
		}
	}
}

// processesOf lists "PID NAME (uids R E S F)" of the processes whose real, effective,
// saved or file-system uid is uid. Zombies are left out: one that was reparented to init
// is gone as far as the benchmark is concerned, however long init takes to reap it.
func processesOf(uid uint32) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	want := strconv.FormatUint(uint64(uid), 10)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		name, state, uids := parseStatus(string(b))
		if state != "Z" && slices.Contains(uids, want) {
			out = append(out, fmt.Sprintf("%s %s (uids %s)", e.Name(), name, strings.Join(uids, " ")))
		}
	}
	return out
}

// parseStatus reads the Name, the State letter and the four Uid fields of
// /proc/PID/status.
func parseStatus(status string) (name, state string, uids []string) {
	for l := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(l, "Name:"); ok {
			name = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(l, "State:"); ok {
			state, _, _ = strings.Cut(strings.TrimSpace(v), " ")
		} else if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			uids = strings.Fields(v)
		}
	}
	return name, state, uids
}

func killProcessesOf(uid uint32) {
	for _, p := range processesOf(uid) {
		pid, _, _ := strings.Cut(p, " ")
		if n, err := strconv.Atoi(pid); err == nil {
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
}

// loopSeen is what a watch of one image's loop devices saw during a round.
type loopSeen struct {
	Devices []string `json:"devices"`     // every loop device attached to the image
	AtOnce  int      `json:"max_at_once"` // the most attached at one poll
	Polls   int      `json:"polls"`
	EveryMS float64  `json:"every_ms"`
}

func (s loopSeen) describe() string {
	if s.Polls == 0 {
		return ""
	}
	return fmt.Sprintf(", loop devices on the image: %d (%s), at most %d at once (%d polls)",
		len(s.Devices), strings.Join(s.Devices, " "), s.AtOnce, s.Polls)
}

type loopWatch struct {
	done chan struct{}
	res  chan loopSeen
}

// watchLoops polls the loop devices attached to file every interval until stop.
func watchLoops(file string, every time.Duration) *loopWatch {
	w := &loopWatch{done: make(chan struct{}), res: make(chan loopSeen, 1)}
	go func() {
		seen := map[string]bool{}
		s := loopSeen{Devices: []string{}, EveryMS: ms(every)}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			devs := loopsOf(file)
			s.Polls++
			s.AtOnce = max(s.AtOnce, len(devs))
			for _, d := range devs {
				seen[d] = true
			}
			select {
			case <-w.done:
				for d := range seen {
					s.Devices = append(s.Devices, d)
				}
				slices.Sort(s.Devices)
				w.res <- s
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *loopWatch) stop() loopSeen {
	close(w.done)
	return <-w.res
}

// loopsOf lists the loop devices (loopN) whose backing file is file, from
// /sys/block/loopN/loop/backing_file (present while a device is attached).
func loopsOf(file string) []string {
	return loopsWhere(func(backing string) bool { return backing == file })
}

func loopsWhere(match func(backing string) bool) []string {
	ents, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil {
			continue
		}
		if match(strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")) {
			out = append(out, e.Name())
		}
	}
	return out
}

// loopsGone waits until no loop device is attached to file (autoclear detaches it when
// the last mount of it is gone) and returns how long that took in ms.
func loopsGone(file string, limit time.Duration) (float64, error) {
	t0 := time.Now()
	for {
		devs := loopsOf(file)
		if len(devs) == 0 {
			return ms(time.Since(t0)), nil
		}
		if time.Since(t0) > limit {
			return 0, fmt.Errorf("loop devices %s still attached to %s %v after the round", strings.Join(devs, " "), file, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cpuSample is the start of a measurement of the CPU time the machine and the benchmark
// (with everything it waited for) spent.
type cpuSample struct{ busy, own float64 }

func startCPU() cpuSample { return cpuSample{busy: harness.BusyCPU(), own: ownCPU()} }

// since is the machine's busy CPU seconds and the benchmark's own since s.
func (s cpuSample) since() (busy, own float64) {
	return harness.BusyCPU() - s.busy, ownCPU() - s.own
}

// othersAcc adds up what processes other than the benchmark and its commands used while
// a variant's commands ran: other users' work, and kernel threads (and, for kerr with a
// user-owned image, squashfuse after its payload exited: it is not the benchmark's child
// any more).
type othersAcc struct{ wall, others float64 }

func (a *othersAcc) add(wall, busy, own float64) {
	a.wall += wall
	a.others += max(0, busy-own)
}

// share is the part of the machine's CPU capacity the others used, 0 to 1.
func (a *othersAcc) share() float64 {
	if a.wall <= 0 {
		return 0
	}
	return a.others / (a.wall * float64(runtime.NumCPU()))
}

// ownCPU is the CPU time of this process and of every process it waited for.
func ownCPU() float64 {
	var total float64
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			total += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		}
	}
	return total
}

// loadavg is /proc/loadavg's three load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
