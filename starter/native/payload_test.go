package native

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
)

func TestMergeEnv(t *testing.T) {
	cases := []struct {
		name             string
		base, over, want []string
	}{
		{"empty", nil, nil, []string{}},
		{"base only", []string{"A=1", "B=2"}, nil, []string{"A=1", "B=2"}},
		{"over replaces in place", []string{"A=1", "B=2", "C=3"}, []string{"B=x"}, []string{"A=1", "B=x", "C=3"}},
		{"over adds at the end", []string{"A=1"}, []string{"Z=9", "Y=8"}, []string{"A=1", "Z=9", "Y=8"}},
		{"last of over wins", []string{"A=1"}, []string{"A=2", "A=3"}, []string{"A=3"}},
		{"duplicates in base collapse", []string{"A=1", "B=2", "A=3"}, nil, []string{"A=3", "B=2"}},
		{"empty value replaces", []string{"PATH=/bin"}, []string{"PATH="}, []string{"PATH="}},
		{"value with =", []string{"A=1"}, []string{"A=b=c"}, []string{"A=b=c"}},
		{"names are exact", []string{"A=1", "AB=2"}, []string{"A=x"}, []string{"A=x", "AB=2"}},
		{"names are case-sensitive", []string{"path=/x"}, []string{"PATH=/y"}, []string{"path=/x", "PATH=/y"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := slices.Clone(tc.base)
			got := mergeEnv(tc.base, tc.over)
			if !slices.Equal(got, tc.want) {
				t.Errorf("mergeEnv(%q, %q) = %q, want %q", tc.base, tc.over, got, tc.want)
			}
			if !slices.Equal(base, tc.base) {
				t.Errorf("mergeEnv changed its base: %q", tc.base)
			}
		})
	}
}

func TestValidShellName(t *testing.T) {
	for name, want := range map[string]bool{
		"A": true, "_": true, "PATH": true, "a_b9": true, "_9": true, "FOO_BAR_1": true,
		"": false, "9A": false, "A-B": false, "A B": false, "A;B": false, "A=B": false,
		"$(id)": false, "`id`": false, "A\nB": false, "é": false, "A.B": false, "A\x00": false,
		"A'": false, "PATH;touch x": false, "{A}": false,
	} {
		if got := validShellName(name); got != want {
			t.Errorf("validShellName(%q) = %v, want %v", name, got, want)
		}
	}
}

// hostile are values a caller may put in the environment: each one must reach the payload
// as it is, and none may run anything on the way. MARK is replaced with a file path.
var hostile = []string{
	"plain",
	"",
	"it's",
	`a"b`,
	"$(touch MARK.1)",
	"`touch MARK.2`",
	"x\ntouch MARK.3",
	"'; touch MARK.4; '",
	"'\"$(touch MARK.5)\"'",
	`\'$(touch MARK.6)`,
	"$HOME ${IFS} $0 $@ $$",
	"a\\",
	"* ? [a-z] ~",
	" leading and trailing ",
	"tab\there",
	"ümlaut ✓",
	"\n",
	"'",
	"''",
	"x'\n'$(touch MARK.7)'\n",
	"$(touch MARK.8)'",
}

func hostileValues(dir string) []string {
	out := make([]string, len(hostile))
	for i, v := range hostile {
		out[i] = strings.ReplaceAll(v, "MARK", filepath.Join(dir, "mark"))
	}
	return out
}

func checkNoMarks(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "mark*"))
	if len(m) > 0 {
		t.Errorf("a value was executed by the shell: %q exist", m)
	}
}

func TestShellQuote(t *testing.T) {
	dir := t.TempDir()
	for _, v := range hostileValues(dir) {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(v)).Output()
		if err != nil {
			t.Errorf("sh -c printf %%s %s: %v", shellQuote(v), err)
			continue
		}
		if string(out) != v {
			t.Errorf("shellQuote(%q) reads back as %q", v, out)
		}
	}
	checkNoMarks(t, dir)
	// The control: the same kind of value unquoted does run, so a mark is what a missing
	// quote would leave.
	ctl := filepath.Join(dir, "control")
	if err := exec.Command("/bin/sh", "-c", "X=$(touch "+ctl+")").Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ctl); err != nil {
		t.Fatalf("control: an unquoted $(...) did not run (%v); the test proves nothing", err)
	}
}

func actionContainer(action string, override, args []string) *container {
	return &container{plan: &Plan{Action: action, EnvOverride: override, Args: args}}
}

// Every action script is valid sh, whatever the caller's variables.
func TestActionScriptSyntax(t *testing.T) {
	dir := t.TempDir()
	var override []string
	for i, v := range hostileValues(dir) {
		override = append(override, "V"+string(rune('A'+i))+"="+v)
	}
	for _, action := range []string{rpcnative.ActionExec, rpcnative.ActionRun, rpcnative.ActionShell} {
		script := actionContainer(action, override, nil).actionScript()
		cmd := exec.Command("/bin/sh", "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v: %s\n%s", action, err, out, script)
		}
	}
	checkNoMarks(t, dir)
}

// The exec action's script sets the caller's explicit variables to exactly their values,
// leaves out names sh cannot take, and runs the command from the arguments, none of them
// read as shell code.
func TestActionScriptRunsNothingOfTheCallers(t *testing.T) {
	dir := t.TempDir()
	values := hostileValues(dir)
	var override []string
	want := map[string]string{}
	for i, v := range values {
		k := "KERR_TEST_V" + string(rune('A'+i))
		override = append(override, k+"="+v)
		want[k] = v
	}
	mark := filepath.Join(dir, "mark")
	badNames := []string{
		"BAD;touch " + mark + ".k1;X=1",
		"$(touch " + mark + ".k2)=1",
		"A B=1",
		"9LIVES=1",
		"A\ntouch " + mark + ".k3\nB=1",
	}
	override = append(override, badNames...)
	args := []string{"/usr/bin/env", "-0"}
	c := actionContainer(rpcnative.ActionExec, override, args)
	script := c.actionScript()

	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "kerr-exec"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the exec script: %v: %s\n%s", err, stderr.String(), script)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %q in the payload, want %q (set: %v)", k, g, v, ok)
		}
	}
	for _, bad := range badNames {
		k, _, _ := strings.Cut(bad, "=")
		if _, ok := got[k]; ok {
			t.Errorf("a variable named %q reached the payload", k)
		}
	}
	checkNoMarks(t, dir)

	// Arguments are the command's, not shell words: $(...) and backticks stay text.
	argv := []string{"/usr/bin/printf", "%s|", "$(touch " + mark + ".a1)", "`touch " + mark + ".a2`", "a b", "it's"}
	c = actionContainer(rpcnative.ActionExec, nil, argv)
	out, err = exec.Command("/bin/sh", append([]string{"-c", c.actionScript(), "kerr-exec"}, argv...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(argv[2:], "|") + "|"; string(out) != want {
		t.Errorf("arguments: %q, want %q", out, want)
	}
	checkNoMarks(t, dir)
}
