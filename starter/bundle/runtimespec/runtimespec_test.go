package runtimespec

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/xeipuuv/gojsonschema"
	"golang.org/x/sys/unix"
)

// kerrProfile is the profile this repository installs.
var kerrProfile = filepath.Join("..", "..", "..", "etc", "kerr", "seccomp.json")

// mustGenerate runs Generate and checks what every output must satisfy: it decodes strictly into
// specs.Spec, passes the runtime-spec's JSON schema and passes validateSpec again.
func mustGenerate(t *testing.T, o Options) *specs.Spec {
	t.Helper()
	out, err := Generate(o)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var spec specs.Spec
	if err := dec.Decode(&spec); err != nil {
		t.Fatalf("config.json does not decode into specs.Spec: %v\n%s", err, out)
	}
	checkSchema(t, out)
	if err := validateSpec(&spec); err != nil {
		t.Fatalf("round-tripped config does not validate: %v", err)
	}
	return &spec
}

var schemaOnce = sync.OnceValues(func() (*gojsonschema.Schema, error) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/opencontainers/runtime-spec").Output()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(strings.TrimSpace(string(dir)), "schema", "config-schema.json")
	return gojsonschema.NewSchema(gojsonschema.NewReferenceLoader("file://" + path))
})

// checkSchema validates config.json against the JSON schema shipped in the runtime-spec
// module that specs-go comes from.
func checkSchema(t *testing.T, config []byte) {
	t.Helper()
	schema, err := schemaOnce()
	if err != nil {
		t.Skipf("runtime-spec schema not available: %v", err)
	}
	res, err := schema.Validate(gojsonschema.NewBytesLoader(config))
	if err != nil {
		t.Fatalf("schema validation: %v", err)
	}
	for _, e := range res.Errors() {
		t.Errorf("schema: %s", e)
	}
}

func imageJSON(t *testing.T, cfg map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{}},
		"history":      []map[string]any{{"created_by": "test"}},
		// Docker's extra fields must not get in the way.
		"container_config": map[string]any{"Hostname": "x"},
		"docker_version":   "27.0.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateDefaultsWithoutImageConfig(t *testing.T) {
	s := mustGenerate(t, Options{})
	if s.Version != specs.Version {
		t.Errorf("ociVersion = %q, want %q", s.Version, specs.Version)
	}
	if s.Root == nil || s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Errorf("root = %+v, want rootfs, writable", s.Root)
	}
	if s.Hostname != DefaultHostname {
		t.Errorf("hostname = %q", s.Hostname)
	}
	p := s.Process
	if p.Terminal {
		t.Error("terminal is on")
	}
	if !slices.Equal(p.Args, []string{"/bin/sh"}) {
		t.Errorf("args = %q, want /bin/sh", p.Args)
	}
	if !slices.Equal(p.Env, []string{defaultPath}) {
		t.Errorf("env = %q, want only the default PATH (no TERM without a terminal)", p.Env)
	}
	if p.Cwd != "/" || p.User.UID != 0 || p.User.GID != 0 || len(p.User.AdditionalGids) != 0 {
		t.Errorf("cwd %q user %+v, want / and 0:0", p.Cwd, p.User)
	}
	if !p.NoNewPrivileges {
		t.Error("noNewPrivileges is off")
	}
	c := p.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, defaultCapabilities) {
			t.Errorf("%s capabilities = %q", name, set)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %q ambient %q, want none", c.Inheritable, c.Ambient)
	}
	var hard unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	want := min(uint64(1024), hard.Max)
	if len(p.Rlimits) != 1 || p.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: want, Soft: want}) {
		t.Errorf("rlimits = %+v, want NOFILE %d", p.Rlimits, want)
	}

	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination+" "+m.Type)
	}
	wantMounts := []string{"/proc proc", "/dev tmpfs", "/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue", "/sys sysfs", "/sys/fs/cgroup cgroup"}
	if !slices.Equal(dests, wantMounts) {
		t.Errorf("mounts = %q, want %q", dests, wantMounts)
	}
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/sys") && !slices.Contains(m.Options, "ro") {
			t.Errorf("%s is not read-only: %q", m.Destination, m.Options)
		}
	}

	l := s.Linux
	var ns []string
	for _, n := range l.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %s", n.Type, n.Path)
		}
		ns = append(ns, string(n.Type))
	}
	if !slices.Equal(ns, defaultNamespaces) {
		t.Errorf("namespaces = %q", ns)
	}
	if l.Resources == nil || len(l.Resources.Devices) != 1 || l.Resources.Devices[0].Allow || l.Resources.Devices[0].Access != "rwm" {
		t.Errorf("device cgroup = %+v, want deny all", l.Resources)
	}
	if !slices.Equal(l.MaskedPaths, maskedPaths) || !slices.Equal(l.ReadonlyPaths, readonlyPaths) {
		t.Errorf("masked %q readonly %q", l.MaskedPaths, l.ReadonlyPaths)
	}
	for _, must := range []string{"/proc/kcore", "/sys/firmware", "/sys/devices/virtual/powercap"} {
		if !slices.Contains(l.MaskedPaths, must) {
			t.Errorf("%s is not masked", must)
		}
	}
	if l.Seccomp != nil {
		t.Error("seccomp section without a profile")
	}
	if len(s.Annotations) != 0 || s.Hooks != nil {
		t.Errorf("annotations %v hooks %v, want none", s.Annotations, s.Hooks)
	}
}

func TestGenerateIsIndentedJSONWithNewline(t *testing.T) {
	out, err := Generate(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("{\n\t\"ociVersion\"")) || !bytes.HasSuffix(out, []byte("}\n")) {
		t.Errorf("output is not indented JSON ending in a newline:\n%.80s", out)
	}
}

func TestGenerateProcessFromImageConfig(t *testing.T) {
	s := mustGenerate(t, Options{ImageConfig: imageJSON(t, map[string]any{
		"Entrypoint": []string{"/usr/bin/python3", "-u"},
		"Cmd":        []string{"train.py", "--epochs", "3"},
		"Env":        []string{"PATH=/opt/conda/bin:/usr/bin:/bin", "LANG=C.UTF-8", "LANG=en_US.UTF-8", "EMPTY="},
		"WorkingDir": "/work/./data/",
		"User":       "1000:2000",
		"Labels":     map[string]string{"org.opencontainers.image.title": "t"},
	})})
	p := s.Process
	if want := []string{"/usr/bin/python3", "-u", "train.py", "--epochs", "3"}; !slices.Equal(p.Args, want) {
		t.Errorf("args = %q, want %q", p.Args, want)
	}
	if want := []string{"PATH=/opt/conda/bin:/usr/bin:/bin", "LANG=en_US.UTF-8", "EMPTY="}; !slices.Equal(p.Env, want) {
		t.Errorf("env = %q, want %q (image PATH kept, later LANG wins)", p.Env, want)
	}
	if p.Cwd != "/work/data" {
		t.Errorf("cwd = %q", p.Cwd)
	}
	if p.User.UID != 1000 || p.User.GID != 2000 {
		t.Errorf("user = %+v", p.User)
	}
	if len(s.Annotations) != 0 {
		t.Errorf("labels became annotations: %v", s.Annotations)
	}
}

func TestGenerateArgsFollowDockerRules(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entrypoint []string
		cmd        []string
		want       []string
	}{
		{"cmd only", nil, []string{"/bin/echo", "hi"}, []string{"/bin/echo", "hi"}},
		{"entrypoint only", []string{"/entry.sh"}, nil, []string{"/entry.sh"}},
		{"both", []string{"/entry.sh"}, []string{"a"}, []string{"/entry.sh", "a"}},
		{"neither", nil, nil, []string{"/bin/sh"}},
		{"empty lists", []string{}, []string{}, []string{"/bin/sh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]any{}
			if tc.entrypoint != nil {
				cfg["Entrypoint"] = tc.entrypoint
			}
			if tc.cmd != nil {
				cfg["Cmd"] = tc.cmd
			}
			s := mustGenerate(t, Options{ImageConfig: imageJSON(t, cfg)})
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Errorf("args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
}

func TestGenerateAddsDefaultPathFirst(t *testing.T) {
	s := mustGenerate(t, Options{ImageConfig: imageJSON(t, map[string]any{"Env": []string{"HOME=/root"}})})
	if want := []string{defaultPath, "HOME=/root"}; !slices.Equal(s.Process.Env, want) {
		t.Errorf("env = %q, want %q", s.Process.Env, want)
	}
}

func TestGenerateRunscript(t *testing.T) {
	s := mustGenerate(t, Options{Runscript: true})
	if !slices.Equal(s.Process.Args, []string{RunscriptPath}) || s.Process.Cwd != "/" {
		t.Errorf("args %q cwd %q", s.Process.Args, s.Process.Cwd)
	}
	// An image config alongside still gives env, cwd and user; its CMD is not run.
	s = mustGenerate(t, Options{Runscript: true, ImageConfig: imageJSON(t, map[string]any{
		"Cmd": []string{"/bin/false"}, "Env": []string{"A=1"}, "WorkingDir": "/srv", "User": "7",
	})})
	if !slices.Equal(s.Process.Args, []string{RunscriptPath}) {
		t.Errorf("args = %q", s.Process.Args)
	}
	if !slices.Contains(s.Process.Env, "A=1") || s.Process.Cwd != "/srv" || s.Process.User.UID != 7 {
		t.Errorf("env %q cwd %q user %+v", s.Process.Env, s.Process.Cwd, s.Process.User)
	}
}

func TestGenerateRootAndHostname(t *testing.T) {
	s := mustGenerate(t, Options{ReadOnly: true, RootfsPath: "rootfs", Hostname: "node17"})
	if !s.Root.Readonly || s.Root.Path != "rootfs" || s.Hostname != "node17" {
		t.Errorf("root %+v hostname %q", s.Root, s.Hostname)
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad image JSON", Options{ImageConfig: []byte(`{"config":`)}, "image config"},
		{"image for another os", Options{ImageConfig: []byte(`{"os":"windows"}`)}, `"windows"`},
		{"relative WORKDIR", Options{ImageConfig: imageJSON(t, map[string]any{"WorkingDir": "app"})}, `WORKDIR "app"`},
		{"env without =", Options{ImageConfig: imageJSON(t, map[string]any{"Env": []string{"JUSTNAME"}})}, "JUSTNAME"},
		{"env name with a dash", Options{ImageConfig: imageJSON(t, map[string]any{"Env": []string{"A-B=1"}})}, "A-B=1"},
		{"env name starting with a digit", Options{ImageConfig: imageJSON(t, map[string]any{"Env": []string{"1A=b"}})}, "1A=b"},
		{"NUL in args", Options{ImageConfig: imageJSON(t, map[string]any{"Cmd": []string{"/bin/sh\x00x"}})}, "NUL"},
		{"rootfs outside bundle", Options{RootfsPath: "../rootfs"}, "outside the bundle"},
		{"hostname too long", Options{Hostname: strings.Repeat("h", 65)}, "longer than 64"},
		{"uid -1", Options{ImageConfig: imageJSON(t, map[string]any{"User": "4294967295"})}, "reserved"},
		{"gid -1", Options{ImageConfig: imageJSON(t, map[string]any{"User": "0:4294967295"})}, "reserved"},
		{"uid over 32 bits", Options{ImageConfig: imageJSON(t, map[string]any{"User": "4294967296"})}, "out of range"},
		{"name without accounts", Options{ImageConfig: imageJSON(t, map[string]any{"User": "alice"})}, "/etc/passwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Generate(tc.o)
			if err == nil {
				t.Fatalf("Generate succeeded:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
}

// TestGenerateNofileNeverAboveHardLimit lowers the hard RLIMIT_NOFILE in a child (lowering
// cannot be undone without CAP_SYS_RESOURCE) and checks Generate follows it down.
func TestGenerateNofileNeverAboveHardLimit(t *testing.T) {
	if os.Getenv("KERR_TEST_NOFILE_CHILD") == "1" {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 512, Max: 512}); err != nil {
			t.Fatal(err)
		}
		s := mustGenerate(t, Options{})
		if r := s.Process.Rlimits[0]; r.Hard != 512 || r.Soft != 512 {
			t.Fatalf("NOFILE = %+v under a hard limit of 512", r)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGenerateNofileNeverAboveHardLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "KERR_TEST_NOFILE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// fakeRootfs makes a rootfs directory whose /etc holds the given passwd and group.
func fakeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"passwd": passwd, "group": group} {
		if data == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"# a comment\n" +
		"+nisuser::::::\n" +
		"broken line\n" +
		"badid:x:abc:1::/:/bin/sh\n" +
		"alice:x:1000:1000:Alice:/home/alice:/bin/sh\r\n" +
		"bob:x:1001:100::/home/bob:/bin/sh\n" +
		"alice:x:9999:9999:shadowed duplicate:/:/bin/sh\n"
	testGroup = "root:x:0:\n" +
		"users:x:100:alice\n" +
		"alice:x:1000:\n" +
		"video:x:44:bob, alice\n" +
		"wheel:x:10:bob\n" +
		"users2:x:100:alice\n" +
		"staff:x:50:\n"
)

func TestGenerateResolvesUserFromImageAccounts(t *testing.T) {
	accounts, err := ReadAccounts(fakeRootfs(t, testPasswd, testGroup))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user     string
		uid, gid uint32
		groups   []uint32
	}{
		{"", 0, 0, nil},
		{"alice", 1000, 1000, []uint32{100, 44}},
		{"1000", 1000, 1000, []uint32{100, 44}},
		{"bob", 1001, 100, []uint32{44, 10}},
		{"alice:staff", 1000, 50, nil},
		{"alice:77", 1000, 77, nil},
		{"1001:video", 1001, 44, nil},
		{"4242", 4242, 0, nil},
		{"4242:4243", 4242, 4243, nil},
	} {
		t.Run(tc.user, func(t *testing.T) {
			s := mustGenerate(t, Options{Accounts: accounts, ImageConfig: imageJSON(t, map[string]any{"User": tc.user})})
			u := s.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
				t.Errorf("user = %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.groups)
			}
		})
	}
}

func TestGenerateUnknownUserOrGroupFails(t *testing.T) {
	accounts, err := ReadAccounts(fakeRootfs(t, testPasswd, testGroup))
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]error{
		"carol":        ErrUnknownUser,
		"nisuser":      ErrUnknownUser,
		"alice:nobody": ErrUnknownGroup,
		"0:nobody":     ErrUnknownGroup,
	} {
		_, err := Generate(Options{Accounts: accounts, ImageConfig: imageJSON(t, map[string]any{"User": user})})
		if !errors.Is(err, want) {
			t.Errorf("USER %q: error %v, want %v", user, err, want)
		}
	}
}

func TestReadAccountsWithoutFilesIsEmpty(t *testing.T) {
	a, err := ReadAccounts(fakeRootfs(t, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Users) != 0 || len(a.Groups) != 0 {
		t.Errorf("accounts = %+v", a)
	}
	// No /etc at all, as in a scratch image.
	a, err = ReadAccounts(t.TempDir())
	if err != nil || len(a.Users) != 0 {
		t.Errorf("accounts = %+v, %v", a, err)
	}
	s := mustGenerate(t, Options{Accounts: a, ImageConfig: imageJSON(t, map[string]any{"User": "65534"})})
	if s.Process.User.UID != 65534 || s.Process.User.GID != 0 {
		t.Errorf("user = %+v", s.Process.User)
	}
}

// TestReadAccountsStaysInRootfs: an image's /etc/passwd that is a symlink out of the rootfs
// (to the host's /etc/shadow, say) must be resolved inside the rootfs, never read on the host.
func TestReadAccountsStaysInRootfs(t *testing.T) {
	hostDir := t.TempDir()
	hostPasswd := filepath.Join(hostDir, "shadow")
	if err := os.WriteFile(hostPasswd, []byte("evil:x:4242:4242::/:/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostGroup := filepath.Join(hostDir, "gshadow")
	if err := os.WriteFile(hostGroup, []byte("evil:x:4242:alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, passwdLink, groupLink string }{
		{"absolute", hostPasswd, hostGroup},
		{"dotdot", "../../../../../../../../.." + hostPasswd, "../../../../../../../../.." + hostGroup},
		{"via a symlinked etc", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRootfs(t, "", "")
			if tc.passwdLink == "" {
				// /etc itself points at the host directory.
				if err := os.Remove(filepath.Join(root, "etc")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(hostDir, filepath.Join(root, "etc")); err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"passwd", "group"} {
					if err := os.Symlink(filepath.Join(hostDir, map[string]string{"passwd": "shadow", "group": "gshadow"}[n]), filepath.Join(hostDir, n)); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				if err := os.Symlink(tc.passwdLink, filepath.Join(root, "etc", "passwd")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(tc.groupLink, filepath.Join(root, "etc", "group")); err != nil {
					t.Fatal(err)
				}
			}
			a, err := ReadAccounts(root)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Users) != 0 || len(a.Groups) != 0 {
				t.Fatalf("read a host file through the image's symlink: %+v", a)
			}
			_, err = Generate(Options{Accounts: a, ImageConfig: imageJSON(t, map[string]any{"User": "evil"})})
			if !errors.Is(err, ErrUnknownUser) {
				t.Errorf("USER evil: %v, want ErrUnknownUser", err)
			}
		})
	}
}

// TestReadAccountsFollowsSymlinksInsideRootfs: an absolute symlink in an image means the
// image's path, as it would inside the container.
func TestReadAccountsFollowsSymlinksInsideRootfs(t *testing.T) {
	root := fakeRootfs(t, "", "")
	if err := os.MkdirAll(filepath.Join(root, "usr", "share"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr", "share", "passwd"), []byte("dave:x:3000:3000::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	a, err := ReadAccounts(root)
	if err != nil {
		t.Fatal(err)
	}
	if uid, gid, err := a.LookupUser("dave"); err != nil || uid != 3000 || gid != 3000 {
		t.Errorf("dave = %d:%d, %v", uid, gid, err)
	}
}

func TestReadAccountsRefusesSpecialFiles(t *testing.T) {
	root := fakeRootfs(t, "", "")
	if err := unix.Mkfifo(filepath.Join(root, "etc", "passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A FIFO must be refused before it is opened for reading, which would block.
	if _, err := ReadAccounts(root); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO passwd: %v", err)
	}

	root = fakeRootfs(t, "", "")
	if err := os.Mkdir(filepath.Join(root, "etc", "group"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAccounts(root); err == nil || !strings.Contains(err.Error(), "/etc/group") {
		t.Errorf("directory group: %v", err)
	}

	root = fakeRootfs(t, "", "")
	big := bytes.Repeat([]byte("u:x:1:1::/:/bin/sh\n"), maxAccountsFile/16)
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAccounts(root); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge passwd: %v", err)
	}
}

func TestGenerateCopiesSeccompProfile(t *testing.T) {
	s := mustGenerate(t, Options{SeccompProfile: kerrProfile})
	want, err := readSeccompProfile(kerrProfile)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s.Linux.Seccomp)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(got, wantJSON) {
		t.Error("config.json's seccomp section differs from the profile file")
	}
}

func TestGenerateRejectsBadSeccompProfile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.json")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"unknown field", write("unknown.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscallz":[]}`), `unknown field "syscallz"`},
		{"unknown nested field", write("nested.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","comment":"x"}]}`), `unknown field "comment"`},
		{"bad JSON", write("bad.json", `{"defaultAction":`), "unexpected EOF"},
		{"trailing data", write("trailing.json", `{"defaultAction":"SCMP_ACT_ERRNO"} {}`), "data after"},
		{"not a LinuxSeccomp", write("array.json", `[]`), "cannot unmarshal"},
		{"missing file", filepath.Join(dir, "missing.json"), "no such file"},
		{"FIFO", fifo, "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"bad default action", write("action.json", `{"defaultAction":"SCMP_ACT_MAYBE"}`), "SCMP_ACT_MAYBE"},
		{"errno on allow", write("errno.json", `{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1}`), "defaultErrnoRet"},
		{"bad arch", write("arch.json", `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_Z80"]}`), "SCMP_ARCH_Z80"},
		{"bad flag", write("flag.json", `{"defaultAction":"SCMP_ACT_ERRNO","flags":["SECCOMP_FILTER_FLAG_FAST"]}`), "SECCOMP_FILTER_FLAG_FAST"},
		{"no names", write("nonames.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":[],"action":"SCMP_ACT_ALLOW"}]}`), "no names"},
		{"bad op", write("op.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_LIKE"}]}]}`), "SCMP_CMP_LIKE"},
		{"arg index", write("index.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}`), "index 6"},
		{"notify without listener", write("notify.json", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}`), "listenerPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Generate(Options{SeccompProfile: tc.path})
			if err == nil {
				t.Fatalf("Generate succeeded:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the file", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.name == "missing file" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: %v is not ErrNotExist", err)
			}
		})
	}
}
