package native

import (
	"strings"
	"testing"
)

// valid is a request Validate accepts; each case changes one thing.
func valid() Config {
	return Config{Action: ActionExec, Image: "/srv/img.sif", Args: []string{"true"}, Cwd: "/home/alice"}
}

func TestValidate(t *testing.T) {
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	cases := []struct {
		name string
		edit func(c *Config)
		want string // "" when valid; else a part of the error
	}{
		{"exec", func(c *Config) {}, ""},
		{"run without args", func(c *Config) { c.Action, c.Args = ActionRun, nil }, ""},
		{"shell", func(c *Config) { c.Action = ActionShell }, ""},
		{"instance with a name", func(c *Config) { c.Action, c.Instance = ActionInstance, "web" }, ""},
		{"instance image", func(c *Config) { c.Image = "instance://web" }, ""},
		{"every option", func(c *Config) {
			c.Env, c.EnvOverride = []string{"A=1", "B="}, []string{"C=x=y"}
			c.Pwd, c.Binds = "/data", []Bind{{Source: "/scratch/a", Dest: "/a", ReadOnly: true}}
			c.HomeSource, c.HomeDest = "/scratch/home", "/home/alice"
			c.Namespaces, c.Hostname = []string{"pid", "ipc", "uts", "net"}, "node-1.example"
			c.Seccomp, c.Overlay = "/etc/prof.json", "/scratch/ov"
		}, ""},
		{"limits exactly", func(c *Config) {
			c.Args, c.Env, c.EnvOverride = many(MaxArgs, "a"), many(MaxEnv, "A=1"), many(MaxEnv, "B=2")
			c.Binds = make([]Bind, MaxBinds)
			for i := range c.Binds {
				c.Binds[i] = Bind{Source: "/a", Dest: "/b"}
			}
		}, ""},

		{"no action", func(c *Config) { c.Action = "" }, "unknown action"},
		{"unknown action", func(c *Config) { c.Action = "oci-create" }, "unknown action"},
		{"action case", func(c *Config) { c.Action = "EXEC" }, "unknown action"},
		{"exec without a command", func(c *Config) { c.Args = nil }, "exec needs a command"},
		{"instance without a name", func(c *Config) { c.Action = ActionInstance }, "name"},

		{"no image", func(c *Config) { c.Image = "" }, "image"},
		{"relative image", func(c *Config) { c.Image = "img.sif" }, "not an absolute, clean path"},
		{"dot-dot image", func(c *Config) { c.Image = "/srv/../etc/shadow" }, "not an absolute, clean path"},
		{"trailing slash image", func(c *Config) { c.Image = "/srv/sandbox/" }, "not an absolute, clean path"},
		{"double slash image", func(c *Config) { c.Image = "//srv/img.sif" }, "not an absolute, clean path"},
		{"NUL in image", func(c *Config) { c.Image = "/srv/img\x00.sif" }, "NUL"},
		{"empty instance name", func(c *Config) { c.Image = "instance://" }, "instance name"},
		{"instance name with a slash", func(c *Config) { c.Image = "instance://../x" }, "instance name"},
		{"instance name with NUL", func(c *Config) { c.Image = "instance://a\x00" }, "instance name"},

		{"too many args", func(c *Config) { c.Args = many(MaxArgs+1, "a") }, "too many"},
		{"too many env", func(c *Config) { c.Env = many(MaxEnv+1, "A=1") }, "too many"},
		{"too many overrides", func(c *Config) { c.EnvOverride = many(MaxEnv+1, "A=1") }, "too many"},
		{"too many binds", func(c *Config) { c.Binds = make([]Bind, MaxBinds+1) }, "too many"},
		{"NUL in an argument", func(c *Config) { c.Args = []string{"echo", "a\x00b"} }, "NUL"},

		{"env without =", func(c *Config) { c.Env = []string{"A"} }, "not KEY=VALUE"},
		{"env with empty key", func(c *Config) { c.Env = []string{"=x"} }, "not KEY=VALUE"},
		{"env with NUL", func(c *Config) { c.Env = []string{"A=1\x00B=2"} }, "not KEY=VALUE"},
		{"override without =", func(c *Config) { c.EnvOverride = []string{"LD_PRELOAD"} }, "not KEY=VALUE"},

		{"no cwd", func(c *Config) { c.Cwd = "" }, "cwd"},
		{"relative cwd", func(c *Config) { c.Cwd = "work" }, "cwd"},
		{"unclean cwd", func(c *Config) { c.Cwd = "/home/alice/../bob" }, "cwd"},
		{"relative pwd", func(c *Config) { c.Pwd = "data" }, "pwd"},
		{"unclean pwd", func(c *Config) { c.Pwd = "/data/./x" }, "pwd"},

		{"relative bind source", func(c *Config) { c.Binds = []Bind{{Source: "data", Dest: "/data"}} }, "bind 1 source"},
		{"bind source dot-dot", func(c *Config) { c.Binds = []Bind{{Source: "/home/alice/../../etc", Dest: "/x"}} }, "bind 1 source"},
		{"bind without dest", func(c *Config) { c.Binds = []Bind{{Source: "/data"}} }, "bind 1 destination"},
		{"relative bind dest", func(c *Config) { c.Binds = []Bind{{Source: "/data", Dest: "x"}} }, "bind 1 destination"},
		{"second bind dest dot-dot", func(c *Config) {
			c.Binds = []Bind{{Source: "/a", Dest: "/a"}, {Source: "/data", Dest: "/x/../../etc"}}
		}, "bind 2 destination"},
		{"NUL in bind dest", func(c *Config) { c.Binds = []Bind{{Source: "/a", Dest: "/a\x00b"}} }, "NUL"},

		{"home without dest", func(c *Config) { c.HomeSource = "/scratch/home" }, "home destination"},
		{"relative home", func(c *Config) { c.HomeSource, c.HomeDest = "home", "/home/alice" }, "home"},
		{"home and no-home", func(c *Config) {
			c.HomeSource, c.HomeDest, c.NoHome = "/scratch/home", "/home/alice", true
		}, "--home and --no-home"},
		{"relative overlay", func(c *Config) { c.Overlay = "ov" }, "overlay"},
		{"overlay and writable tmpfs", func(c *Config) { c.Overlay, c.WritableTmpfs = "/ov", true }, "do not go together"},

		{"unknown namespace", func(c *Config) { c.Namespaces = []string{"user"} }, "unknown namespace"},
		{"mount namespace by name", func(c *Config) { c.Namespaces = []string{"mnt"} }, "unknown namespace"},
		{"cgroup namespace", func(c *Config) { c.Namespaces = []string{"pid", "cgroup"} }, "unknown namespace"},
		{"namespace case", func(c *Config) { c.Namespaces = []string{"PID"} }, "unknown namespace"},
		{"empty namespace", func(c *Config) { c.Namespaces = []string{""} }, "unknown namespace"},

		{"hostname too long", func(c *Config) { c.Hostname = strings.Repeat("h", 65) }, "hostname"},
		{"hostname with a slash", func(c *Config) { c.Hostname = "a/b" }, "hostname"},
		{"hostname with a space", func(c *Config) { c.Hostname = "a b" }, "hostname"},
		{"hostname with NUL", func(c *Config) { c.Hostname = "a\x00" }, "hostname"},
		{"relative seccomp", func(c *Config) { c.Seccomp = "prof.json" }, "seccomp profile"},
		{"unclean seccomp", func(c *Config) { c.Seccomp = "/etc/../prof.json" }, "seccomp profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// A 64-character hostname is the longest allowed.
func TestValidateHostnameBoundary(t *testing.T) {
	c := valid()
	c.Hostname = strings.Repeat("h", 64)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
