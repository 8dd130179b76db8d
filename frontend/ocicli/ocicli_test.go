package ocicli

import (
	"testing"

	"github.com/urfave/cli/v2"
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
