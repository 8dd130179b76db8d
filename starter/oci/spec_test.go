package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

// minimalSpec is a valid config for a bundle in dir (with an empty rootfs).
func minimalSpec(t *testing.T) (map[string]any, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"ociVersion": "1.2.0",
		"root":       map[string]any{"path": "rootfs"},
		"process":    map[string]any{"args": []string{"/bin/sh"}, "cwd": "/", "user": map[string]any{"uid": 0, "gid": 0}},
		"linux":      map[string]any{"namespaces": []map[string]any{{"type": "pid"}, {"type": "mount"}}},
	}, dir
}

func parse(t *testing.T, m map[string]any, dir string) (*specs.Spec, error) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return parseSpec(b, dir)
}

func TestParseSpecAcceptsAndResolvesRoot(t *testing.T) {
	m, dir := minimalSpec(t)
	s, err := parse(t, m, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != filepath.Join(dir, "rootfs") {
		t.Errorf("root.path %q is not resolved against the bundle", s.Root.Path)
	}
	// An unknown property is ignored (the spec says so), with a warning.
	m["somethingNew"] = true
	if _, err := parse(t, m, dir); err != nil {
		t.Errorf("unknown property: %v", err)
	}
}

func TestParseSpecRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(m map[string]any)
		want string
	}{
		"old version":  {func(m map[string]any) { m["ociVersion"] = "0.9" }, "ociVersion"},
		"no process":   {func(m map[string]any) { delete(m, "process") }, "process is missing"},
		"no linux":     {func(m map[string]any) { delete(m, "linux") }, "linux is missing"},
		"relative cwd": {func(m map[string]any) { m["process"].(map[string]any)["cwd"] = "tmp" }, "cwd"},
		"bad env":      {func(m map[string]any) { m["process"].(map[string]any)["env"] = []string{"NOEQUALS"} }, "env[0]"},
		"unknown cap": {func(m map[string]any) {
			m["process"].(map[string]any)["capabilities"] = map[string]any{"bounding": []string{"CAP_FLY"}}
		}, "CAP_FLY"},
		"bad rlimit": {func(m map[string]any) {
			m["process"].(map[string]any)["rlimits"] = []map[string]any{{"type": "RLIMIT_X", "soft": 1, "hard": 1}}
		}, "RLIMIT_X"},
		"soft over hard": {func(m map[string]any) {
			m["process"].(map[string]any)["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}}
		}, "above the hard"},
		"oom out of range": {func(m map[string]any) { m["process"].(map[string]any)["oomScoreAdj"] = 5000 }, "oomScoreAdj"},
		"unknown ns": {func(m map[string]any) {
			m["linux"].(map[string]any)["namespaces"] = []map[string]any{{"type": "bogus"}}
		}, "unknown type"},
		"ns twice": {func(m map[string]any) {
			m["linux"].(map[string]any)["namespaces"] = []map[string]any{{"type": "pid"}, {"type": "pid"}}
		}, "given twice"},
		"userns no maps": {func(m map[string]any) { m["linux"].(map[string]any)["namespaces"] = []map[string]any{{"type": "user"}} }, "uidMappings"},
		"maps no userns": {func(m map[string]any) {
			m["linux"].(map[string]any)["uidMappings"] = []map[string]any{{"containerID": 0, "hostID": 1000, "size": 1}}
		}, "need a new user namespace"},
		"hostname no uts": {func(m map[string]any) { m["hostname"] = "x" }, "uts namespace"},
		"net sysctl": {func(m map[string]any) {
			m["linux"].(map[string]any)["sysctl"] = map[string]string{"net.ipv4.ip_forward": "1"}
		}, "network namespace"},
		"host sysctl": {func(m map[string]any) {
			m["linux"].(map[string]any)["sysctl"] = map[string]string{"vm.swappiness": "1"}
		}, "not a namespaced sysctl"},
		"relative hook":  {func(m map[string]any) { m["hooks"] = map[string]any{"poststart": []map[string]any{{"path": "hook"}}} }, "hooks.poststart[0]"},
		"apparmor":       {func(m map[string]any) { m["process"].(map[string]any)["apparmorProfile"] = "x" }, "AppArmor"},
		"missing rootfs": {func(m map[string]any) { m["root"] = map[string]any{"path": "nope"} }, "not a directory"},
		"windows":        {func(m map[string]any) { m["windows"] = map[string]any{} }, "only the linux"},
	} {
		t.Run(name, func(t *testing.T) {
			m, dir := minimalSpec(t)
			tc.edit(m)
			_, err := parse(t, m, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("not one line: %q", err)
			}
		})
	}
}

func TestCgroupResourcesDevices(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{
		{Path: "/dev/fifo", Type: "p"}, {Path: "/dev/u", Type: "u", Major: 1, Minor: 3},
	}}}
	r := cgroupResources(s)
	var fifo, unbuffered bool
	for _, d := range r.Devices {
		fifo = fifo || d.Type == "p"
		unbuffered = unbuffered || (d.Type == "c" && d.Major != nil && *d.Major == 1 && *d.Minor == 3)
	}
	if fifo || !unbuffered {
		t.Errorf("device rules %+v: want no fifo rule and u as c", r.Devices)
	}
}

func TestHostID(t *testing.T) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if got := hostID(m, 0); got != 100000 {
		t.Errorf("hostID = %d", got)
	}
	if got := hostID(nil, 7); got != 7 {
		t.Errorf("hostID without maps = %d", got)
	}
}

func TestFormatLog(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if got := formatLog(ocicfg.LogBasic, ts, "stdout", "hi", false); got != "2026-01-02T03:04:05.000000006Z stdout hi\n" {
		t.Errorf("basic: %q", got)
	}
	if got := formatLog(ocicfg.LogKubernetes, ts, "stderr", "part", true); got != "2026-01-02T03:04:05.000000006Z stderr P part\n" {
		t.Errorf("kubernetes: %q", got)
	}
	var rec struct{ Time, Stream, Log string }
	if err := json.Unmarshal([]byte(formatLog(ocicfg.LogJSON, ts, "stdout", "hi", false)), &rec); err != nil || rec.Log != "hi\n" || rec.Stream != "stdout" {
		t.Errorf("json: %+v %v", rec, err)
	}
}

func TestExecProcessMerges(t *testing.T) {
	base := &specs.Process{Args: []string{"init"}, Env: []string{"A=1"}, Cwd: "/", User: specs.User{UID: 1, GID: 2}}
	p, err := execProcess(base, &ocicfg.Config{ExecArgs: []string{"sh"}, ExecEnv: []string{"B=2"}, ExecCwd: "/tmp", ExecUser: "5:6", Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Args[0] != "sh" || strings.Join(p.Env, ",") != "A=1,B=2" || p.Cwd != "/tmp" || p.User.UID != 5 || p.User.GID != 6 || !p.Terminal {
		t.Errorf("merged %+v", p)
	}
	if base.Args[0] != "init" || len(base.Env) != 1 {
		t.Errorf("the container's process changed: %+v", base)
	}
	if _, err := execProcess(base, &ocicfg.Config{ExecArgs: []string{"sh"}, ExecUser: "nobody"}); err == nil {
		t.Error("a user name was accepted")
	}
}
