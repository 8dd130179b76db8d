//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// HPC mode's security tests: what an unprivileged user can try against the installed
// setuid starter (crafted configs, a hostile environment, symlinks in images, user-written
// images, ptrace and signals), run as that user. Each one shows where it cheaply can that it
// would fail: a control that the attack works against something unprotected.

// starterSuid is the installed setuid starter.
func starterSuid() string { return filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter-suid") }

// crafted feeds config (the native engine's JSON request) to starter-suid as the user,
// as kerr would but without kerr: the magic, then the envelope on fd 3. env is exported by
// the shell just before it execs the starter, so that it reaches the starter alone.
func crafted(t *testing.T, s *harness.Session, env []string, name, config string) harness.Result {
	t.Helper()
	dir := filepath.Join(s.Base(), "crafted")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(name, "-"))
	envelope := `{"version":1,"engine":"native","id":"x","config":` + config + `}`
	if err := os.WriteFile(p, []byte("KERRHPC1\n"+envelope), 0o644); err != nil {
		t.Fatal(err)
	}
	return execExported(s, env, starterSuid()+" --config-fd 3 3<"+p)
}

// execExported runs command (sh syntax) as the user with env exported by the shell just
// before it execs the command: the variables reach that program, not the shell.
func execExported(s *harness.Session, env []string, command string) harness.Result {
	script := ""
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		script += "export " + k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'; "
	}
	return s.Exec(h.User, harness.Opts{}, "/bin/sh", "-c", script+"exec "+command)
}

// jsonString quotes s for a hand-written JSON config.
func jsonString(s string) string { return strconv.Quote(s) }

// wantRefused checks a crafted config's refusal: the exit code, a message naming want, and
// no sign that the payload ran.
func wantRefused(t *testing.T, r harness.Result, code int, want string) {
	t.Helper()
	if r.Code != code || !strings.Contains(r.Stderr, want) || strings.Contains(r.Stdout, "PAYLOAD-RAN") {
		t.Errorf("want exit %d naming %q, and no payload:\n%s", code, want, r)
	}
}

// userStatus checks a payload's /proc/self/status: the user's ids, no capability at all,
// no_new_privs.
func userStatus(t *testing.T, what, status string) {
	t.Helper()
	u, g := itoa(int(h.User.UID)), itoa(int(h.User.GID))
	want := map[string]string{
		"Uid": strings.Repeat(u+"\t", 3) + u, "Gid": strings.Repeat(g+"\t", 3) + g,
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1",
	}
	for key, v := range want {
		if got := statusField(status, key); got != v {
			t.Errorf("%s: %s %q, want %q", what, key, got, v)
		}
	}
}

// gcc compiles C source src into out with extra flags.
func gcc(t *testing.T, src, out string, flags ...string) {
	t.Helper()
	cfile := out + ".c"
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-Wall", "-Wextra", "-Werror", "-o", out, cfile}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A config crafted by hand cannot say who runs the payload or with what privileges: the
// request has no field for a uid or a user, its one for capabilities is the policy's to
// grant, and stage 1 refuses unknown fields
// (exit 253) before it looks at anything; a valid config always runs as the caller, without
// capabilities. Binds the policy denies stay denied whatever path leads to them.
func TestHPCSecCraftedConfigs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := rootSIF(t, s)
	base := `"action":"exec","image":` + jsonString(img) + `,"args":["/bin/sh","-c","echo PAYLOAD-RAN; id -u"],"cwd":"/"`

	// No field names a uid, a user or a privilege; none is ignored either.
	for _, field := range []string{`"uid":0`, `"gid":0`, `"caller":{"uid":0}`, `"user":"root"`, `"UID":0`,
		`"capabilities":["CAP_SYS_ADMIN"]`, `"keepPrivs":true`, `"privileged":true`,
		`"noNewPrivs":false`, `"plan":{}`, `"policy":"/dev/null"`, `"kernelSquashfs":true`} {
		r := crafted(t, s, nil, "field "+field, "{"+base+","+field+"}")
		wantRefused(t, r, 253, "unknown field")
	}
	// The one field that asks for capabilities (--add-caps) gets only what the policy grants:
	// none by default.
	wantRefused(t, crafted(t, s, nil, "addCaps", "{"+base+`,"addCaps":["CAP_SYS_ADMIN"]}`), 5, "capabilities.grant")
	// Nor inside a bind, nor twice with a second meaning.
	wantRefused(t, crafted(t, s, nil, "bind field",
		`{`+base+`,"binds":[{"source":"/tmp","dest":"/x","uid":0}]}`), 253, "unknown field")
	wantRefused(t, crafted(t, s, nil, "duplicate image",
		`{`+base+`,"image":"/etc/shadow"}`), 253, "duplicate key")

	// A valid config runs as the caller whatever the environment says.
	r := crafted(t, s, []string{"USER=root", "LOGNAME=root", "HOME=/root", "SUDO_UID=0"}, "valid",
		`{"action":"exec","image":`+jsonString(img)+`,"args":["/bin/sh","-c","echo PAYLOAD-RAN; cat /proc/self/status"],"cwd":"/"}`)
	if r.Code != 0 || !strings.Contains(r.Stdout, "PAYLOAD-RAN") {
		t.Fatalf("a valid crafted config:\n%s", r)
	}
	userStatus(t, "crafted config", r.Stdout)

	// Binds the deny list refuses, reached by other paths than their own: above a denied
	// path, through /proc's view of the root, through the user's own symlinks.
	links := s.Mkdir(h.User, "links")
	for name, target := range map[string]string{"shadow": "/etc/shadow", "root": "/root", "etc": "/etc"} {
		if err := os.Symlink(target, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, src := range []string{"/etc", "/proc/self/root/etc/shadow", "/proc/self/root/root", "/proc/1/root/etc",
		filepath.Join(links, "shadow"), filepath.Join(links, "root"), filepath.Join(links, "etc"), "/boot", "/sys/kernel"} {
		r := crafted(t, s, nil, "bind "+src, `{`+base+`,"binds":[{"source":`+jsonString(src)+`,"dest":"/x"}]}`)
		if r.Code == 0 || strings.Contains(r.Stdout, "PAYLOAD-RAN") {
			t.Errorf("bind %s: not refused:\n%s", src, r)
		} else if r.Code != exitDenied && r.Code != exitMissing {
			t.Errorf("bind %s: exit %d, want 5 (denied) or 4:\n%s", src, r.Code, r)
		}
	}
	// Namespaces outside the request's vocabulary are malformed; net is the policy's to
	// refuse (TestHPCStarterRefusesCraftedConfigs).
	for _, ns := range []string{"user", "cgroup", "mnt", "time"} {
		r := crafted(t, s, nil, "ns "+ns, `{`+base+`,"namespaces":[`+jsonString(ns)+`]}`)
		wantRefused(t, r, 253, "unknown namespace")
	}
	// --overlay DIR: a directory of the caller's, with upper/ and work/ of the caller's, or
	// nothing; the starter checks it, not only kerr. Root's directory, a symlink of the
	// user's to it, and an upper/ that is a symlink to /etc or a directory of root's.
	ovRoot := s.Mkdir(h.Root, "overlay")
	ovLink := filepath.Join(links, "overlay")
	ovUpperLink := s.Mkdir(h.User, "ov-upper-link")
	ovUpperRoot := s.Mkdir(h.User, "ov-upper-root")
	if err := os.Symlink(ovRoot, ovLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(ovUpperLink, "upper")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(ovUpperLink, "upper"), int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ovUpperRoot, "upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ov := range []string{ovRoot, ovLink, ovUpperLink, ovUpperRoot} {
		r := crafted(t, s, nil, "overlay "+ov, `{`+base+`,"overlay":`+jsonString(ov)+`}`)
		wantRefused(t, r, exitDenied, "of yours")
	}
	if fi, err := os.Lstat(filepath.Join(ovRoot, "upper")); err == nil {
		t.Errorf("a refused --overlay of root's got %s made in it", fi.Name())
	}
}

// A home is a bind of the caller's choosing, like --bind: --home /root, /etc/shadow or /etc
// must be refused by mounts.user_bind_deny as the same --bind is (exit 5), whether kerr
// sends it or a crafted config. (File contents stay protected by their modes: the payload
// is the user without capabilities; what is lost is the admin's deny list, user_bind_allow
// and user_binds = false.)
func TestHPCSecHomeIsABind(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := rootSIF(t, s)
	// The control: a home of the user's own is bound, and the same paths as --bind are denied.
	mine := s.Mkdir(h.User, "myhome")
	if r := s.Run(h.User, "exec", "--home", mine+":/x", img, "/bin/sh", "-c", "echo $HOME; ls -dn /x").OK(t); !strings.Contains(r.Stdout, "/x\n") ||
		!strings.Contains(r.Stdout, " "+itoa(int(h.User.UID))+" ") {
		t.Fatalf("--home of the user's own dir:\n%s", r)
	}
	for _, src := range []string{"/root", "/etc/shadow", "/etc"} {
		s.Run(h.User, "exec", "-B", src+":/x", img, "true").Fails(t, exitDenied)
	}
	show := `"args":["/bin/sh","-c","echo PAYLOAD-RAN; ls -ld /x; head -c 64 /x 2>&1; ls /x 2>&1 | head -3"],"cwd":"/"`
	for _, src := range []string{"/root", "/etc/shadow", "/etc"} {
		r := crafted(t, s, nil, "home "+src, `{"action":"exec","image":`+jsonString(img)+`,`+show+`,"homeSource":`+jsonString(src)+`,"homeDest":"/x"}`)
		if r.Code != exitDenied || strings.Contains(r.Stdout, "PAYLOAD-RAN") {
			t.Errorf("--home %s (crafted): want it denied as a bind of %s is (exit 5):\n%s", src, src, r)
		}
		r = s.Run(h.User, "exec", "--home", src+":/x", img, "/bin/sh", "-c", "echo PAYLOAD-RAN; ls -ld /x")
		if r.Code != exitDenied || strings.Contains(r.Stdout, "PAYLOAD-RAN") {
			t.Errorf("kerr exec --home %s:/x: want it denied as a bind of %s is (exit 5):\n%s", src, src, r)
		}
	}
}

// policyPath is the installed policy, the file starter-suid loads.
func policyPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(h.Prefix, "etc", "kerr", "kerr.toml")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no installed policy at %s (an install with another sysconfdir?): %v", p, err)
	}
	return p
}

// installPolicy replaces the installed policy with data, as an admin would: root-owned,
// mode 0644 (policy.Load refuses anything else), renamed into place.
func installPolicy(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".e2e-new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// editPolicy installs edit(the installed policy) for the rest of the test and puts the
// original back (same bytes, root, 0644) when it ends. Tests that call it must not run in
// parallel with others: every run reads this file.
func editPolicy(t *testing.T, edit func(string) string) (path string, orig []byte) {
	t.Helper()
	path = policyPath(t)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(path + ".e2e-new")
		installPolicy(t, path, orig)
	})
	installPolicy(t, path, []byte(edit(string(orig))))
	return path, orig
}

// replaceOnce replaces old (which must be there) in s, starting at the first from.
func replaceOnce(t *testing.T, s, from, old, new string) string {
	t.Helper()
	i := strings.Index(s, from)
	j := strings.Index(s[max(i, 0):], old)
	if i < 0 || j < 0 {
		t.Fatalf("the installed policy has no %q after %q: edit the test with the policy", old, from)
	}
	return s[:i+j] + new + s[i+j+len(old):]
}

// Policy limits that only the starter can enforce against a crafted config: an image outside
// images.limit_paths (also through a symlink inside them), and capabilities. The user is
// granted capabilities by [[capabilities.grant]], yet the payload has none: the request has
// no field to ask for one (so a grant is never asked for), and stage 2's dropPrivileges
// keeps nothing for a non-root caller whatever the plan says (starter/native/payload.go:
// keep = nil for uid != 0, then setresuid to the caller clears every set). The policy file
// itself is refused when anyone but root could have written it.
//
// This test rewrites the installed policy for its duration: it does not run in parallel.
func TestHPCSecPolicyLimits(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	outside := userSIF(t, s)
	images := s.Mkdir(h.Root, "images")
	inside := filepath.Join(images, "busybox.sif")
	if b, err := exec.Command("cp", rootSIF(t, s), inside).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, b)
	}
	if err := os.Chmod(inside, 0o644); err != nil {
		t.Fatal(err)
	}
	mine := s.Mkdir(h.User, "allowed")
	link := filepath.Join(mine, "link.sif")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	path, orig := editPolicy(t, func(p string) string {
		p = replaceOnce(t, p, "[images]", "limit_paths = []", "limit_paths = ["+jsonString(images)+", "+jsonString(mine)+"]")
		p = replaceOnce(t, p, "[capabilities]", "\ngrant = []\n", "\n")
		return p + "\n[[capabilities.grant]]\nusers = [\"" + harness.UserName + "\"]\n" +
			"capabilities = [\"CAP_SYS_ADMIN\", \"CAP_NET_RAW\", \"CAP_DAC_OVERRIDE\", \"CAP_SETUID\"]\n"
	})

	// The edited policy is in force: an image inside runs, and the grant is there.
	s.Run(h.User, "exec", inside, "true").OK(t)
	if r := s.Run(h.User, "policy", "explain", "--cap", "sys_admin", inside).OK(t); !strings.Contains(r.Stdout, "CAP_SYS_ADMIN") {
		t.Fatalf("the grant is not in the installed policy:\n%s", r)
	}

	// limit_paths: refused by kerr, and by the starter when kerr is left out; a symlink
	// inside the limit to an image outside is the image outside.
	if r := s.Run(h.User, "exec", outside, "true"); r.Fails(t, exitDenied) && !strings.Contains(r.Stderr, "images.limit_paths") {
		t.Errorf("kerr exec outside limit_paths: the denial does not name the key:\n%s", r)
	}
	for name, image := range map[string]string{"outside": outside, "symlink inside to outside": link} {
		r := crafted(t, s, nil, name, `{"action":"exec","image":`+jsonString(image)+`,"args":["echo","PAYLOAD-RAN"],"cwd":"/"}`)
		wantRefused(t, r, exitDenied, "images.limit_paths")
	}
	r := crafted(t, s, nil, "dot-dot", `{"action":"exec","image":`+jsonString(mine+"/../../"+filepath.Base(filepath.Dir(filepath.Dir(outside)))+"/work/busybox_latest.sif")+`,"args":["true"],"cwd":"/"}`)
	wantRefused(t, r, 253, "not an absolute, clean path")
	r = crafted(t, s, nil, "inside", `{"action":"exec","image":`+jsonString(inside)+`,"args":["echo","PAYLOAD-RAN"],"cwd":"/"}`)
	if r.Code != 0 || !strings.Contains(r.Stdout, "PAYLOAD-RAN") {
		t.Errorf("a crafted config for an image inside limit_paths (the control):\n%s", r)
	}

	// Granted capabilities or not, the payload has none; asking in a crafted config is a
	// malformed request.
	r = s.Run(h.User, "exec", inside, "cat", "/proc/self/status").OK(t)
	userStatus(t, "with capabilities granted", r.Stdout)
	r = s.Run(h.User, "exec", "-p", inside, "cat", "/proc/self/status").OK(t)
	userStatus(t, "with capabilities granted, -p", r.Stdout)
	wantRefused(t, crafted(t, s, nil, "caps", `{"action":"exec","image":`+jsonString(inside)+
		`,"args":["echo","PAYLOAD-RAN"],"cwd":"/","capabilities":["CAP_SYS_ADMIN"]}`), 253, "unknown field")

	// A policy file the user could have written is no policy: group- or world-writable,
	// owned by the user, or a symlink, the starter refuses to run at all.
	runInside := func(what string) {
		t.Helper()
		r := crafted(t, s, nil, what, `{"action":"exec","image":`+jsonString(inside)+`,"args":["echo","PAYLOAD-RAN"],"cwd":"/"}`)
		if r.Code != exitDenied || !strings.Contains(r.Stderr, path) || strings.Contains(r.Stdout, "PAYLOAD-RAN") {
			t.Errorf("policy file %s: the starter must refuse it (exit 5, naming it):\n%s", what, r)
		}
	}
	for _, mode := range []os.FileMode{0o664, 0o646} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		runInside(fmt.Sprintf("mode %04o", mode))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	runInside("owned by the user")
	real := filepath.Join(s.Base(), "kerr.toml")
	installPolicy(t, real, orig)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	runInside("a symlink to a root-owned copy")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	installPolicy(t, path, orig)
}

// markSource is a shared object whose constructor appends who loaded it (its tag, the real,
// effective and saved uids, the program) to marker.
func markSource(tag, marker string) string {
	return `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void)
{
	uid_t r, e, s;
	char exe[512] = "?";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int fd;

	if (n > 0)
		exe[n] = 0;
	if (getresuid(&r, &e, &s) != 0)
		r = e = s = 424242;
	fd = open("` + marker + `", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
	if (fd < 0)
		return;
	dprintf(fd, "` + tag + ` uid=%u euid=%u suid=%u exe=%s\n", (unsigned)r, (unsigned)e, (unsigned)s, exe);
	close(fd);
}
/* For LD_AUDIT: the loader wants this, or unloads the library (after its constructor). */
unsigned int la_version(unsigned int v) { return v; }
`
}

// The caller's environment has no effect on the setuid starter: LD_PRELOAD, LD_AUDIT and
// LD_LIBRARY_PATH (a fake libseccomp.so.2, which starter-suid needs) load no code into it,
// GCONV_PATH no iconv module, LD_DEBUG prints nothing, GODEBUG and GOTRACEBACK change nothing
// in its Go stages. Every library writes a marker with the ids of whoever loaded it; the
// same variables do work on ordinary programs of the user (the controls). kerr itself is not
// setuid, so what the variables do to it is the user's business: a marker may say the user,
// never root.
func TestHPCSecCallerEnvironment(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	dir := s.Mkdir(h.User, "evil")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "marker")
	so := func(tag, out string, flags ...string) {
		t.Helper()
		gcc(t, markSource(tag, marker), out, append([]string{"-shared", "-fPIC"}, flags...)...)
	}
	preload := filepath.Join(dir, "preload.so")
	so("preload", preload)
	audit := filepath.Join(dir, "audit.so")
	so("audit", audit)
	// A libseccomp.so.2 that runs its constructor and hands the symbols on to the real one:
	// it needs the real library by absolute path (a stub whose soname is that path).
	libdir := filepath.Join(dir, "lib")
	gconvDir := filepath.Join(dir, "gconv")
	for _, d := range []string{libdir, gconvDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	realSeccomp := ""
	out, _ := exec.Command("ldd", starterSuid()).Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "libseccomp.so.2" && f[1] == "=>" {
			realSeccomp = f[2]
		}
	}
	if realSeccomp == "" {
		t.Fatalf("starter-suid does not need libseccomp.so.2 (ldd):\n%s", out)
	}
	stub := filepath.Join(dir, "stub.so")
	gcc(t, "int kerr_e2e_stub;\n", stub, "-shared", "-fPIC", "-Wl,-soname,"+realSeccomp)
	so("libpath", filepath.Join(libdir, "libseccomp.so.2"), "-Wl,--no-as-needed", stub)
	so("gconv", filepath.Join(gconvDir, "EVIL.so"))
	if err := os.WriteFile(filepath.Join(gconvDir, "gconv-modules"),
		[]byte("module EVIL// INTERNAL EVIL 1\nmodule INTERNAL EVIL// EVIL 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plainStarter := filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter")
	readMarker := func() string {
		b, err := os.ReadFile(marker)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		_ = os.Remove(marker)
		return string(b)
	}
	userLine := fmt.Sprintf("uid=%d euid=%d suid=%d", h.User.UID, h.User.UID, h.User.UID)

	// The controls: each variable does load its library into, or change, a program of the
	// user that is not setuid; the plain starter is starter-suid without the bit.
	controls := []struct {
		name, command string
		env           []string
		mark, err     string // what the marker or stderr must then show
	}{
		{"LD_PRELOAD", plainStarter, []string{"LD_PRELOAD=" + preload}, "preload " + userLine + " exe=" + plainStarter, ""},
		{"LD_AUDIT", plainStarter, []string{"LD_AUDIT=" + audit}, "audit " + userLine + " exe=" + plainStarter, ""},
		{"LD_LIBRARY_PATH", plainStarter, []string{"LD_LIBRARY_PATH=" + libdir}, "libpath " + userLine + " exe=" + plainStarter, ""},
		{"GCONV_PATH", "iconv -f EVIL -t UTF-8 </dev/null", []string{"GCONV_PATH=" + gconvDir}, "gconv " + userLine, ""},
		{"LD_DEBUG", plainStarter, []string{"LD_DEBUG=libs"}, "", "find library=libseccomp.so.2"},
		{"GODEBUG", h.Kerr + " --version", []string{"GODEBUG=inittrace=1"}, "", "init runtime @"},
	}
	for _, c := range controls {
		r := execExported(s, c.env, c.command)
		m := readMarker()
		if c.mark != "" && !strings.Contains(m, c.mark) || c.err != "" && !strings.Contains(r.Stderr, c.err) {
			t.Fatalf("control %s: the variable has no effect on an ordinary program, so the test proves nothing\nmarker %q\n%s", c.name, m, r)
		}
	}

	hostile := []string{"LD_PRELOAD=" + preload, "LD_AUDIT=" + audit, "LD_LIBRARY_PATH=" + libdir,
		"GCONV_PATH=" + gconvDir, "CHARSET=EVIL", "LD_DEBUG=libs", "GODEBUG=inittrace=1", "GOTRACEBACK=all",
		"MALLOC_CHECK_=3", "LD_BIND_NOW=1", "LD_SHOW_AUXV=1"}
	checkMarker := func(what string) {
		t.Helper()
		for _, l := range strings.Split(strings.TrimSpace(readMarker()), "\n") {
			if l == "" {
				continue
			}
			t.Logf("%s: loaded: %s", what, l)
			if !strings.Contains(l, userLine) || strings.Contains(l, "starter") {
				t.Errorf("%s: code from the caller's environment ran in a privileged process: %s", what, l)
			}
		}
	}
	// Through kerr, as a user runs it: kerr passes its environment to starter-suid.
	r := s.RunWith(h.User, harness.Opts{Env: hostile}, "exec", img, "/bin/sh", "-c", "cat /proc/self/status")
	if r.Code != 0 {
		t.Fatalf("kerr exec with a hostile environment:\n%s", r)
	}
	userStatus(t, "hostile environment", r.Stdout)
	checkMarker("kerr exec")
	if strings.Contains(r.Stderr, "find library") || strings.Contains(r.Stdout, "AT_SECURE") {
		t.Errorf("the loader's debugging ran in starter-suid:\n%s", r)
	}
	// Straight to starter-suid, so that anything on stderr is the starter's.
	r = crafted(t, s, hostile, "hostile env",
		`{"action":"exec","image":`+jsonString(img)+`,"args":["/bin/sh","-c","echo PAYLOAD-RAN; cat /proc/self/status"],"cwd":"/"}`)
	if r.Code != 0 || !strings.Contains(r.Stdout, "PAYLOAD-RAN") {
		t.Fatalf("starter-suid with a hostile environment:\n%s", r)
	}
	userStatus(t, "starter-suid, hostile environment", r.Stdout)
	checkMarker("starter-suid")
	for _, sign := range []string{"init runtime @", "find library", "calling init", "AT_SECURE"} {
		if strings.Contains(r.Stderr+r.Stdout, sign) {
			t.Errorf("%q in the output of starter-suid: the caller's environment reached it:\n%s", sign, r)
		}
	}
}

// hpcProc is a process as /proc/PID/status shows it: pid, parent, uids, name.
type hpcProc struct {
	pid, ppid int
	uids      string // real, effective, saved, filesystem
	comm      string
	status    string
}

func readProc(pid int) (hpcProc, bool) {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		return hpcProc{}, false
	}
	st := string(b)
	ppid, _ := strconv.Atoi(statusField(st, "PPid"))
	return hpcProc{pid: pid, ppid: ppid, uids: strings.Join(strings.Fields(statusField(st, "Uid")), " "),
		comm: statusField(st, "Name"), status: st}, true
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []hpcProc {
	ents, _ := os.ReadDir("/proc")
	var out []hpcProc
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok && p.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls cond every 20ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
}

// Stage 1 is a Go program in the setuid binary: the caller's GOTRACEBACK must not make it
// dump its stacks (Go's secure mode sets GOTRACEBACK=none). A --security profile that is a
// FIFO holds stage 1 in open(2), as the caller, so that SIGQUIT reaches it there. The
// control: the same signal to kerr itself, held on an --env-file FIFO, dumps its goroutines.
func TestHPCSecStage1IgnoresGOTRACEBACK(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	fifo := filepath.Join(s.Dir(h.User), "fifo")
	mkfifo(t, fifo)
	env := harness.Opts{Env: []string{"GOTRACEBACK=all"}}
	quitAndFeed := func(run *harness.Running, target func() (int, bool)) harness.Result {
		t.Helper()
		var pid int
		if !waitFor(20*time.Second, func() (ok bool) { pid, ok = target(); return ok }) {
			_ = syscall.Kill(-run.Pid(), syscall.SIGKILL)
			t.Fatalf("the process to signal never showed up:\n%s", run.Wait())
		}
		time.Sleep(300 * time.Millisecond) // into open(2)
		if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		// If it is still there (not killed), let it go on.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_, _ = f.WriteString(`{"defaultAction":"SCMP_ACT_ALLOW"}`)
			f.Close()
		}
		return run.Wait()
	}

	ctl := s.Start(h.User, env, "exec", "--env-file", fifo, img, "true")
	r := quitAndFeed(ctl, func() (int, bool) { return ctl.Pid(), true })
	if !strings.Contains(r.Stderr, "goroutine ") {
		t.Fatalf("control: SIGQUIT with GOTRACEBACK=all did not make kerr dump its goroutines; the test proves nothing:\n%s", r)
	}

	run := s.Start(h.User, env, "exec", "--security", "seccomp:"+fifo, img, "true")
	r = quitAndFeed(run, func() (int, bool) {
		for _, c := range childrenOf(run.Pid()) {
			if c.uids == strings.Repeat(itoa(int(h.User.UID))+" ", 3)+itoa(int(h.User.UID)) {
				return c.pid, true // stage 1: the caller's ids, child of stage 0
			}
		}
		return 0, false
	})
	if strings.Contains(r.Stderr, "goroutine ") || strings.Contains(r.Stderr, "starter/native") {
		t.Errorf("stage 1 dumped its stacks for the caller's GOTRACEBACK:\n%s", r)
	}
	if r.Code == 0 {
		t.Errorf("stage 1 got SIGQUIT, yet the run succeeded:\n%s", r)
	}
}

// attackerSource is a program the user runs: it starts a command (kerr exec ...) as its
// child and, while the command runs, attacks the starter's processes the way the caller
// could: signal (kill 0), ptrace (PTRACE_SEIZE), /proc/PID/mem, /proc/PID/environ, /proc/PID/fd,
// process_vm_readv and pidfd_getfd. It reports one "SEC" line per process attacked:
//   - stage0: the process kerr became (starter-suid), holding the caller's real and
//     effective uid and a saved uid of root, while stage 1 works;
//   - stage1: its child with the caller's ids only, held in open(2) on the FIFO until the
//     attacker has attacked it, then fed the profile;
//   - stage2: the same pid once real, effective and saved uids are 0 (with -p: the grandchild
//     below the two relays), caught by polling; a sample counts only if the uids still read
//     0 after the attack.
//
// "attacker control" attacks an ordinary child of its own instead: every attack works.
const attackerSource = `#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *result(int failed)
{
	return failed ? strerrorname_np(errno) : "ok";
}

/* uids reads the Uid line of /proc/pid/status: real, effective, saved, fs. */
static int uids(pid_t pid, long u[4], long *ppid)
{
	char path[64], line[256];
	FILE *f;
	int got = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Uid:", 4) == 0 && sscanf(line + 4, "%ld %ld %ld %ld", &u[0], &u[1], &u[2], &u[3]) == 4)
			got |= 1;
		if (ppid != NULL && strncmp(line, "PPid:", 5) == 0 && sscanf(line + 5, "%ld", ppid) == 1)
			got |= 2;
	}
	fclose(f);
	return (got & 1) ? 0 : -1;
}

static void attack(pid_t pid, char *out, size_t n)
{
	char path[64], b[8];
	const char *kill_r, *ptrace_r, *mem_r, *env_r, *vm_r, *getfd_r, *fd_r;
	struct iovec l = {.iov_base = b, .iov_len = sizeof(b)}, r = {.iov_base = (void *)0x10000, .iov_len = sizeof(b)};
	long u[4] = {-1, -1, -1, -1};
	int fd, pidfd, rc;
	DIR *d;

	uids(pid, u, NULL);
	kill_r = result(kill(pid, 0) != 0);
	rc = ptrace(PTRACE_SEIZE, pid, 0, 0);
	ptrace_r = result(rc != 0);
	if (rc == 0) {
		ptrace(PTRACE_INTERRUPT, pid, 0, 0);
		waitpid(pid, NULL, __WALL);
		ptrace(PTRACE_DETACH, pid, 0, 0);
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	mem_r = result(fd < 0);
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	env_r = result(fd < 0 || read(fd, b, 1) < 0);
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	fd_r = result(d == NULL || (errno = 0, readdir(d) == NULL && errno != 0));
	if (d != NULL)
		closedir(d);
	/* EFAULT: allowed to read, at an address that is not mapped. */
	rc = (int)process_vm_readv(pid, &l, 1, &r, 1, 0);
	vm_r = (rc < 0 && errno == EFAULT) ? "ok" : result(rc < 0);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		getfd_r = result(1);
	} else {
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, 0, 0);
		getfd_r = result(fd < 0);
		if (fd >= 0)
			close(fd);
		close(pidfd);
	}
	snprintf(out, n, "pid=%d uids=%ld,%ld,%ld kill=%s ptrace=%s mem=%s environ=%s fddir=%s vmread=%s getfd=%s",
		 (int)pid, u[0], u[1], u[2], kill_r, ptrace_r, mem_r, env_r, fd_r, vm_r, getfd_r);
}

/* stage1 finds the child of pid that has the caller's ids only. */
static pid_t stage1(pid_t pid, long me)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		long u[4], ppid = 0;
		pid_t p = (pid_t)atoi(e->d_name);

		if (p > 0 && uids(p, u, &ppid) == 0 && ppid == pid && u[0] == me && u[1] == me && u[2] == me)
			found = p;
	}
	if (d != NULL)
		closedir(d);
	return found;
}

/* rootGrandchild finds a grandchild of pid whose real, effective and saved uids are 0: stage 2
 * in a new pid namespace, under the relays. */
static pid_t rootGrandchild(pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d != NULL && found == 0 && (e = readdir(d)) != NULL) {
		long u[4], v[4], ppid = 0, pppid = 0;
		pid_t p = (pid_t)atoi(e->d_name);

		if (p > 0 && uids(p, u, &ppid) == 0 && u[0] == 0 && u[1] == 0 && u[2] == 0 && ppid > 0 &&
		    uids((pid_t)ppid, v, &pppid) == 0 && pppid == pid)
			found = p;
	}
	if (d != NULL)
		closedir(d);
	return found;
}

int main(int argc, char **argv)
{
	char rep[512];
	long me = (long)getuid(), u[4];
	pid_t child;
	int st = 0, did0 = 0, did1 = 0, did2 = 0, tries2 = 0, fed = 0;
	time_t start = time(NULL);

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 2 && strcmp(argv[1], "control") == 0) {
		child = fork();
		if (child == 0) {
			pause();
			_exit(0);
		}
		usleep(100000);
		attack(child, rep, sizeof(rep));
		printf("SEC phase=control %s\n", rep);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		return 0;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: attacker FIFO PROFILE CMD ARGS...\n");
		return 2;
	}
	child = fork();
	if (child == 0) {
		execv(argv[3], argv + 3);
		_exit(127);
	}
	for (;;) {
		if (waitpid(child, &st, WNOHANG) == child)
			break;
		if (time(NULL) - start > 60) {
			printf("SEC timeout\n");
			kill(child, SIGKILL);
			waitpid(child, &st, 0);
			break;
		}
		if (uids(child, u, NULL) != 0)
			continue;
		if (u[0] == me && u[1] == me && u[2] == 0 && !fed) {
			pid_t s1;

			if (!did0) {
				attack(child, rep, sizeof(rep));
				printf("SEC phase=stage0 %s\n", rep);
				did0 = 1;
			}
			s1 = stage1(child, me);
			if (s1 > 0 && !did1) {
				attack(s1, rep, sizeof(rep));
				printf("SEC phase=stage1 %s\n", rep);
				did1 = 1;
			}
			if (did1) {
				/* Let stage 1 go on: it is in open(2) on the FIFO, or about to be. */
				int fd = open(argv[1], O_WRONLY | O_CLOEXEC);

				if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0)
					printf("SEC feed %s\n", strerrorname_np(errno));
				if (fd >= 0)
					close(fd);
				fed = 1;
			}
		} else if (fed && !did2 && u[0] == me && u[1] == me && u[2] == me) {
			/* With a pid namespace this process is now the relay: stage 2 is below it. */
			pid_t s2 = rootGrandchild(child);
			long v[4];

			if (s2 > 0) {
				attack(s2, rep, sizeof(rep));
				tries2++;
				if (uids(s2, v, NULL) == 0 && v[0] == 0 && v[1] == 0 && v[2] == 0) {
					printf("SEC phase=stage2 %s\n", rep);
					did2 = 1;
				}
			}
		} else if (u[0] == 0 && u[1] == 0 && u[2] == 0 && !did2) {
			long v[4];

			attack(child, rep, sizeof(rep));
			tries2++;
			if (uids(child, v, NULL) == 0 && v[0] == 0 && v[1] == 0 && v[2] == 0) {
				printf("SEC phase=stage2 %s\n", rep);
				did2 = 1;
			}
		}
	}
	printf("SEC exit=%d signal=%d stage2-tries=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
	       WIFSIGNALED(st) ? WTERMSIG(st) : 0, tries2);
	return 0;
}
`

// secLines parses the attacker's report: phase -> attack -> result.
func secLines(out string) map[string]map[string]string {
	res := map[string]map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(l, "SEC ")
		if !ok {
			continue
		}
		m := map[string]string{}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		key := m["phase"]
		if key == "" {
			key = "end"
		}
		if res[key] == nil {
			res[key] = map[string]string{}
		}
		for k, v := range m {
			res[key][k] = v
		}
	}
	return res
}

var attacks = []string{"ptrace", "mem", "environ", "fddir", "vmread", "getfd"}

// The caller can neither trace nor reach into any stage of the setuid starter, nor signal
// it once it is root: stage 0 (real and effective uid the caller's, saved uid root) and
// stage 1 (the caller's ids only, deciding the plan) are not dumpable; stage 2 is root
// through and through. Signals to stage 0 and 1 are allowed (they are the caller's to stop
// or kill, which only ends the run). The control runs the same attacks against an ordinary
// process of the user: they all work.
func TestHPCSecPrivilegedStagesUntouchable(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	bin := s.Mkdir(h.User, "bin")
	attacker := filepath.Join(bin, "attacker")
	gcc(t, attackerSource, attacker)

	r := s.Exec(h.User, harness.Opts{}, attacker, "control")
	ctl := secLines(r.Stdout)["control"]
	for _, a := range append([]string{"kill"}, attacks...) {
		if ctl[a] != "ok" {
			t.Fatalf("control: %s against an ordinary process of the user: %q; the test proves nothing\n%s", a, ctl[a], r)
		}
	}

	fifo := filepath.Join(s.Dir(h.User), "profile.fifo")
	mkfifo(t, fifo)
	for _, run := range []struct{ img, flag string }{{userSIF(t, s), "--ipc"}, {rootSIF(t, s), "--ipc"}, {userSIF(t, s), "-p"}} {
		img := run.img
		owner := filepath.Base(filepath.Dir(filepath.Dir(img))) + "-owned SIF, " + run.flag
		args := []string{fifo, `{"defaultAction":"SCMP_ACT_ALLOW"}`, h.Kerr, "exec", "--security", "seccomp:" + fifo,
			run.flag, img, "/bin/sh", "-c", "cat /proc/self/status"}
		r := s.Exec(h.User, harness.Opts{}, attacker, args...)
		rep := secLines(r.Stdout)
		t.Logf("%s: %v", owner, rep)
		if e := rep["end"]; e["exit"] != "0" {
			t.Errorf("%s: the run did not succeed under attack:\n%s", owner, r)
		}
		userStatus(t, "the payload", r.Stdout)
		u := itoa(int(h.User.UID))
		for _, ph := range []struct{ name, uids, kill string }{
			{"stage0", u + "," + u + ",0", "ok"},
			{"stage1", u + "," + u + "," + u, "ok"},
			{"stage2", "0,0,0", "EPERM"},
		} {
			got, ok := rep[ph.name]
			if !ok {
				t.Errorf("%s: %s was never caught (%v):\n%s", owner, ph.name, rep["end"], r)
				continue
			}
			if got["uids"] != ph.uids {
				t.Errorf("%s: %s has uids %s, want %s", owner, ph.name, got["uids"], ph.uids)
			}
			if got["kill"] != ph.kill {
				t.Errorf("%s: %s: kill(pid, 0) by the caller: %s, want %s", owner, ph.name, got["kill"], ph.kill)
			}
			for _, a := range attacks {
				if got[a] != "EPERM" && got[a] != "EACCES" {
					t.Errorf("%s: %s: %s by the caller: %q, want EPERM or EACCES", owner, ph.name, a, got[a])
				}
			}
		}
	}
}

// etcEntries lists the host's /etc entries whose names start with prefix.
func etcEntries(prefix string) []string {
	ents, _ := os.ReadDir("/etc")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// chownTree gives a tree to the user (without following symlinks).
func chownTree(t *testing.T, root string) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(h.User.UID), int(h.User.GID))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A symlink in an image cannot point a mount at the host: bind destinations, and the files
// stage 2 reads and mounts (/etc/passwd, /etc/group), are resolved inside the container's
// root, where /etc is the image's and /proc/self/root is a magic link that is not followed.
// The images are sandboxes (directories), one root's and one the user made: whatever the
// outcome of each run, the host's /etc gets nothing, and a root-only file of the host does
// not reach the container. Where the symlink leads inside the container, the bind is there.
func TestHPCSecImageSymlinksStayInside(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	rootSB := filepath.Join(s.Dir(h.Root), "sandbox")
	s.Run(h.Root, "build", "--sandbox", "--insecure", rootSB, h.Ref(h.Images.Busybox)).OK(t)
	userSB := filepath.Join(s.Dir(h.User), "sandbox")
	if b, err := exec.Command("cp", "-a", rootSB, userSB).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, b)
	}
	secret := filepath.Join(s.Base(), "root-only")
	secretText := fmt.Sprintf("KERR-E2E-SECRET-%d", time.Now().UnixNano())
	if err := os.WriteFile(secret, []byte(secretText+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"evil":     "/etc",
		"evil2":    "../../../../../../../../../../etc",
		"evil3":    "/proc/self/root/etc",
		"evil4":    "/proc/1/root/etc",
		"evilroot": "/proc/self/root",
		"evilfile": "/etc/kerr-sec-file",
	}
	// The same links in the user's --overlay DIR over a root-owned SIF: the user's layer is
	// on top of the image, so it can put them in the container's root too.
	ov := s.Mkdir(h.User, "overlay")
	upper := filepath.Join(ov, "upper")
	ovID := s.Mkdir(h.User, "overlay-identity")
	if err := os.MkdirAll(filepath.Join(ovID, "upper", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []string{rootSB, userSB, upper} {
		for name, target := range links {
			if err := os.Symlink(target, filepath.Join(sb, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The user's own image and layer: /etc/passwd and /etc/group lead to a root-only host
	// file.
	for _, sb := range []string{userSB, filepath.Join(ovID, "upper")} {
		for name, target := range map[string]string{"passwd": "/proc/self/root" + secret, "group": "/proc/1/root" + secret} {
			p := filepath.Join(sb, "etc", name)
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	chownTree(t, userSB)
	chownTree(t, ov)
	chownTree(t, ovID)
	images := []struct {
		name string
		args []string // the image, after any flags
	}{
		{"root's sandbox", []string{rootSB}},
		{"the user's sandbox", []string{userSB}},
		{"--overlay over root's SIF", []string{"--overlay", ov, rootSIF(t, s)}},
	}

	data := s.Mkdir(h.User, "data")
	file := filepath.Join(data, "inside")
	if err := os.WriteFile(file, []byte("from the host dir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	if got := etcEntries("kerr-sec"); len(got) > 0 {
		t.Fatalf("the host's /etc already has %v", got)
	}
	cases := []struct {
		flag, spec string
		inside     string // where the bind must be in the container; "" when refusing is fine
	}{
		{"-B", data + ":/evil/kerr-sec-a", "/etc/kerr-sec-a/inside"},
		{"-B", data + ":/evil2/kerr-sec-b", "/etc/kerr-sec-b/inside"},
		{"-B", data + ":/evil", "/etc/inside"},
		{"-B", data + ":/evil3/kerr-sec-c", ""},
		{"-B", data + ":/evil4/kerr-sec-d", ""},
		{"-B", data + ":/evilroot/etc/kerr-sec-e", ""},
		{"-B", data + ":/proc/self/root/etc/kerr-sec-f", ""},
		{"-B", data + ":/proc/1/root/etc/kerr-sec-g", ""},
		{"-B", file + ":/evilfile", ""},
		{"--home", data + ":/evil/kerr-sec-h", "/etc/kerr-sec-h/inside"},
	}
	for _, img := range images {
		for _, c := range cases {
			check := "true"
			if c.inside != "" {
				check = "cat " + c.inside
			}
			r := s.Run(h.User, append(append([]string{"exec", c.flag, c.spec}, img.args...), "/bin/sh", "-c", check)...)
			switch {
			case c.inside != "" && (r.Code != 0 || r.Stdout != "from the host dir\n"):
				t.Errorf("%s %s in %s: want the bind at %s inside:\n%s", c.flag, c.spec, img.name, c.inside, r)
			case c.inside == "":
				t.Logf("%s %s in %s: exit %d %s", c.flag, c.spec, img.name, r.Code, strings.TrimSpace(r.Stderr))
			}
			if got := etcEntries("kerr-sec"); len(got) > 0 {
				t.Errorf("%s %s in %s: the host's /etc got %v", c.flag, c.spec, img.name, got)
				for _, n := range got {
					_ = os.RemoveAll(filepath.Join("/etc", n)) // only what this test named
				}
			}
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), " /etc/kerr-sec") || strings.Contains(string(mi), " /etc/inside") {
		t.Errorf("a mount on the host's /etc:\n%s", mi)
	}
	// (A run may fail on the layer's etc/, made outside fuse-overlayfs: what matters is
	// that the secret does not come out.)
	for _, img := range append(images[1:2], struct {
		name string
		args []string
	}{"--overlay with etc/passwd over root's SIF", []string{"--overlay", ovID, rootSIF(t, s)}}) {
		r := s.Run(h.User, append(append([]string{"exec"}, img.args...), "/bin/sh", "-c", "cat /etc/passwd /etc/group 2>&1; ls -l /etc/passwd /etc/group; true")...)
		if strings.Contains(r.Stdout, secretText) {
			t.Errorf("%s: a root-only host file reached the container through /etc/passwd or /etc/group:\n%s", img.name, r)
		}
		t.Logf("%s: the identity files: %s", img.name, r)
	}
}

// loopsBackedBy lists the loop devices whose backing file is path.
func loopsBackedBy(path string) []string {
	want, err := os.Stat(path)
	if err != nil {
		return nil
	}
	m, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range m {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		backing := strings.TrimSpace(string(b))
		if fi, err := os.Stat(backing); backing == path || err == nil && os.SameFile(fi, want) {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out
}

// CVE-2023-30549: a user-writable image or overlay must never meet a kernel filesystem
// driver as root. While `kerr exec IMAGE sleep` runs, a SIF the user owns, or that root owns
// but a group may write, is served by squashfuse running as the user and has no loop device;
// a root-owned SIF that only root may write does get a loop device (the control: the checks
// can see one). An --overlay DIR is served by fuse-overlayfs running as the user: the
// container's root is that FUSE mount and no kernel overlay has its upper layer in DIR.
func TestHPCSecUserImagesNeverReachTheKernel(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	writable := filepath.Join(s.Dir(h.Root), "group-writable.sif")
	if b, err := exec.Command("cp", rootSIF(t, s), writable).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, b)
	}
	if err := os.Chmod(writable, 0o664); err != nil {
		t.Fatal(err)
	}
	u := itoa(int(h.User.UID))
	userIDs := strings.Repeat(u+" ", 3) + u
	ov := s.Mkdir(h.User, "overlay")
	for _, c := range []struct {
		name, img string
		fuse      bool
		overlay   bool
	}{
		{"user-owned", userSIF(t, s), true, false},
		{"root-owned, group-writable", writable, true, false},
		{"root-owned, 0644 (control)", rootSIF(t, s), false, false},
		{"user-owned with --overlay", userSIF(t, s), true, true},
		{"root-owned with --overlay", rootSIF(t, s), false, true},
	} {
		args := []string{"exec", c.img, "sleep", "3"}
		if c.overlay {
			args = append([]string{"exec", "--overlay", ov}, args[1:]...)
		}
		run := s.Start(h.User, harness.Opts{}, args...)
		var fuse, fuseOverlay []hpcProc
		var loops []string
		var mounts string
		running := waitFor(20*time.Second, func() bool {
			p, ok := readProc(run.Pid())
			return ok && p.comm == "sleep"
		})
		if running {
			time.Sleep(300 * time.Millisecond)
			for _, p := range childrenOf(run.Pid()) {
				switch p.comm {
				case "squashfuse":
					fuse = append(fuse, p)
				case "fuse-overlayfs":
					fuseOverlay = append(fuseOverlay, p)
				}
			}
			loops = loopsBackedBy(c.img)
			for _, p := range append(append([]hpcProc{{pid: run.Pid()}}, fuse...), fuseOverlay...) {
				b, _ := os.ReadFile("/proc/" + itoa(p.pid) + "/mountinfo")
				mounts += string(b)
			}
		}
		r := run.Wait()
		if !running || r.Code != 0 {
			t.Errorf("%s: the payload did not run:\n%s", c.name, r)
			continue
		}
		// The container's root: the kernel's overlay of the image and the session's tmpfs
		// (root's), or the user's fuse-overlayfs over it with --overlay.
		root := ""
		for _, l := range strings.Split(mounts, "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && f[4] == "/" && root == "" {
				_, post, _ := strings.Cut(l, " - ")
				root = strings.Fields(post + " ?")[0]
			}
			if _, post, ok := strings.Cut(l, " - "); ok && strings.HasPrefix(post, "overlay ") && strings.Contains(post, ov) {
				t.Errorf("%s: a kernel overlay with the user's directory: %s", c.name, l)
			}
		}
		if want := map[bool]string{false: "overlay", true: "fuse.fuse-overlayfs"}[c.overlay]; root != want {
			t.Errorf("%s: the container's root is %q, want %s", c.name, root, want)
		}
		if c.overlay {
			if len(fuseOverlay) != 1 || fuseOverlay[0].uids != userIDs || statusField(fuseOverlay[0].status, "CapEff") != "0000000000000000" {
				t.Errorf("%s: fuse-overlayfs processes %+v, want one, the user's, without capabilities", c.name, fuseOverlay)
			}
		}
		switch {
		case c.fuse && len(loops) > 0:
			t.Errorf("%s: loop devices %v are backed by the image: the kernel's squashfs reads a user-writable file", c.name, loops)
		case c.fuse && len(fuse) != 1:
			t.Errorf("%s: %d squashfuse processes under the payload, want 1", c.name, len(fuse))
		case c.fuse && (fuse[0].uids != userIDs || statusField(fuse[0].status, "CapEff") != "0000000000000000"):
			t.Errorf("%s: squashfuse runs with uids %q, CapEff %s; want the user's, none", c.name, fuse[0].uids, statusField(fuse[0].status, "CapEff"))
		case !c.fuse && (len(loops) != 1 || len(fuse) != 0):
			t.Errorf("%s: loop devices %v and %d squashfuse; want one loop device and no squashfuse (so the checks above can fail)", c.name, loops, len(fuse))
		}
	}
}

// fdTargets lists what a process's fds point to (as root).
func fdTargets(pid int) map[string]string {
	ents, _ := os.ReadDir("/proc/" + itoa(pid) + "/fd")
	out := map[string]string{}
	for _, e := range ents {
		l, _ := os.Readlink("/proc/" + itoa(pid) + "/fd/" + e.Name())
		out[e.Name()] = l
	}
	return out
}

// No fd of the starter reaches the payload, with a pid namespace, binds, a home, a seccomp
// profile of the user's, -c or --overlay (TestHPCExecIsTheUser checks the plain run). With -p the
// relays outside and inside the namespace are the caller's processes (the caller may signal
// them: the scheduler's signals go through them) but not dumpable, so the caller cannot take
// their fds; and they hold nothing privileged: no /dev/fuse, loop device, socket or session
// directory.
func TestHPCSecNoFDLeaks(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	data := s.Mkdir(h.User, "data")
	file := filepath.Join(data, "f")
	home := s.Mkdir(h.User, "althome")
	ov := s.Mkdir(h.User, "overlay")
	prof := filepath.Join(s.Dir(h.User), "profile.json")
	for _, p := range []string{file, prof} {
		if err := os.WriteFile(p, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(h.User.UID), int(h.User.GID)); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range []string{userSIF(t, s), rootSIF(t, s)} {
		for _, flags := range [][]string{
			{"-p"},
			{"-B", data + ":/d", "-B", file + ":/f:ro", "--home", home + ":/h"},
			{"-p", "-B", data + ":/d", "--security", "seccomp:" + prof, "--hostname", "h"},
			{"-c", "-B", data + ":/d", "--writable-tmpfs"},
			{"--overlay", ov, "-B", data + ":/d"},
		} {
			r := s.Run(h.User, append(append([]string{"exec"}, flags...), img, "ls", "/proc/self/fd")...)
			if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != "0 1 2 3" {
				t.Errorf("%v %s: fds of the payload: %q, want 0 1 2 (and ls's 3):\n%s", flags, img, got, r)
			}
		}
	}

	img := userSIF(t, s)
	run := s.Start(h.User, harness.Opts{}, "exec", "-p", "-B", data+":/d", img, "sleep", "3")
	var relay, init, payload hpcProc
	found := waitFor(20*time.Second, func() bool {
		var ok bool
		if relay, ok = readProc(run.Pid()); !ok {
			return false
		}
		for _, c := range childrenOf(relay.pid) {
			init = c
			for _, g := range childrenOf(c.pid) {
				if g.comm == "sleep" {
					payload = g
					return true
				}
			}
		}
		return false
	})
	if !found {
		t.Fatalf("-p: no relay, init and payload:\n%s", run.Wait())
	}
	u := itoa(int(h.User.UID))
	for _, p := range []hpcProc{relay, init, payload} {
		if p.uids != strings.Repeat(u+" ", 3)+u {
			t.Errorf("-p: %s (%d) has uids %q, want the user's", p.comm, p.pid, p.uids)
		}
	}
	for name, p := range map[string]hpcProc{"relay": relay, "init": init} {
		fds := fdTargets(p.pid)
		t.Logf("-p: the %s's fds: %v", name, fds)
		for n, target := range fds {
			if target == "/dev/fuse" || strings.HasPrefix(target, "/dev/loop") || strings.HasPrefix(target, "socket:") ||
				strings.Contains(target, "/lib/kerr/") || strings.Contains(target, "kerr.toml") {
				t.Errorf("-p: the %s holds fd %s -> %s", name, n, target)
			}
		}
		if r := s.Exec(h.User, harness.Opts{}, "/bin/ls", "/proc/"+itoa(p.pid)+"/fd"); r.Code == 0 {
			t.Errorf("-p: the user can list the %s's fds (it is dumpable):\n%s", name, r)
		}
		if r := s.Exec(h.User, harness.Opts{}, "/bin/kill", "-0", itoa(p.pid)); r.Code != 0 {
			t.Errorf("-p: the user cannot signal the %s:\n%s", name, r)
		}
	}
	if fds := fdTargets(payload.pid); len(fds) != 3 {
		t.Errorf("-p: the payload's fds: %v, want 0 1 2", fds)
	}
	if r := run.Wait(); r.Code != 0 {
		t.Errorf("-p run:\n%s", r)
	}
}
