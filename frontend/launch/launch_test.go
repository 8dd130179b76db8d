package launch

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeStarter writes a script that plays the starter: it checks its command line, copies
// what it reads on fd 3 to got, prints stderr lines and exits with code.
func fakeStarter(t *testing.T, stderr string, code int) (bin, got string) {
	t.Helper()
	dir := t.TempDir()
	got = filepath.Join(dir, "config")
	bin = filepath.Join(dir, "starter")
	script := "#!/bin/sh\n" +
		`[ "$1" = --config-fd ] && [ "$2" = 3 ] && [ $# -eq 2 ] || { echo "starter: bad args $*" >&2; exit 254; }` + "\n" +
		"cat <&3 > " + got + "\n" +
		"printf '" + stderr + "' >&2\n" +
		"exit " + itoa(code) + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, got
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestRunSendsTheEnvelopeOnFd3(t *testing.T) {
	bin, got := fakeStarter(t, "", 0)
	cfg := map[string]string{"action": "mount", "bundle": "/b"}
	if err := Run("bundle", "bundle-1", cfg, Options{Starter: bin, CaptureStderr: true}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Version int               `json:"version"`
		Engine  string            `json:"engine"`
		ID      string            `json:"id"`
		Config  map[string]string `json:"config"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("starter got %q: %v", b, err)
	}
	if env.Version != 1 || env.Engine != "bundle" || env.ID != "bundle-1" || env.Config["bundle"] != "/b" {
		t.Errorf("starter got %+v", env)
	}
}

func TestRunReportsTheStartersLastLineAndCode(t *testing.T) {
	bin, _ := fakeStarter(t, "noise\\nstarter: mount /b: no loop device free\\n", 7)
	err := Run("bundle", "bundle-1", map[string]string{}, Options{Starter: bin, CaptureStderr: true})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Run = %v, want an ExitError", err)
	}
	if ee.Code != 7 || ee.Msg != "mount /b: no loop device free" || ExitCode(err) != 7 {
		t.Errorf("ExitError = %+v", ee)
	}
}

func TestRunWithoutStarter(t *testing.T) {
	err := Run("bundle", "bundle-1", map[string]string{}, Options{Starter: "/nonexistent/starter"})
	if err == nil || !strings.Contains(err.Error(), "is kerr installed") {
		t.Errorf("Run = %v", err)
	}
}

func TestLimitedBufferKeepsTheEnd(t *testing.T) {
	var b limitedBuffer
	big := strings.Repeat("x", maxStderr) + "\nstarter: last\n"
	for _, chunk := range []string{big[:100], big[100:]} {
		if _, err := b.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() > maxStderr || lastLine(b.String()) != "last" {
		t.Errorf("kept %d bytes, last line %q", b.Len(), lastLine(b.String()))
	}
}
