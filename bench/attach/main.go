// Command attach benchmarks the way a container's output comes out of kerr's monitor: the
// throughput of a container writing to its stdout through `kerr oci run` (the monitor
// logs every byte and streams it to the attached kerr, losslessly), through `kerr oci run
// --no-monitor` (the container writes into the caller's pipe itself), and of the same
// writer on the host (a plain pipe); and the memory that one monitor per running
// container costs, with 1, 10 and 50 of them. Run it as root from the repository root:
//
//	go run ./bench/attach [-mb 256] [-n 5]
//
// See bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

type config struct {
	mb, n, lineBytes int
	counts           []int
	prefix, work     string
	out              string
	keep             bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == reapFlag {
		os.Exit(reapExec(os.Args[2:]))
	}
	var c config
	var counts string
	flag.IntVar(&c.mb, "mb", 256, "MiB each run writes")
	flag.IntVar(&c.n, "n", 5, "repetitions of each throughput run")
	flag.IntVar(&c.lineBytes, "line", 100, "bytes per line (newline included) of the lines workload")
	flag.StringVar(&counts, "counts", "1,10,50", "numbers of running containers whose monitors' memory is measured")
	flag.StringVar(&c.prefix, "prefix", "", "installed kerr to measure (default: ./mconfig and make install into the scratch dir)")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a new $TMPDIR/kerr-bench-attach-*, removed)")
	flag.StringVar(&c.out, "o", "", "JSON report (default: bench/out/attach.json)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	flag.Parse()
	var err error
	if c.counts, err = parseCounts(counts); err != nil || c.mb < 1 || c.n < 1 || c.lineBytes < 2 || flag.NArg() != 0 {
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/attach: -counts:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/attach: run as root: kerr's oci commands are root only")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	failed, err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/attach:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 500 {
			return nil, fmt.Errorf("%q: want numbers from 1 to 500, comma separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// bench holds what every measurement needs.
type bench struct {
	self            string // this program, run as the reaper of each measured command
	kerr, root, tmp string
	bash, busybox   string
	bytes           int64
	line            string
	bundles         map[string]string // workload -> bundle; "sleep" for the monitors
	idPrefix        string
	seq             int
}

func (b *bench) newID() string {
	b.seq++
	return fmt.Sprintf("%s-%d", b.idPrefix, b.seq)
}

// The variants and workloads, in the table's order.
var (
	variants = []variantDoc{
		{Key: "kerr-run", Name: "kerr oci run (monitor)", Command: `kerr oci --root R run --log-path LOG -b BUNDLE ID </dev/null >/dev/null`},
		{Key: "kerr-nomon", Name: "kerr oci run --no-monitor", Command: `kerr oci --root R run --no-monitor -b BUNDLE ID </dev/null | cat >/dev/null`},
		{Key: "host", Name: "host pipe", Command: `busybox sh -c 'WORKLOAD' | cat >/dev/null`},
	}
	workloads = []variantDoc{
		{Key: "empty", Name: "nothing", Command: `head -c 0 /dev/zero`},
		{Key: "zeros", Name: "zeros, no newline, in 4 KiB writes (busybox head)", Command: `head -c BYTES /dev/zero`},
		{Key: "blocks", Name: "zeros, no newline, in 64 KiB writes, 4 times the bytes", Command: `dd if=/dev/zero bs=65536 count=4*BYTES/65536 2>/dev/null`},
		{Key: "lines", Name: "lines of -line bytes (busybox yes and head)", Command: `yes LINE | head -c BYTES`},
	}
)

// workloadScript is what the container's busybox sh runs; on the host, with bb the busybox
// binary, the same applets.
func (b *bench) workloadScript(w, bb string) string {
	switch w {
	case "zeros":
		return fmt.Sprintf("%shead -c %d /dev/zero", bb, b.workBytes(w))
	case "blocks":
		return fmt.Sprintf("%sdd if=/dev/zero bs=65536 count=%d 2>/dev/null", bb, b.workBytes(w)/65536)
	case "lines":
		return fmt.Sprintf("%syes %s | %shead -c %d", bb, b.line, bb, b.workBytes(w))
	}
	return bb + "head -c 0 /dev/zero"
}

// workBytes is how much workload w writes: -mb, 4 times that in 64 KiB writes (which go
// fast enough that the container's start would otherwise weigh as much), none for empty.
func (b *bench) workBytes(w string) int64 {
	switch w {
	case "empty":
		return 0
	case "blocks":
		return 4 * b.bytes
	}
	return b.bytes
}

// command is the bash script of variant v writing workload w. The output ends up in
// /dev/null, or with countFile counted by wc -c into that file.
func (b *bench) command(v, w, id, logPath, countFile string) []string {
	sink := "cat >/dev/null"
	if countFile != "" {
		sink = `wc -c >"$8"`
	}
	var script string
	switch v {
	case "kerr-run":
		out := ">/dev/null"
		if countFile != "" {
			out = "| " + sink
		}
		script = `"$1" oci --root "$2" run --log-path "$3" -b "$4" "$5" </dev/null ` + out
	case "kerr-nomon":
		script = `"$1" oci --root "$2" run --no-monitor -b "$4" "$5" </dev/null | ` + sink
	case "host":
		script = `"$6" sh -c "$7" </dev/null | ` + sink
	}
	return []string{b.self, reapFlag, b.bash, "-o", "pipefail", "-c", script, "bash", b.kerr, b.root, logPath, b.bundles[w], id,
		b.busybox, b.workloadScript(w, b.busybox+" "), countFile}
}

// busyboxApplets are the symlinks the bundles' rootfs needs: the processes' commands.
var busyboxApplets = []string{"sh", "head", "dd", "yes", "sleep", "true"}

// run sets up, measures and reports. failed says that some measurement failed (the report
// says which) although the benchmark ran.
func run(ctx context.Context, c config) (failed bool, err error) {
	tools, err := harness.LookTools([]string{"runc", "bash", "cat", "wc", "make"},
		"Debian: runc bash coreutils make; runc for `runc spec`")
	if err != nil {
		return false, err
	}
	busybox, err := harness.StaticBusybox()
	if err != nil {
		return false, err
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		return false, err
	}
	if c.out == "" {
		c.out = filepath.Join(repo, "bench", "out", "attach.json")
	}
	var done func()
	if c.work, done, err = harness.ScratchDir(c.work, "", "kerr-bench-attach-", c.keep); err != nil {
		return false, err
	}
	defer done()
	prefix, err := harness.Installed(ctx, repo, c.work, c.prefix, "kerr")
	if err != nil {
		return false, err
	}
	kerr, err := harness.Binary(prefix, "kerr")
	if err != nil {
		return false, err
	}
	runDir := filepath.Join(c.work, "run")
	if err := os.RemoveAll(runDir); err != nil {
		return false, err
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	b := &bench{self: self, kerr: kerr, root: filepath.Join(runDir, "root"), tmp: filepath.Join(runDir, "tmp"),
		bash: tools["bash"], busybox: busybox, bytes: int64(c.mb) * mib,
		line: strings.Repeat("x", c.lineBytes-1), bundles: map[string]string{},
		idPrefix: fmt.Sprintf("kba%d", os.Getpid())}
	if err := os.MkdirAll(b.tmp, 0o700); err != nil {
		return false, err
	}
	if !c.keep {
		defer os.RemoveAll(runDir)
	}
	for _, w := range []string{"empty", "zeros", "blocks", "lines", "sleep"} {
		args := []string{"/bin/sh", "-c", b.workloadScript(w, "")}
		if w == "sleep" {
			args = []string{"/bin/sleep", "3600"}
		}
		b.bundles[w] = filepath.Join(runDir, "bundle-"+w)
		if err := harness.MakeBundle(ctx, b.bundles[w], busybox, tools["runc"], busyboxApplets, args); err != nil {
			return false, err
		}
	}
	defer b.cleanup()

	rep := &report{Date: time.Now().Format("2006-01-02 15:04"), Kerr: kerr, Bytes: b.bytes, LineBytes: c.lineBytes,
		Iterations: c.n, Variants: variants, Workloads: workloads, Others: map[string]float64{},
		Host: harness.HostInfo(map[string][]string{"kerr": {kerr, "version"}, "busybox": {busybox}})}
	t0 := time.Now()
	b.throughput(ctx, rep, c.n)
	b.monitors(ctx, rep, c.counts)
	rep.Seconds = time.Since(t0).Seconds()
	rep.summarize()
	rep.printTable(os.Stdout)
	if err := harness.WriteReport(c.out, rep); err != nil {
		return false, err
	}
	return len(rep.Errors) > 0, nil
}

// throughput runs every variant with every workload once, counting the bytes that come
// out (a check, not counted), then n times, rotating the variants' order.
func (b *bench) throughput(ctx context.Context, rep *report, n int) {
	broken := map[string]bool{}
	fail := func(part, v string, err error) {
		broken[v] = true
		rep.Errors = append(rep.Errors, failure{Part: part, Error: err.Error()})
		harness.Logf("FAILED: %s: %v", part, err)
	}
	count := filepath.Join(b.tmp, "count")
	for _, v := range variants {
		for _, w := range workloads {
			if broken[v.Key] || ctx.Err() != nil {
				continue
			}
			want := b.workBytes(w.Key)
			id := b.newID()
			logPath := filepath.Join(b.tmp, id+".log")
			_, err := harness.Run(ctx, harness.Cmd{Args: b.command(v.Key, w.Key, id, logPath, count), Tail: 5})
			if err == nil {
				got, _ := os.ReadFile(count)
				if n, perr := strconv.ParseInt(strings.TrimSpace(string(got)), 10, 64); perr != nil || n != want {
					err = fmt.Errorf("%q bytes came out, want %d", strings.TrimSpace(string(got)), want)
				}
			}
			if err != nil {
				fail(fmt.Sprintf("check of %s with %s", v.Name, w.Key), v.Key, err)
			}
			_ = os.Remove(count)
			_ = os.Remove(logPath)
		}
	}
	totals := map[string]harness.Result{}
	defer func() {
		for k, t := range totals {
			rep.Others[k] = t.Others()
		}
	}()
	harness.Logf("measuring %d runs of each of %d variants and %d workloads, %d MiB each", n, len(variants), len(workloads), b.bytes/mib)
	for i := range n {
		for j := range variants {
			v := variants[(i+j)%len(variants)]
			for _, w := range workloads {
				if broken[v.Key] || ctx.Err() != nil {
					continue
				}
				id := b.newID()
				logPath := filepath.Join(b.tmp, id+".log")
				res, err := harness.Run(ctx, harness.Cmd{Args: b.command(v.Key, w.Key, id, logPath, ""), Tail: 5})
				if err != nil {
					fail(fmt.Sprintf("%s with %s", v.Name, w.Key), v.Key, err)
					continue
				}
				s := rep.series(v.Key, w.Key)
				s.Bytes = b.workBytes(w.Key)
				s.Runs = append(s.Runs, res.Wall)
				s.CPURuns = append(s.CPURuns, res.CPU)
				acc := totals[v.Key]
				acc.Wall, acc.CPU, acc.Busy = acc.Wall+res.Wall, acc.CPU+res.CPU, acc.Busy+res.Busy
				totals[v.Key] = acc
				if st, err := os.Stat(logPath); err == nil && v.Key == "kerr-run" {
					s.LogBytes = st.Size()
				}
				_ = os.Remove(logPath)
			}
		}
	}
}

// reapFlag runs this program as reapExec.
const reapFlag = "-reap-exec"

// reapExec runs argv as a child subreaper: it waits for argv and for every process
// orphaned under it (kerr's monitor, which kerr starts and lets go) and exits with argv's
// status. Its own parent then gets the CPU time of all of them from wait4, the monitor's
// included, which it would not get from kerr.
func reapExec(argv []string) int {
	if len(argv) == 0 {
		return 2
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "bench/attach: PR_SET_CHILD_SUBREAPER:", err)
		return 1
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/attach:", err)
		return 1
	}
	code := 1
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return code // ECHILD: everything is reaped
		}
		if p == pid {
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
}

// monitors starts count sleeping containers with kerr's monitor, one after the other, for
// each count, reads each monitor's memory while they all run, and deletes them.
func (b *bench) monitors(ctx context.Context, rep *report, counts []int) {
	for _, count := range counts {
		if ctx.Err() != nil {
			return
		}
		set := &monitorSet{Containers: count}
		ids, err := b.startSleepers(ctx, count, set)
		if err == nil {
			time.Sleep(200 * time.Millisecond) // the monitors settle in their wait
			err = b.readMonitors(ids, set)
		}
		for _, id := range ids {
			if derr := b.kerrCmd(ctx, "delete", "--force", id); derr != nil && err == nil {
				err = derr
			}
		}
		if err != nil {
			rep.Errors = append(rep.Errors, failure{Part: fmt.Sprintf("monitors of %d containers", count), Error: err.Error()})
			harness.Logf("FAILED: monitors of %d containers: %v", count, err)
			continue
		}
		rep.Monitors = append(rep.Monitors, set)
		harness.Logf("%d containers: monitors read", count)
	}
}

func (b *bench) startSleepers(ctx context.Context, count int, set *monitorSet) ([]string, error) {
	var ids []string
	t0 := time.Now()
	for range count {
		id := b.newID()
		if err := b.kerrCmd(ctx, "create", "-b", b.bundles["sleep"], id); err != nil {
			return ids, err
		}
		ids = append(ids, id)
		if err := b.kerrCmd(ctx, "start", id); err != nil {
			return ids, err
		}
	}
	set.StartSeconds = time.Since(t0).Seconds()
	return ids, nil
}

// readMonitors reads the memory of each container's monitor (and, for scale, of its
// process).
func (b *bench) readMonitors(ids []string, set *monitorSet) error {
	var own []float64
	for _, id := range ids {
		st, err := os.ReadFile(filepath.Join(b.root, id, "state.json"))
		if err != nil {
			return err
		}
		var s struct {
			Pid        int `json:"pid"`
			MonitorPid int `json:"monitorPid"`
		}
		if err := json.Unmarshal(st, &s); err != nil || s.MonitorPid <= 0 {
			return fmt.Errorf("state.json of %s: no monitorPid (%v)", id, err)
		}
		m, err := readMem(s.MonitorPid)
		if err != nil {
			return fmt.Errorf("the monitor of %s: %w", id, err)
		}
		set.Monitors = append(set.Monitors, m)
		if c, err := readMem(s.Pid); err == nil {
			own = append(own, float64(c.RSS))
		}
	}
	set.Container = int64(harness.Median(own))
	return nil
}

func readMem(pid int) (memInfo, error) {
	m := memInfo{Pid: pid}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	var ok bool
	if m.RSS, ok = kibField(string(st), "VmRSS"); !ok {
		return m, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	m.Anon, _ = kibField(string(st), "RssAnon")
	m.File, _ = kibField(string(st), "RssFile")
	if roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		m.Pss, _ = kibField(string(roll), "Pss")
	}
	return m, nil
}

// kerrCmd runs `kerr oci --root R ARGS...` with its output in a file (a monitor that
// create leaves holds create's stdio for a moment: no pipe to wait on).
func (b *bench) kerrCmd(ctx context.Context, args ...string) error {
	out, err := os.CreateTemp(b.tmp, "out-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, b.kerr, append([]string{"oci", "--root", b.root}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		return fmt.Errorf("kerr oci %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// cleanup deletes with --force every container this run left (an interrupted or failed
// run leaves some).
func (b *bench) cleanup() {
	ents, err := os.ReadDir(b.root)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			harness.Logf("cleaning up %s: %v", b.root, err)
		}
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		harness.Logf("cleaning up: container %s was left; deleting it", e.Name())
		if err := b.kerrCmd(context.Background(), "delete", "--force", e.Name()); err != nil {
			harness.Logf("cleaning up: %v", err)
		}
	}
}
