package oci

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidate(t *testing.T) {
	ok := []Config{
		{Action: ActionCreate, Root: "/run/kerr", Bundle: "/b", Monitor: true, LogPath: "/l", LogFormat: LogJSON},
		{Action: ActionCreate, Root: "/run/kerr", Bundle: "/b", ConsoleSocket: "/s", PreserveFDs: 3},
		{Action: ActionRun, Root: "/r", Bundle: "/b"},
		{Action: ActionKill, Root: "/r", Signal: 9},
		{Action: ActionExec, Root: "/r", ExecArgs: []string{"sh"}},
		{Action: ActionExec, Root: "/r", Process: &specs.Process{Args: []string{"sh"}}},
		{Action: ActionState, Root: "/r"},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := map[string]Config{
		"relative root":           {Action: ActionState, Root: "run"},
		"unclean bundle":          {Action: ActionCreate, Root: "/r", Bundle: "/b/../c"},
		"log without monitor":     {Action: ActionCreate, Root: "/r", Bundle: "/b", LogPath: "/l"},
		"console with monitor":    {Action: ActionCreate, Root: "/r", Bundle: "/b", Monitor: true, ConsoleSocket: "/s"},
		"bad log format":          {Action: ActionCreate, Root: "/r", Bundle: "/b", Monitor: true, LogFormat: "xml"},
		"signal 0":                {Action: ActionKill, Root: "/r"},
		"signal 65":               {Action: ActionKill, Root: "/r", Signal: 65},
		"exec without args":       {Action: ActionExec, Root: "/r"},
		"exec with both":          {Action: ActionExec, Root: "/r", ExecArgs: []string{"a"}, Process: &specs.Process{Args: []string{"b"}}},
		"process without args":    {Action: ActionExec, Root: "/r", Process: &specs.Process{}},
		"unknown action":          {Action: "bogus", Root: "/r"},
		"preserve-fds negative":   {Action: ActionCreate, Root: "/r", Bundle: "/b", PreserveFDs: -1},
		"preserve-fds too many":   {Action: ActionCreate, Root: "/r", Bundle: "/b", PreserveFDs: MaxPreserveFDs + 1},
		"preserve-fds for delete": {Action: ActionDelete, Root: "/r", PreserveFDs: 1},
		"run log without monitor": {Action: ActionRun, Root: "/r", Bundle: "/b", LogPath: "/l"},
		"bad detach keys":         {Action: ActionAttach, Root: "/r", DetachKeys: "ctrl-1"},
		"reopen and follow":       {Action: ActionLogs, Root: "/r", Reopen: true, Follow: true},
		"relative sync socket":    {Action: ActionCreate, Root: "/r", Bundle: "/b", SyncSocket: "s"},
	}
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
}

func TestParseDetachKeys(t *testing.T) {
	good := map[string][]byte{
		"":              {0x10, 0x11},
		"ctrl-p,ctrl-q": {0x10, 0x11},
		"ctrl-A,x":      {0x01, 'x'},
		"ctrl-@,ctrl-[": {0x00, 0x1b},
		"ctrl-\\":       {0x1c},
		"none":          nil,
	}
	for in, want := range good {
		got, err := ParseDetachKeys(in)
		if err != nil || string(got) != string(want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"ctrl-1", "ctrl-", "ab", ",", "ctrl-p,", "\x01", strings.Repeat("a,", 16) + "a"} {
		if _, err := ParseDetachKeys(in); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}
