package ocicli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/errdefs"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"TERM": 15, "SIGTERM": 15, "sigkill": 9, "9": 9, "USR1": 10, "RTMIN": 34, "RTMIN+3": 37, "SIGRTMAX-1": 63, "64": 64} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "NOSUCH", "RTMIN+40", "SIG"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) accepted", bad)
		}
	}
}

// kerr-runc's hidden --no-monitor defaults to true: create must see it unset on the command
// line; kerr's oci group has no such application flag and keeps the monitor.
func TestLineageBoolFallsBackToTheAppDefault(t *testing.T) {
	for _, tc := range []struct {
		appDefault *bool
		args       []string
		want       bool
	}{
		{appDefault: ptr(true), args: []string{"app", "create"}, want: true},
		{appDefault: ptr(true), args: []string{"app", "--no-monitor=false", "create"}, want: false},
		{appDefault: nil, args: []string{"app", "create"}, want: false},
	} {
		var got bool
		app := &cli.App{Name: "app", Commands: []*cli.Command{{Name: "create", Action: func(c *cli.Context) error {
			got = lineageBool(c, "no-monitor")
			return nil
		}}}}
		if tc.appDefault != nil {
			app.Flags = []cli.Flag{&cli.BoolFlag{Name: "no-monitor", Value: *tc.appDefault, Hidden: true}}
		}
		if err := app.Run(tc.args); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%v: lineageBool = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// update --from-file and exec --process take one JSON value: what follows it is refused,
// not ignored, and a missing file is "not found" (exit 4).
func TestReadJSONInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc string
		want      error // nil: accepted
		says      string
	}{
		{"one value", `{"pids":{"limit":5}}`, nil, ""},
		{"trailing blanks", "{\"pids\":{\"limit\":5}}\n \n", nil, ""},
		{"trailing garbage", `{"pids":{"limit":5}} x`, errdefs.ErrUsage, "data after the JSON value"},
		{"two values", `{"pids":{"limit":5}} {}`, errdefs.ErrUsage, "data after the JSON value"},
		{"a stray brace", `{"pids":{"limit":5}} }`, errdefs.ErrUsage, "data after the JSON value"},
		{"empty", ``, errdefs.ErrUsage, "EOF"},
		{"unknown field", `{"memroy":{}}`, errdefs.ErrUsage, "memroy"},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		var r specs.LinuxResources
		err := readJSONInput("--from-file", f, &r)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == nil && (r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit != 5):
			t.Errorf("%s: decoded %+v", tc.name, r)
		case tc.want != nil && (!errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.HasPrefix(err.Error(), "--from-file "+f+": ")):
			t.Errorf("%s: error %v, want %v saying %q after the flag and file", tc.name, err, tc.want, tc.says)
		}
	}
	err := readJSONInput("--from-file", filepath.Join(dir, "missing.json"), &specs.LinuxResources{})
	if !errors.Is(err, errdefs.ErrNotFound) || errdefs.ExitCode(err) != errdefs.ExitNotFound || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing file: %v, want not found (exit 4) saying no such file", err)
	}
}
