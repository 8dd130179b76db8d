package ocisuite

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Outputs as the suite's programs print them (shortened).
const (
	hooksOut = `TAP version 13
  ---
  {
    "error": "Hooks MUST be called in the listed order\nRefer to: https://github.com/opencontainers/runtime-spec/blob/v1.3.0/config.md#posix-platform-hooks"
  }
  ...
1..0
`
	twoStreamsOut = `TAP version 13
ok 1 - find cpu cgroup
ok 2 - cpu shares is set correctly
# expect: 1024, actual: 1024
1..2
TAP version 13
1..0
`
	notOKOut = `TAP version 13
ok 1 - start without an id fails
not ok 2 - attempting to ` + "`delete`" + ` a container that is not ` + "`stopped`" + ` MUST generate an error
  ---
  {
    "error": "exit status 4",
    "reference": "https://github.com/opencontainers/runtime-spec/blob/v1.3.0/runtime.md#delete",
    "stderr": "kerr: container \"x\" does not exist\n"
  }
  ...
1..2
`
	attachedErrorOut = `TAP version 13
ok 1 - attempting to ` + "`delete`" + ` a container that is not ` + "`stopped`" + ` MUST generate an error
  ---
  {
    "error": "exit status 9",
    "stderr": "kerr: container \"x\" is running\n"
  }
  ...
1..1
`
	skipOut = `TAP version 13
1..1
ok 1 # SKIP linux-specific process.capabilities test
`
	shortPlanOut = `TAP version 13
ok 1 - a
1..3
`
	multiErrorOut = `TAP version 13
not ok 1 - the state of the container MUST be passed to "prestart" hook over stdin
  ---
  {
    "error": "1 error occurred:\n\t* wrong status \"creating\" in the stdin of prestart hook, expected \"created\"\n\n",
    "reference": "https://github.com/opencontainers/runtime-spec/blob/v1.3.0/config.md#posix-platform-hooks"
  }
  ...
1..1
`
	notOKCommentOut = `TAP version 13
ok 1 - find devices
not ok 2 - devices c 10:229 rwm is set correctly
# expect: c 10:229 rwm, actual: b 0:0 m
1..2
`
)

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name, prog, stdout, stderr string
		code                       int
		runErr                     error
		pass                       bool
		detail                     string // substring of Detail
	}{
		{name: "orphan error", prog: "hooks", stdout: hooksOut, detail: "error: Hooks MUST be called in the listed order"},
		{name: "two streams", prog: "linux_cgroups_cpus", stdout: twoStreamsOut, pass: true, detail: "2 tests"},
		{name: "not ok with stderr", prog: "delete", stdout: notOKOut, detail: `not ok 2 - attempting to ` + "`delete`"},
		{name: "not ok names the runtime's error", prog: "delete", stdout: notOKOut, detail: `(kerr: container "x" does not exist)`},
		{name: "error attached to an ok line", prog: "delete", stdout: attachedErrorOut, pass: true},
		{name: "leading plan", prog: "process_capabilities", stdout: skipOut, pass: true},
		{name: "plan not met", prog: "x", stdout: shortPlanOut, detail: "plan 1..3 but 1 tests ran"},
		{name: "not ok and comments", prog: "linux_cgroups_devices", stdout: notOKCommentOut, detail: "not ok 2 - devices c 10:229 rwm is set correctly"},
		{name: "fail program without TAP", prog: "process_rlimits_fail", pass: true},
		{name: "fail program that exits 1", prog: "process_rlimits_fail", code: 1,
			stderr: "failed to create the container\nkerr: bad\n", detail: "exit 1 (kerr: bad)"},
		{name: "program without TAP", prog: "process_capabilities", stderr: "starter: capabilities: operation not permitted\n",
			detail: "no TAP output (starter: capabilities: operation not permitted)"},
		{name: "exit status wins over a clean TAP", prog: "linux_devices", code: 1, stdout: skipOut,
			stderr: "failed to create the container\nkerr: cgroups: devices[13].type\nexit status 1\n", detail: "exit 1 (kerr: cgroups: devices[13].type)"},
		{name: "not ok with a multi-line error", prog: "hooks_stdin", stdout: multiErrorOut,
			detail: `not ok 1 - the state of the container MUST be passed to "prestart" hook over stdin (1 error occurred: * wrong status "creating" in the stdin of prestart hook, expected "created")`},
		{name: "timeout", prog: "x", code: -1, runErr: errors.New("timed out after 1m0s"), stdout: "TAP version 13\nok 1 - a\n", detail: "timed out after 1m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(c.prog, c.code, c.runErr, c.stdout, c.stderr)
			if v.Pass != c.pass || !strings.Contains(v.Detail, c.detail) {
				t.Errorf("Judge = %+v, want pass %v and a detail containing %q", v, c.pass, c.detail)
			}
		})
	}
}

func TestParse(t *testing.T) {
	p := Parse(twoStreamsOut)
	if len(p.Streams) != 2 || !slices.Equal(p.Streams[0].Plans, []int{2}) || p.Streams[0].Tests != 2 ||
		!slices.Equal(p.Streams[1].Plans, []int{0}) || p.Streams[1].Tests != 0 {
		t.Errorf("streams %+v", p.Streams)
	}
	p = Parse(notOKOut)
	if len(p.Tests) != 2 || p.Tests[1].OK || p.Tests[1].Num != 2 || p.Tests[1].Diag["error"] != "exit status 4" || len(p.Orphans) != 0 {
		t.Errorf("tests %+v orphans %v", p.Tests, p.Orphans)
	}
	p = Parse(hooksOut)
	if len(p.Tests) != 0 || len(p.Orphans) != 1 {
		t.Errorf("tests %+v orphans %v", p.Tests, p.Orphans)
	}
	// A second block after a test's own is not the test's.
	p = Parse("ok 1 - a\n  ---\n  {\"a\": 1}\n  ...\n  ---\n  {\"error\": \"e\"}\n  ...\n")
	if len(p.Orphans) != 1 || p.Tests[0].Diag["a"] != float64(1) {
		t.Errorf("tests %+v orphans %v", p.Tests, p.Orphans)
	}
}

func TestCreatedIDs(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls.log")
	content := strings.Join([]string{
		"create --bundle /tmp/ocitest1",            // no id: the suite checks that this fails
		"create --bundle /tmp/ocitest1 a-1",        //
		"start a-1",                                //
		"create --pid-file /tmp/p --bundle /b b-2", //
		"create --bundle /tmp/ocitest2 a-1",        // the same id again
		"delete --force b-2",
		"",
	}, "\n")
	if err := os.WriteFile(log, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := CreatedIDs(log); !slices.Equal(got, []string{"a-1", "b-2"}) {
		t.Errorf("CreatedIDs = %q", got)
	}
}

// The wrapper passes arguments through unchanged, keeps the exit status and prints only
// what the runtime prints.
func TestWriteWrapper(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake kerr")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do echo \"[$a]\"; done\nexit 4\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper, callLog := filepath.Join(dir, "runtime"), filepath.Join(dir, "it's calls.log")
	if err := WriteWrapper(wrapper, fake, "/state dir", callLog); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrapper, "state", "id with space").Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Fatalf("wrapper: %v, want exit 4", err)
	}
	want := "[oci]\n[--no-monitor]\n[--root]\n[/state dir]\n[state]\n[id with space]\n"
	if string(out) != want {
		t.Errorf("wrapper printed %q, want %q", out, want)
	}
	if b, _ := os.ReadFile(callLog); string(b) != "state id with space\n" {
		t.Errorf("call log %q", b)
	}
}

func TestPrograms(t *testing.T) {
	mod := t.TempDir()
	for _, d := range []string{"validation/util", "validation/a", "validation/b", "validation/empty", "validation/onlytest"} {
		if err := os.MkdirAll(filepath.Join(mod, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"validation/util/u.go", "validation/a/a.go", "validation/b/b.go", "validation/onlytest/x_test.go"} {
		if err := os.WriteFile(filepath.Join(mod, f), []byte("package main\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Programs(mod)
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Programs = %q, %v", got, err)
	}
}

func TestProcsInGroup(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := ProcsInGroup(cmd.Process.Pid); !slices.Equal(got, []int{cmd.Process.Pid}) {
		t.Errorf("ProcsInGroup = %v, want [%d]", got, cmd.Process.Pid)
	}
}
