package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cmd is a command for Run to run and measure.
type Cmd struct {
	Args  []string
	Env   []string  // nil: this process's environment
	Stdin io.Reader // nil: none
	// PeakRSS runs the command under GNU time, when it is installed, for Result.MaxRSS. Go
	// starts commands with vfork, and the kernel carries the parent's peak RSS over to the
	// child at exec, so the wait4 figure of a command started from a Go program is never below
	// that program's own peak; time forks for real. It adds time's own start to Wall.
	PeakRSS bool
	// Tail is how many of the last lines of the command's output (stdout and stderr) a
	// failure's error quotes; 0 quotes all of it.
	Tail int
}

// Result is what one command cost.
type Result struct {
	Wall float64 // seconds
	// CPU is the user and system time, in seconds, of the command and every descendant it
	// waited for.
	CPU float64
	// MaxRSS is the peak RSS in KiB of the largest single process among them: from GNU time
	// with Cmd.PeakRSS, else from wait4 (see Cmd.PeakRSS for why that one may be too high).
	MaxRSS int64
	// Busy is the CPU time, in seconds, the whole machine spent on anything but idle and
	// iowait while the command ran, the command included (from /proc/stat).
	Busy float64
}

// Others is the share of the machine's CPU capacity that other processes used while the
// command ran: Busy less the command's own CPU time, over Wall times the number of CPUs.
// Kernel threads working for the command (writing back its output) count as others. Runs of
// a few milliseconds are below /proc/stat's resolution of 10 ms. It is 0 for no Wall.
func (r Result) Others() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return max(0, r.Busy-r.CPU) / (r.Wall * float64(runtime.NumCPU()))
}

// Run runs c, with its stdout and stderr kept for the error, and measures it. A command that
// fails still has its Result; the error names the command and quotes its output.
func Run(ctx context.Context, c Cmd) (Result, error) {
	args := c.Args
	shown := strings.Join(args, " ")
	var rssFile string
	if c.PeakRSS {
		if tb, err := exec.LookPath("time"); err == nil && filepath.IsAbs(tb) {
			f, err := os.CreateTemp("", "bench-rss-")
			if err != nil {
				return Result{}, err
			}
			rssFile = f.Name()
			f.Close()
			defer os.Remove(rssFile)
			args = append([]string{tb, "-f", "%M", "-o", rssFile}, args...)
		}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = c.Env
	cmd.Stdin = c.Stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	busy0 := BusyCPU()
	start := time.Now()
	err := cmd.Run()
	r := Result{Wall: time.Since(start).Seconds()}
	r.Busy = BusyCPU() - busy0
	if ps := cmd.ProcessState; ps != nil {
		r.CPU = (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = ru.Maxrss
		}
	}
	if rssFile != "" {
		b, _ := os.ReadFile(rssFile)
		if kib, ok := parseTimeRSS(string(b)); ok {
			r.MaxRSS = kib
		}
	}
	if err != nil {
		quoted := strings.TrimSpace(out.String())
		if c.Tail > 0 {
			quoted = lastLines(out.String(), c.Tail)
		}
		return r, fmt.Errorf("%s: %w\n%s", shown, err, quoted)
	}
	return r, nil
}

// parseTimeRSS reads the peak RSS in KiB from what `time -f %M` wrote: its last line. On
// failure time writes "Command exited with non-zero status N" or "Command terminated by
// signal N" before it.
func parseTimeRSS(s string) (int64, bool) {
	kib, err := strconv.ParseInt(strings.TrimSpace(lastLines(s, 1)), 10, 64)
	return kib, err == nil
}

// lastLines is the last n lines of s, without its final newlines.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// BusyCPU returns the CPU seconds the machine has spent on anything but idle and iowait.
func BusyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseBusy(string(b))
}

// parseBusy sums the busy fields of /proc/stat's first line, the all-CPUs one, in seconds.
func parseBusy(stat string) float64 {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[min(len(f), 1):min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return float64(ticks) / 100 // USER_HZ
}
