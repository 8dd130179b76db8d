package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

func TestDefaultIsValid(t *testing.T) {
	if key, msg := Default().validate(); msg != "" {
		t.Fatalf("default policy: %s: %s", key, msg)
	}
}

func TestDefaultGrantsNothing(t *testing.T) {
	p := Default()
	if len(p.Capabilities.Grant) != 0 || len(p.Namespaces.Grant) != 0 {
		t.Error("default policy grants capabilities or namespaces")
	}
	if !p.Security.NoNewPrivs || p.Security.SeccompProfile != "default" {
		t.Error("default policy weakens no_new_privs or seccomp")
	}
	if p.Mounts.Hostfs {
		t.Error("default policy binds host filesystems")
	}
	for _, d := range []string{"/etc/shadow", "/root"} {
		if !contains(p.Mounts.UserBindDeny, d) {
			t.Errorf("default user_bind_deny lacks %s", d)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestShippedFileEqualsDefault(t *testing.T) {
	const name = "../etc/kerr/kerr.toml"
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, Default()) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", name, p, Default())
	}
}

func TestShippedFileSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../etc/kerr/kerr.toml")
	if err != nil {
		t.Fatal(err)
	}
	ix := keyLines(data)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			k := prefix + f.Tag.Get("toml")
			if f.Type.Kind() == reflect.Struct {
				walk(k+".", f.Type)
				continue
			}
			if _, ok := ix[k]; !ok {
				t.Errorf("shipped file does not set %s", k)
			}
		}
	}
	walk("", reflect.TypeOf(Policy{}))
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	p, err := Parse("p.toml", []byte("[mounts]\nhome = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Mounts.Home = false
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v", p)
	}
}

func TestGrantsParse(t *testing.T) {
	src := `
[[capabilities.grant]]
users = ["alice"]
capabilities = ["CAP_NET_RAW"]

[[namespaces.grant]]
groups = ["netlab"]
namespaces = ["net"]
`
	p, err := Parse("p.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Capabilities.Grant) != 1 || p.Capabilities.Grant[0].Users[0] != "alice" ||
		len(p.Namespaces.Grant) != 1 || p.Namespaces.Grant[0].Namespaces[0] != "net" {
		t.Errorf("grants: %+v %+v", p.Capabilities.Grant, p.Namespaces.Grant)
	}
}

// wantParseError checks that src is refused with exactly "p.toml:LINE: key "KEY": ..." and
// that the message contains msg.
func wantParseError(t *testing.T, src string, line int, key, msg string) {
	t.Helper()
	_, err := Parse("p.toml", []byte(src))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Parse: %v, want *Error", err)
	}
	if !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("%v does not wrap ErrUsage", err)
	}
	if pe.File != "p.toml" || pe.Line != line || pe.Key != key {
		t.Errorf("error %q: file %q line %d key %q, want line %d key %q", err, pe.File, pe.Line, pe.Key, line, key)
	}
	if !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q does not say %q on one line", err, msg)
	}
}

func TestUnknownTopLevelKeyNamesLine(t *testing.T) {
	wantParseError(t, "# policy\n\nsetuid = true\n", 3, "setuid", "unknown key")
}

func TestUnknownTableNamesLine(t *testing.T) {
	wantParseError(t, "[access]\nusers = []\n\n[mount]\nhome = true\n", 4, "mount", "unknown key")
}

func TestUnknownNestedKeyNamesLine(t *testing.T) {
	src := "[access]\nallow_setuid = true\n[mounts]\nproc = true\n  hom = false # typo\n"
	wantParseError(t, src, 5, "mounts.hom", "unknown key")
	if _, err := Parse("p.toml", []byte(src)); err.Error() != `p.toml:5: key "mounts.hom": unknown key` {
		t.Errorf("message %q", err)
	}
}

func TestUnknownKeyInGrantNamesLine(t *testing.T) {
	src := "[[capabilities.grant]]\nusers = [\"a\"]\ncaps = [\"CAP_KILL\"]\n"
	wantParseError(t, src, 3, "capabilities.grant.caps", "unknown key")
}

func TestUnknownKeyAfterMultilineArrayNamesLine(t *testing.T) {
	src := "[mounts]\nsystem_binds = [\n  \"/etc/hosts\", # [not a table]\n  \"/x = y\",\n]\nbogus = 1\n"
	wantParseError(t, src, 6, "mounts.bogus", "unknown key")
}

func TestWrongTypeNamesLine(t *testing.T) {
	wantParseError(t, "[mounts]\n\nhome = \"yes\"\n", 3, "mounts.home", "wrong type")
	wantParseError(t, "[images]\nmax_loop_devices = \"256\"\n", 2, "images.max_loop_devices", "wrong type")
	wantParseError(t, "[access]\nusers = \"alice\"\n", 2, "access.users", "wrong type")
}

func TestSyntaxErrorNamesLine(t *testing.T) {
	_, err := Parse("p.toml", []byte("[mounts]\nhome = \n"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.HasPrefix(err.Error(), "p.toml:2: ") {
		t.Errorf("error %v, want line 2", err)
	}
}

func TestOutOfRangeAndEnums(t *testing.T) {
	for _, tc := range []struct{ src, key, msg string }{
		{"[images]\nmax_loop_devices = 0\n", "images.max_loop_devices", "out of range"},
		{"[images]\nmax_loop_devices = 5000\n", "images.max_loop_devices", "out of range"},
		{"[images]\nformats = [\"sif\", \"ext3\"]\n", "images.formats", `"ext3" is not one of`},
		{"[images]\nkernel_squashfs = \"sometimes\"\n", "images.kernel_squashfs", "is not one of"},
		{"[mounts]\ndev = \"maybe\"\n", "mounts.dev", `"maybe" is not one of "yes", "no", "minimal"`},
		{"[mounts]\nsession_size = \"16q\"\n", "mounts.session_size", "not a size"},
		{"[mounts]\ntmp_size = \"512k\"\n", "mounts.tmp_size", "out of range"},
		{"[mounts]\ntmp_size = \"2t\"\n", "mounts.tmp_size", "out of range"},
		{"[namespaces]\nallow = [\"pid\", \"user\"]\n", "namespaces.allow", `"user" is not one of`},
		{"[access]\nusers = [\"bad name\"]\n", "access.users", "not a user or group name"},
		{"[security]\nseccomp_profile = \"seccomp.json\"\n", "security.seccomp_profile", "absolute"},
	} {
		wantParseError(t, tc.src, 2, tc.key, tc.msg)
	}
}

func TestRelativeOrUncleanPathsRefused(t *testing.T) {
	wantParseError(t, "[mounts]\nuser_bind_allow = [\"/scratch\", \"data\"]\n", 2, "mounts.user_bind_allow", `"data" is not an absolute, clean path`)
	wantParseError(t, "[images]\nlimit_paths = [\"/opt/images/\"]\n", 2, "images.limit_paths", "absolute, clean")
	wantParseError(t, "[mounts]\nsystem_binds = [\"/etc/../root\"]\n", 2, "mounts.system_binds", "absolute, clean")
}

func TestBadCapabilityRefused(t *testing.T) {
	wantParseError(t, "[capabilities]\nroot_keeps = [\"CAP_CHOWN\", \"CAP_FLY\"]\n", 2, "capabilities.root_keeps", `"CAP_FLY" is not a capability name`)
	src := "[[capabilities.grant]]\nusers = [\"a\"]\ncapabilities = [\"CAP_KILL\"]\n\n[[capabilities.grant]]\nusers = [\"b\"]\ncapabilities = [\"cap_kill\"]\n"
	wantParseError(t, src, 7, "capabilities.grant[1].capabilities", `"cap_kill"`)
}

func TestGrantWithoutUsersRefused(t *testing.T) {
	wantParseError(t, "\n[[namespaces.grant]]\nnamespaces = [\"net\"]\n", 2, "namespaces.grant[0]", "needs users or groups")
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"1m": 1 << 20, "16M": 16 << 20, "2g": 2 << 30, "1t": 1 << 40, "1048576": 1 << 20, "2048k": 2 << 20} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "m", "-1m", "+1m", "1.5g", "1 m", "1mb", "99999999999999999999t"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../etc/kerr/kerr.toml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[mounts]\nhome = \"x\"\n[[capabilities.grant]]\nusers=['a']\n"))
	f.Add([]byte("a.\"b.c\".d = '''\nx\n'''\n[x]\ny = [1,\n[2]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.toml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned %v, %v", p, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error on more than one line: %q", err)
		}
	})
}

// Ownership checks need root to make root- and other-owned files.

func writePolicy(t *testing.T, mode os.FileMode, uid int) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to set file owners")
	}
	path := filepath.Join(t.TempDir(), "kerr.toml")
	if err := os.WriteFile(path, []byte("[mounts]\nhome = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantRefused(t *testing.T, path string, sentinel error, why string) {
	t.Helper()
	_, err := Load(path)
	if !errors.Is(err, sentinel) {
		t.Fatalf("Load(%s) = %v, want %v", path, err, sentinel)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), why) {
		t.Errorf("error %q does not name the file and say %q", err, why)
	}
}

func TestLoadRootOwned0644(t *testing.T) {
	p, err := Load(writePolicy(t, 0o644, 0))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mounts.Home {
		t.Error("file not applied")
	}
}

func TestLoadRefusesWorldWritable(t *testing.T) {
	wantRefused(t, writePolicy(t, 0o666, 0), errdefs.ErrDenied, "writable by group or others")
}

func TestLoadRefusesGroupWritable(t *testing.T) {
	wantRefused(t, writePolicy(t, 0o664, 0), errdefs.ErrDenied, "writable by group or others")
}

func TestLoadRefusesNonRootOwner(t *testing.T) {
	wantRefused(t, writePolicy(t, 0o644, 1000), errdefs.ErrDenied, "owned by uid 1000, not root")
}

func TestLoadRefusesSymlink(t *testing.T) {
	target := writePolicy(t, 0o644, 0)
	link := filepath.Join(t.TempDir(), "kerr.toml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, link, errdefs.ErrDenied, "symbolic link")
	if _, warnings, err := LoadDraft(link); err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "symbolic link") {
		t.Errorf("LoadDraft(symlink) = %v, %q", err, warnings)
	}
}

func TestLoadRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kerr.toml")
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, path, errdefs.ErrDenied, "not a regular file (a FIFO)")
}

func TestLoadRefusesDirectory(t *testing.T) {
	wantRefused(t, t.TempDir(), errdefs.ErrDenied, "not a regular file (a directory)")
}

func TestLoadRefusesTooLarge(t *testing.T) {
	path := writePolicy(t, 0o644, 0)
	if err := os.Truncate(path, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, path, errdefs.ErrDenied, "more than")
}

func TestLoadMissingIsNotFound(t *testing.T) {
	wantRefused(t, filepath.Join(t.TempDir(), "none.toml"), errdefs.ErrNotFound, "does not exist")
}

func TestLoadDraftWarnsInsteadOfRefusing(t *testing.T) {
	p, warnings, err := LoadDraft(writePolicy(t, 0o666, 1000))
	if err != nil || p == nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 {
		t.Errorf("warnings %q, want owner and mode", warnings)
	}
}

func TestLoadReportsBadPolicyWithLine(t *testing.T) {
	path := writePolicy(t, 0o644, 0)
	if err := os.WriteFile(path, []byte("[mounts]\ndev = \"some\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: key \"mounts.dev\"") || !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("Load = %v", err)
	}
}
