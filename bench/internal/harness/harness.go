// Package harness holds what kerr's benchmark programs share: a
// command runner that measures wall time, CPU time, peak RSS and how busy the rest of the
// machine was meanwhile; the median; the page cache drop between measurements; the
// description of the host; writing the JSON report; small helpers for logging, finding
// the repository and printing sizes; and (setup.go) what the benchmarks that run containers
// share: input checks, crun's private mount namespace, leak checks.
package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Logf logs a line to stderr, after the time of day.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// RepoRoot finds the kerr module's root from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(mod), "module github.com/kerr-hpc/kerr\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the kerr repository")
		}
		dir = parent
	}
}

// MB formats n bytes as decimal megabytes, e.g. "168.5 MB".
func MB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// Median is the median of xs (the mean of the two middle values when there is an even number
// of them), 0 for none. xs is left as it is.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Settle writes dirty pages back to disk and, if drop, empties the page cache, so that what is
// measured next reads its files from disk. It returns an error only when the page cache could
// not be dropped (dropping needs root); the caller then knows later measurements run warm.
func Settle(drop bool) error {
	syscall.Sync()
	if !drop {
		return nil
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// WriteReport writes v to path as indented JSON ending in a newline, making path's directory
// first, and logs where it went.
func WriteReport(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return err
	}
	Logf("wrote %s", path)
	return nil
}

// Host describes the machine a benchmark ran on, as its JSON report records it.
type Host struct {
	CPUs   int               `json:"cpus"`
	Kernel string            `json:"kernel"`
	Go     string            `json:"go"`
	Tools  map[string]string `json:"tools"` // name: first line of its version output
}

// HostInfo describes this machine and the tools named in tools, each with the command that
// prints its version (a tool that is missing or fails gets what it printed, maybe nothing).
func HostInfo(tools map[string][]string) Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version(), Tools: map[string]string{}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	for name, args := range tools {
		out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		h.Tools[name] = first
	}
	return h
}
