package sylayout

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runSh runs a generated script with /bin/sh and returns its output: the scripts are tested
// by executing them, not by comparing text.
func runSh(t *testing.T, script string, args ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/sh", append([]string{p}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("script failed: %v\n%s\n--- script:\n%s", err, out, script)
	}
	return string(out)
}

func TestRunscriptEntrypointAndCmd(t *testing.T) {
	rs := Runscript([]string{"/bin/echo", "ep"}, []string{"default", "a b"})
	if got := runSh(t, rs); got != "ep default a b\n" {
		t.Errorf("no args: %q", got)
	}
	if got := runSh(t, rs, "x", "y"); got != "ep x y\n" {
		t.Errorf("args replace CMD: %q", got)
	}
	if got := runSh(t, Runscript(nil, []string{"/bin/echo", "only-cmd"}), "/bin/echo", "mine"); got != "mine\n" {
		t.Errorf("CMD only, args replace it: %q", got)
	}
}

func TestQuotingCannotInject(t *testing.T) {
	evil := `'; echo INJECTED; '$(echo X)` + "`echo Y`"
	if got := runSh(t, Runscript([]string{"/bin/echo"}, []string{evil})); got != evil+"\n" {
		t.Errorf("runscript mangled or ran the argument: %q", got)
	}
	env := DockerEnv([]string{"A=" + evil, "PATH=/x:/y", "BAD-NAME=1", "NOEQUALS"})
	if strings.Contains(env, "BAD-NAME") || strings.Contains(env, "NOEQUALS") {
		t.Errorf("invalid names exported:\n%s", env)
	}
	got := runSh(t, env+"printf '%s|%s' \"$A\" \"$PATH\"\n")
	if got != evil+"|/x:/y" {
		t.Errorf("env values: %q", got)
	}
}

func TestFilesHaveTheLayout(t *testing.T) {
	files, err := Files(nil, map[string]string{"k": "v"}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{".singularity.d/runscript": false, ".singularity.d/actions/run": false,
		".singularity.d/env/90-environment.sh": false, "environment": false, "singularity": false, ".singularity.d/labels.json": false}
	for _, f := range files {
		if _, ok := want[f.Header.Name]; ok {
			want[f.Header.Name] = true
		}
		if f.Header.Size != int64(len(f.Data)) {
			t.Errorf("%s: size %d, data %d", f.Header.Name, f.Header.Size, len(f.Data))
		}
	}
	for n, seen := range want {
		if !seen {
			t.Errorf("layout lacks %s", n)
		}
	}
}
