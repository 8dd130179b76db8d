package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// measurer runs the four measurements into the report. A variant that fails is recorded
// with its error and left out of the rest of that measurement; the others go on.
type measurer struct {
	b   *bench
	rep *report
}

func (m *measurer) fail(part string, v *variant, err error) {
	m.b.logf("%s: %s FAILED: %v", part, v.Name, err)
	m.rep.Errors = append(m.rep.Errors, failure{Part: part, Variant: v.Key, Error: err.Error()})
}

// runs is measurement 1: the wall time of a whole lifecycle of /bin/true, n times each
// variant (and the reference points), after one round that is not counted (the runtimes'
// binaries and libraries into the page cache).
func (m *measurer) runs(ctx context.Context, vs []*variant, bundle string, n int) error {
	w, err := newWorker(m.b.tmp)
	if err != nil {
		return err
	}
	defer w.close()
	failed := map[string]bool{}
	harness.Logf("1. run of /bin/true: %d variants, 1 warm-up round + %d", len(vs), n)
	cpu := startCPU()
	for i := -1; i < n; i++ {
		for _, j := range order(len(vs), max(i, 0)) {
			v := vs[j]
			if failed[v.Key] {
				continue
			}
			s, err := m.b.lifecycle(ctx, w, v, bundle, false)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failed[v.Key] = true
				m.fail("run", v, err)
				continue
			}
			if i >= 0 {
				m.rep.series(&m.rep.Run, v.Key).Runs = append(m.rep.series(&m.rep.Run, v.Key).Runs, s.Total)
			}
		}
	}
	m.rep.Others["run"] = cpu.others()
	return nil
}

// steps is measurement 2: create, start, state and delete timed apart, with the wait for
// the exit between start and state.
func (m *measurer) steps(ctx context.Context, vs []*variant, bundle string, n int) error {
	w, err := newWorker(m.b.tmp)
	if err != nil {
		return err
	}
	defer w.close()
	failed := map[string]bool{}
	harness.Logf("2. each command: %d variants, %d", len(vs), n)
	cpu := startCPU()
	for i := range n {
		for _, j := range order(len(vs), i) {
			v := vs[j]
			if failed[v.Key] {
				continue
			}
			s, err := m.b.lifecycle(ctx, w, v, bundle, true)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failed[v.Key] = true
				m.fail("steps", v, err)
				continue
			}
			ss := m.rep.stepSeries(v.Key)
			ss.Runs = append(ss.Runs, s)
		}
	}
	m.rep.Others["steps"] = cpu.others()
	return nil
}

// concurrent is measurement 3: conc lifecycles of /bin/true started at once, the wall time
// until the last one is deleted.
func (m *measurer) concurrent(ctx context.Context, vs []*variant, bundle string, conc, n int) error {
	if n == 0 {
		return nil
	}
	workers := make([]*worker, conc)
	for i := range workers {
		w, err := newWorker(m.b.tmp)
		if err != nil {
			return err
		}
		defer w.close()
		workers[i] = w
	}
	failed := map[string]bool{}
	harness.Logf("3. %d containers at once: %d variants, %d", conc, len(vs), n)
	cpu := startCPU()
	for i := range n {
		for _, j := range order(len(vs), i) {
			v := vs[j]
			if failed[v.Key] {
				continue
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var first error
			nfail := 0
			for _, w := range workers {
				wg.Go(func() {
					<-start
					if _, err := m.b.lifecycle(ctx, w, v, bundle, false); err != nil {
						mu.Lock()
						nfail++
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				})
			}
			t0 := time.Now()
			close(start)
			wg.Wait()
			total := ms(time.Since(t0))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if first != nil {
				failed[v.Key] = true
				m.fail("concurrent", v, fmt.Errorf("%d of %d containers failed; the first: %w", nfail, conc, first))
				continue
			}
			m.rep.series(&m.rep.Concurrent, v.Key).Runs = append(m.rep.series(&m.rep.Concurrent, v.Key).Runs, total)
			m.b.logf("   %s: %.0f ms", v.Name, total)
		}
	}
	m.rep.Others["concurrent"] = cpu.others()
	return nil
}

// monitorSettle is how long the RSS measurement lets kerr's monitor be after start before
// reading its RSS: it then only waits for the container.
const monitorSettle = 100 * time.Millisecond

// rss is measurement 4: the peak RSS of every command under GNU time, n times each; the
// sequences run the container that sleeps (so that state sees it running and kill has
// something to kill), and in kerr's monitor mode the monitor's RSS is read while the
// container runs. The floor is GNU time running /bin/true: a command shows at least the RSS
// that time had when it forked.
func (m *measurer) rss(ctx context.Context, vs []*variant, bundles map[string]string, trueBin string, n int) error {
	if n == 0 {
		return nil
	}
	w, err := newWorker(m.b.tmp)
	if err != nil {
		return err
	}
	defer w.close()
	failed := map[string]bool{}
	harness.Logf("4. peak RSS: %d variants, %d", len(vs), n)
	for i := range n {
		if r, err := m.b.exec(w, true, trueBin); err == nil {
			m.rep.RSSFloorRuns = append(m.rep.RSSFloorRuns, r.maxRSS)
		} else {
			return err
		}
		for _, j := range order(len(vs), i) {
			v := vs[j]
			if failed[v.Key] {
				continue
			}
			r, err := m.rssOnce(ctx, w, v, bundles)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failed[v.Key] = true
				m.fail("rss", v, err)
				continue
			}
			rs := m.rep.rssSeries(v.Key)
			rs.Runs = append(rs.Runs, r)
		}
	}
	return nil
}

func (m *measurer) rssOnce(ctx context.Context, w *worker, v *variant, bundles map[string]string) (r rssRun, err error) {
	b := m.b
	c := b.newContainer(v)
	defer func() {
		if err != nil {
			b.forceDelete(w, c)
		}
	}()
	if v.run {
		res, err := b.exec(w, true, v.cmd("run", "--bundle", bundles["true"], c.id)...)
		r.Run = res.maxRSS
		return r, err
	}
	res, err := b.create(w, c, bundles["sleep"], true)
	if err != nil {
		return r, err
	}
	r.Create = res.maxRSS
	b.armWait(c)
	if res, err = b.exec(w, true, v.cmd("start", c.id)...); err != nil {
		return r, err
	}
	r.Start = res.maxRSS
	if v.monitored() {
		st, err := readKerrState(filepath.Join(v.rt.root, c.id, "state.json"))
		if err != nil {
			return r, err
		}
		if st.MonitorPid <= 0 {
			return r, fmt.Errorf("%s: state.json of %s has no monitorPid", v.Name, c.id)
		}
		time.Sleep(monitorSettle)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.MonitorPid))
		if err != nil {
			return r, fmt.Errorf("%s: the monitor of %s: %w", v.Name, c.id, err)
		}
		r.MonitorRSS, _ = statusKiB(string(status), "VmRSS")
		r.MonitorHWM, _ = statusKiB(string(status), "VmHWM")
		r.MonitorAnon, _ = statusKiB(string(status), "RssAnon")
	}
	if res, err = b.exec(w, true, v.cmd("state", c.id)...); err != nil {
		return r, err
	}
	r.State = res.maxRSS
	if res, err = b.exec(w, true, v.cmd("kill", c.id, "KILL")...); err != nil {
		return r, err
	}
	r.Kill = res.maxRSS
	code, err := b.wait(ctx, c)
	if err != nil {
		return r, err
	}
	if code != 128+int(unix.SIGKILL) {
		return r, fmt.Errorf("%s: container %s exited with %d after kill KILL, want %d", v.Name, c.id, code, 128+int(unix.SIGKILL))
	}
	if res, err = b.exec(w, true, v.cmd("delete", c.id)...); err != nil {
		return r, err
	}
	r.Delete = res.maxRSS
	return r, nil
}

// cpuSample is the start of a CPU share measurement.
type cpuSample struct {
	t         time.Time
	busy, own float64
}

func startCPU() cpuSample {
	return cpuSample{t: time.Now(), busy: busyCPU(), own: ownCPU()}
}

// others is the share of the machine's CPUs that processes other than the benchmark and
// what it waited for used since s: other users, and kernel threads, among them those that
// tear down the containers' network namespaces after the fact.
func (s cpuSample) others() float64 {
	wall := time.Since(s.t).Seconds()
	if wall <= 0 {
		return 0
	}
	return max(0, (busyCPU()-s.busy)-(ownCPU()-s.own)) / (wall * float64(runtime.NumCPU()))
}

func busyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseBusy(string(b))
}

// ownCPU is the CPU time of this process and of every process it reaped.
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
