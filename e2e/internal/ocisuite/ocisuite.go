// Package ocisuite builds and judges the OCI runtime-tools validation suite
// (github.com/opencontainers/runtime-tools, validation/<name> and cmd/runtimetest) for the
// e2e test that runs it against `kerr oci`.
//
// The suite's programs print TAP on stdout (a few print two TAP streams, the `*_fail` ones
// often none) and some report a failure only as a YAML diagnostic with an "error" key that
// follows no test line, so Judge reads the output itself rather than with a TAP harness.
package ocisuite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Module is the Go module of the suite; kerr's go.mod pins its version.
const Module = "github.com/opencontainers/runtime-tools"

// FindGo returns the go command to build with: $GO, then go on PATH, then the places
// mconfig also looks.
func FindGo() (string, error) {
	cands := []string{os.Getenv("GO")}
	if p, err := exec.LookPath("go"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, "/usr/local/go/bin/go", "/usr/local/bin/go", "/usr/lib/go/bin/go")
	for _, c := range cands {
		if c == "" {
			continue
		}
		if info, err := os.Stat(c); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", errors.New("no go command: set GO or put go on PATH")
}

// ModuleDir returns the directory and version of Module as the module in repo requires it.
func ModuleDir(ctx context.Context, goCmd, repo string) (dir, version string, err error) {
	cmd := exec.CommandContext(ctx, goCmd, "list", "-m", "-json", Module)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m %s: %w: %s", Module, err, strings.TrimSpace(stderr.String()))
	}
	var m struct{ Dir, Version string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", "", fmt.Errorf("go list -m %s: %w", Module, err)
	}
	if m.Dir == "" {
		return "", "", fmt.Errorf("%s@%s is not in the module cache (go mod download %s)", Module, m.Version, Module)
	}
	return m.Dir, m.Version, nil
}

// Programs lists the suite's programs: every directory of moduleDir/validation holding Go
// files other than tests, except util (the shared package), sorted.
func Programs(moduleDir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(moduleDir, "validation"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "util" {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(moduleDir, "validation", e.Name(), "*.go"))
		if slices.ContainsFunc(files, func(f string) bool { return !strings.HasSuffix(f, "_test.go") }) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Build compiles the programs and cmd/runtimetest into out (one binary each, named after its
// directory), statically (CGO_ENABLED=0: runtimetest runs inside a busybox rootfs). It builds
// in the module's own directory, so the suite's go.mod and go.sum choose its dependencies.
// The go command's output goes to log.
func Build(ctx context.Context, goCmd, moduleDir, out string, programs []string, log io.Writer) error {
	args := []string{"build", "-ldflags=-s -w", "-o", out + "/"}
	for _, p := range programs {
		args = append(args, "./validation/"+p)
	}
	args = append(args, "./cmd/runtimetest")
	argv := append([]string{goCmd}, args...)
	if nice, err := exec.LookPath("nice"); err == nil {
		argv = append([]string{nice, "-n", "10"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local",
		"GOFLAGS=-mod=mod -buildvcs=false")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args[:3], " "), err)
	}
	for _, p := range append(slices.Clone(programs), "runtimetest") {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			return fmt.Errorf("go build left no %s: %w", p, err)
		}
	}
	return nil
}

// WriteWrapper writes the RUNTIME the programs call: a script that appends its arguments
// to callLog and execs kerr's OCI runtime without a monitor on the state root state, so
// that exit codes and stdout are kerr's own.
func WriteWrapper(path, kerr, state, callLog string) error {
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >>%s\nexec %s oci --no-monitor --root %s \"$@\"\n",
		shQuote(callLog), shQuote(kerr), shQuote(state))
	return os.WriteFile(path, []byte(script), 0o755)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// CreatedIDs returns the container ids of the create calls in a wrapper's call log, in
// order (a create without an id, which the suite makes to see it fail, names none).
func CreatedIDs(callLog string) []string {
	b, err := os.ReadFile(callLog)
	if err != nil {
		return nil
	}
	var ids []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "create" {
			continue
		}
		id := f[len(f)-1]
		if strings.HasPrefix(id, "-") || strings.Contains(id, "/") || slices.Contains(ids, id) {
			continue
		}
		if prev := f[len(f)-2]; prev == "--bundle" || prev == "-b" || prev == "--pid-file" {
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

// Test is one top-level TAP test line.
type Test struct {
	OK          bool
	Num         int
	Description string // after "ok N - "; a directive (# SKIP) is kept
	// Diag is the YAML block that follows the line, decoded when it is JSON (the suite's
	// tap-go writes JSON); nil when there is none.
	Diag map[string]any
}

// Stream is one TAP stream: what follows a "TAP version" header (or starts the output).
type Stream struct {
	Header bool  // it began with "TAP version"
	Plans  []int // N of each "1..N" (a plan may come first or last)
	Tests  int   // test lines
}

// TAP is what a program printed on stdout. Some programs print two streams.
type TAP struct {
	Streams []Stream
	Tests   []Test // every top-level test line, in order
	// Orphans are YAML blocks that follow no test line: the suite's lifecycle programs
	// report their verdict that way, an "error" key meaning failure.
	Orphans []map[string]any
}

var (
	testRE = regexp.MustCompile(`^(not ok|ok)\b\s*([0-9]+)?\s*(?:-\s*)?(.*)$`)
	planRE = regexp.MustCompile(`^1\.\.([0-9]+)`)
)

// Parse reads top-level TAP: test lines, plans and headers at column 0, YAML blocks
// between "  ---" and "  ...". Comments and anything else are ignored.
func Parse(stdout string) TAP {
	var t TAP
	const (
		lastNone = iota
		lastTest
		lastOther
	)
	last := lastNone
	var block []string
	inBlock := false
	cur := func() *Stream {
		if len(t.Streams) == 0 {
			t.Streams = append(t.Streams, Stream{})
		}
		return &t.Streams[len(t.Streams)-1]
	}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if inBlock {
			if strings.TrimSpace(line) == "..." {
				inBlock = false
				diag := decodeYAML(block)
				if last == lastTest && t.Tests[len(t.Tests)-1].Diag == nil {
					t.Tests[len(t.Tests)-1].Diag = diag
				} else {
					t.Orphans = append(t.Orphans, diag)
				}
				last = lastOther
				continue
			}
			block = append(block, line)
			continue
		}
		switch {
		case strings.TrimSpace(line) == "---" && strings.HasPrefix(line, " "):
			inBlock, block = true, nil
		case strings.HasPrefix(line, "TAP version"):
			t.Streams = append(t.Streams, Stream{Header: true})
			last = lastOther
		case planRE.MatchString(line):
			n, _ := strconv.Atoi(planRE.FindStringSubmatch(line)[1])
			cur().Plans = append(cur().Plans, n)
			last = lastOther
		case testRE.MatchString(line):
			m := testRE.FindStringSubmatch(line)
			n, _ := strconv.Atoi(m[2])
			t.Tests = append(t.Tests, Test{OK: m[1] == "ok", Num: n, Description: strings.TrimSpace(m[3])})
			cur().Tests++
			last = lastTest
		}
	}
	if inBlock { // an unterminated block still says what it says
		t.Orphans = append(t.Orphans, decodeYAML(block))
	}
	return t
}

// decodeYAML decodes a block's JSON; a block that is not JSON is kept as {"text": ...}.
func decodeYAML(lines []string) map[string]any {
	text := strings.Join(lines, "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err == nil {
		return m
	}
	return map[string]any{"text": strings.TrimSpace(text)}
}

// Verdict is a program's result.
type Verdict struct {
	Pass bool
	// Detail says why it failed: the first failing assertion, an orphan error, the exit
	// status with the runtime's last error line; for a pass, how many tests ran.
	Detail string
	Tests  int // top-level test lines
}

// IsFailProgram reports whether name is one of the `*_fail` programs, which check that
// the runtime refuses or survives something and often print no TAP at all.
func IsFailProgram(name string) bool { return strings.HasSuffix(name, "_fail") }

// Judge decides a program's result from its exit status (-1: killed or timed out, with
// runErr saying which) and output. A program passes when it exited 0, printed no `not ok`,
// no YAML "error" block that follows no test line, ran as many tests as each plan says,
// and (unless it is a `*_fail` program) printed TAP at all.
func Judge(name string, code int, runErr error, stdout, stderr string) Verdict {
	t := Parse(stdout)
	v := Verdict{Tests: len(t.Tests)}
	why := func() string {
		if l := runtimeError(stderr); l != "" {
			return " (" + l + ")"
		}
		return ""
	}
	for _, tt := range t.Tests {
		if !tt.OK {
			v.Detail = fmt.Sprintf("not ok %d - %s", tt.Num, tt.Description)
			if s, _ := tt.Diag["stderr"].(string); strings.TrimSpace(s) != "" {
				v.Detail += " (" + lastLine(s) + ")"
			} else if e, _ := tt.Diag["error"].(string); strings.TrimSpace(e) != "" && !strings.Contains(tt.Description, firstLine(e)) {
				v.Detail += " (" + oneLine(e) + ")"
			} else {
				v.Detail += why()
			}
			return v
		}
	}
	for _, o := range t.Orphans {
		if e, _ := o["error"].(string); strings.TrimSpace(e) != "" {
			v.Detail = "error: " + firstLine(e)
			if s, _ := o["stderr"].(string); strings.TrimSpace(s) != "" {
				v.Detail += " (" + lastLine(s) + ")"
			}
			return v
		}
		if txt, _ := o["text"].(string); strings.Contains(txt, "error") {
			v.Detail = "error: " + firstLine(txt)
			return v
		}
	}
	if code != 0 {
		if code < 0 && runErr != nil {
			v.Detail = runErr.Error()
		} else {
			v.Detail = fmt.Sprintf("exit %d", code)
		}
		v.Detail += why()
		return v
	}
	for _, s := range t.Streams {
		planned := 0
		for _, n := range s.Plans {
			planned += n
		}
		if len(s.Plans) > 0 && planned != s.Tests {
			v.Detail = fmt.Sprintf("plan 1..%d but %d tests ran", planned, s.Tests)
			return v
		}
	}
	if !IsFailProgram(name) && len(t.Streams) == 0 {
		v.Detail = "no TAP output" + why()
		return v
	}
	v.Pass = true
	v.Detail = fmt.Sprintf("%d tests", len(t.Tests))
	return v
}

// runtimeError is the most telling line of a program's stderr: the last one kerr (or the
// container's starter) wrote, else the last line.
func runtimeError(stderr string) string {
	var last, kerr string
	for l := range strings.SplitSeq(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		last = l
		if strings.HasPrefix(l, "kerr: ") || strings.HasPrefix(l, "starter: ") {
			kerr = l
		}
	}
	if kerr != "" {
		return kerr
	}
	return last
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// oneLine joins a multi-line error (a multierror's list) into one line, without the
// suite's "Refer to: <spec URL>" lines.
func oneLine(s string) string {
	var parts []string
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Refer to:") {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// ProcsInGroup lists the live processes (not zombies) of process group pgid.
func ProcsInGroup(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			out = append(out, pid)
		}
	}
	return out
}
