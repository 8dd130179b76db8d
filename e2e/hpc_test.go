//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// HPC mode: kerr exec/run/shell as the unprivileged test user, through the installed
// setuid starter, under the installed (default) policy.

// userSIF pulls the busybox image as the user: a SIF the user owns (mounted through
// squashfuse under the default policy).
func userSIF(t *testing.T, s *harness.Session) string {
	t.Helper()
	p := filepath.Join(s.Dir(h.User), "busybox_latest.sif")
	if _, err := os.Stat(p); err != nil {
		s.Run(h.User, "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	}
	return p
}

// rootSIF is the busybox image owned by root, readable by all (mounted with the kernel's
// squashfs driver on a loop device under the default policy).
func rootSIF(t *testing.T, s *harness.Session) string {
	t.Helper()
	p := filepath.Join(s.Dir(h.Root), "busybox_latest.sif")
	if _, err := os.Stat(p); err != nil {
		p = pullBusyboxSIF(t, s)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func statusField(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// The payload is the user, without any capability, with no_new_privs and a seccomp
// filter, in the user's cwd with the user's home; its exit status is kerr's.
func TestHPCExecIsTheUser(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	for name, img := range map[string]string{"user-owned (squashfuse)": userSIF(t, s), "root-owned (kernel squashfs)": rootSIF(t, s)} {
		t.Run(name, func(t *testing.T) {
			r := s.Run(h.User, "exec", img, "/bin/sh", "-c", "id -u; id -g; pwd; echo $HOME; cat /proc/self/status; grep kerr-e2e /etc/passwd; ls /proc/self/fd")
			r.OK(t)
			lines := strings.Split(r.Stdout, "\n")
			if len(lines) < 4 || lines[0] != itoa(int(h.User.UID)) || lines[1] != itoa(int(h.User.GID)) {
				t.Fatalf("ids inside: %q", lines)
			}
			if lines[2] != s.Dir(h.User) || lines[3] != h.User.Home {
				t.Errorf("cwd %q, HOME %q; want %q, %q", lines[2], lines[3], s.Dir(h.User), h.User.Home)
			}
			for key, want := range map[string]string{"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
				"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2"} {
				if got := statusField(r.Stdout, key); got != want {
					t.Errorf("%s %q, want %q", key, got, want)
				}
			}
			if !strings.Contains(r.Stdout, "kerr-e2e:x:"+itoa(int(h.User.UID))+":") {
				t.Errorf("no passwd entry for the user inside:\n%s", r.Stdout)
			}
			// ls's own directory fd aside, only stdio: nothing of the starter leaks in.
			if r := s.Run(h.User, "exec", img, "ls", "/proc/self/fd").OK(t); strings.Join(strings.Fields(r.Stdout), " ") != "0 1 2 3" {
				t.Errorf("open fds in the payload: %q, want 0 1 2 (and ls's 3)", r.Stdout)
			}
		})
	}
	img := userSIF(t, s)
	// Exit status and signals as kerr's.
	if r := s.Run(h.User, "exec", img, "/bin/sh", "-c", "exit 7"); r.Code != 7 {
		t.Errorf("exit 7 inside: kerr exited %d\n%s", r.Code, r)
	}
	// kerr becomes the payload: the caller's shell sees 128+9.
	if r := s.Exec(h.User, harness.Opts{}, "/bin/sh", "-c", h.Kerr+" exec "+img+" /bin/sh -c 'kill -9 $$'; echo status $?"); strings.TrimSpace(r.Stdout) != "status 137" {
		t.Errorf("killed by SIGKILL inside: %s", r)
	}
	// Stdin passes straight through; no terminal needed.
	if r := s.RunWith(h.User, harness.Opts{Stdin: "through stdin\n"}, "exec", img, "cat"); r.Stdout != "through stdin\n" {
		t.Errorf("stdin: %s", r)
	}
	// The root filesystem is read-only, /tmp and the cwd are the host's.
	r := s.Run(h.User, "exec", img, "/bin/sh", "-c", "touch /new 2>&1; echo made > made-inside")
	if !strings.Contains(r.Stdout, "Read-only file system") {
		t.Errorf("writing / inside: %s", r)
	}
	if b, err := os.ReadFile(filepath.Join(s.Dir(h.User), "made-inside")); err != nil || string(b) != "made\n" {
		t.Errorf("a file written in the cwd inside: %q, %v", b, err)
	}
	// The image's own /tmp (1777; the host's is not bound): read-only, unless
	// --writable-tmpfs, whose changes are gone afterwards.
	r = s.Run(h.User, "exec", "--no-mount", "tmp", img, "/bin/sh", "-c", "touch /tmp/new 2>&1; true")
	if !strings.Contains(r.Stdout, "Read-only file system") {
		t.Errorf("writing the image's /tmp: %s", r)
	}
	s.Run(h.User, "exec", "--no-mount", "tmp", "--writable-tmpfs", img, "/bin/sh", "-c", "touch /tmp/new && ls /tmp/new").OK(t)
	s.Run(h.User, "exec", "--no-mount", "tmp", img, "/bin/sh", "-c", "! test -e /tmp/new").OK(t)
}

// run, shell and the environment rules.
func TestHPCRunShellEnv(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	// The fixture's runscript is its ENTRYPOINT+CMD: it prints FOO and its arguments.
	if r := s.Run(h.User, "run", img).OK(t); !strings.Contains(r.Stdout, "FOO=bar ARGS=hello world") {
		t.Errorf("run: %s", r)
	}
	if r := s.RunWith(h.User, harness.Opts{Stdin: "echo in-shell $0\n"}, "shell", img).OK(t); !strings.Contains(r.Stdout, "in-shell") {
		t.Errorf("shell: %s", r)
	}
	r := s.RunWith(h.User, harness.Opts{Env: []string{"HOSTVAR=host", "KERRENV_FROMKERR=k", "SINGULARITYENV_FROMSING=s", "APPTAINERENV_FOO=over-image"}},
		"exec", "--env", "CLI=c", img, "/bin/sh", "-c", "echo $HOSTVAR $FROMKERR $FROMSING $FOO $CLI")
	if strings.TrimSpace(r.Stdout) != "host k s over-image c" {
		t.Errorf("environment: %s", r)
	}
	r = s.RunWith(h.User, harness.Opts{Env: []string{"HOSTVAR=host", "KERRENV_KEPT=k"}}, "exec", "--cleanenv", img, "/bin/sh", "-c", "echo [$HOSTVAR] $KEPT $FOO")
	if strings.TrimSpace(r.Stdout) != "[] k bar" {
		t.Errorf("--cleanenv: %s", r)
	}
}

// Binds: the user's own paths, read-only on request; the policy's deny list refuses the
// host's secrets with its key named; -c contains.
func TestHPCBindsAndContain(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	data := s.Mkdir(h.User, "data")
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	r := s.Run(h.User, "exec", "-B", data+":/data:ro", img, "/bin/sh", "-c", "cat /data/f; touch /data/g 2>&1; true")
	if !strings.Contains(r.Stdout, "host file") || !strings.Contains(r.Stdout, "Read-only file system") {
		t.Errorf("read-only bind: %s", r)
	}
	for _, src := range []string{"/etc/shadow", "/root", "/"} {
		r := s.Run(h.User, "exec", "-B", src+":/x", img, "true")
		if r.Fails(t, 5) && !strings.Contains(r.Stderr, "mounts.user_bind_deny") {
			t.Errorf("bind %s: the denial does not name the key: %s", src, r.Stderr)
		}
	}
	// -c: no host home, cwd or /tmp; an empty home of the user's.
	r = s.Run(h.User, "exec", "-c", img, "/bin/sh", "-c", "pwd; ls -A $HOME | wc -l; test -e "+s.Dir(h.User)+" && echo cwd-visible; touch $HOME/x && echo home-writable")
	if f := strings.Fields(r.Stdout); len(f) != 3 || f[0] != h.User.Home || f[1] != "0" || f[2] != "home-writable" {
		t.Errorf("-c: %s", r)
	}
}

// Namespaces the policy allows (pid, ipc, uts) work; net is the admin's to grant.
func TestHPCNamespaces(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	r := s.Run(h.User, "exec", "-p", "--hostname", "hpcbox", img, "/bin/sh", "-c", "echo $$; hostname; ps -o pid,user,comm | wc -l").OK(t)
	if f := strings.Fields(r.Stdout); len(f) != 3 || f[0] != "2" || f[1] != "hpcbox" {
		t.Errorf("-p --hostname: %s", r)
	}
	s.Run(h.User, "exec", "-n", img, "true").Fails(t, 5)
	if r := s.Run(h.Root, "exec", "-n", rootSIF(t, s), "/bin/sh", "-c", "ls /sys/class/net"); strings.TrimSpace(r.Stdout) != "lo" {
		t.Errorf("root -n: only lo: %s", r)
	}
}

// Signals a scheduler sends to kerr reach the payload, with and without a pid namespace;
// the exit status is the payload's.
func TestHPCSignalsReachThePayload(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	script := "trap 'echo got USR1' USR1; trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done"
	for _, pid := range []bool{false, true} {
		args := []string{"exec"}
		if pid {
			args = append(args, "-p")
		}
		run := s.Start(h.User, harness.Opts{}, append(args, img, "/bin/sh", "-c", script)...)
		time.Sleep(1500 * time.Millisecond)
		if err := run.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := run.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if r := run.Wait(); r.Code != 42 || r.Stdout != "ready\ngot USR1\ngot TERM\n" {
			t.Errorf("pid namespace %v: %s", pid, r)
		}
	}
}

// A config crafted by hand and fed straight to starter-suid gets only what the policy
// allows; without the HPC magic the native engine refuses to run at all.
func TestHPCStarterRefusesCraftedConfigs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := rootSIF(t, s)
	starter := filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter-suid")
	cfgDir := s.Mkdir(h.User, "cfg")
	cases := map[string]struct {
		cfg  string
		code int
		want string
	}{
		"bind /etc/shadow": {`{"action":"exec","image":"` + img + `","args":["cat","/x"],"cwd":"/","binds":[{"source":"/etc/shadow","dest":"/x"}]}`, 5, "user_bind_deny"},
		"net namespace":    {`{"action":"exec","image":"` + img + `","args":["true"],"cwd":"/","namespaces":["net"]}`, 5, "namespaces.allow"},
		// Malformed configs are the starter's "invalid engine config", exit 253.
		"not a request": {`{"action":"exec","image":"relative.sif","args":["true"],"cwd":"/"}`, 253, "not an absolute"},
		"unknown field": {`{"action":"exec","image":"` + img + `","args":["true"],"cwd":"/","uid":0}`, 253, "unknown field"},
	}
	for name, c := range cases {
		env := `{"version":1,"engine":"native","id":"x","config":` + c.cfg + `}`
		p := filepath.Join(cfgDir, strings.NewReplacer(" ", "-", "/", "-").Replace(name))
		if err := os.WriteFile(p, []byte("KERRHPC1\n"+env), 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.Exec(h.User, harness.Opts{}, "/bin/sh", "-c", starter+" --config-fd 3 3<"+p)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.want) || strings.Contains(r.Stdout, "root:") {
			t.Errorf("%s: want exit %d naming %q:\n%s", name, c.code, c.want, r)
		}
	}
	// The native engine without the magic: refused, nothing runs.
	p := filepath.Join(cfgDir, "plain")
	if err := os.WriteFile(p, []byte(`{"version":1,"engine":"native","id":"x","config":{"action":"exec","image":"`+img+`","args":["id"],"cwd":"/"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.Exec(h.User, harness.Opts{}, "/bin/sh", "-c", starter+" --config-fd 3 3<"+p); r.Code == 0 || strings.Contains(r.Stdout, "uid=") {
		t.Errorf("native engine without the HPC stages:\n%s", r)
	}
}

// Errors before the container starts: one line, documented code, nothing left.
func TestHPCErrors(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	s.Run(h.User, "exec", filepath.Join(s.Dir(h.User), "missing.sif"), "true").Fails(t, 4)
	s.Run(h.User, "exec", img).Fails(t, 2)
	s.Run(h.User, "exec", "-B", "/nonexistent-dir:/x", img, "true").Fails(t, 4)
	notSIF := filepath.Join(s.Dir(h.User), "not.sif")
	if err := os.WriteFile(notSIF, []byte("not a SIF"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.User, "exec", notSIF, "true").Fails(t, 7)
	s.Run(h.User, "exec", "instance://x", "true").Fails(t, 4)
	// --overlay: a directory of the caller's only (this one is root's).
	s.Run(h.User, "exec", "--overlay", s.Dir(h.Root), img, "true").Fails(t, 5)
}

// --overlay DIR: the changes persist in DIR/upper, written by fuse-overlayfs as the user
// (never by a kernel filesystem driver as root: CVE-2023-30549).
func TestHPCOverlayDir(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	ov := s.Mkdir(h.User, "ov")
	if err := os.Chown(ov, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	// The image's own /tmp (1777): the host's is not bound.
	s.Run(h.User, "exec", "--no-mount", "tmp", "--overlay", ov, img, "/bin/sh", "-c", "echo kept > /tmp/f; grep ' / ' /proc/self/mounts").OK(t)
	if r := s.Run(h.User, "exec", "--no-mount", "tmp", "--overlay", ov, img, "cat", "/tmp/f").OK(t); r.Stdout != "kept\n" {
		t.Errorf("second run with the overlay: %s", r)
	}
	st, err := os.Stat(filepath.Join(ov, "upper", "tmp", "f"))
	if err != nil {
		t.Fatalf("the change is not in DIR/upper: %v", err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != h.User.UID {
		t.Errorf("DIR/upper/tmp/f is owned by uid %d, want the user's: written by the user's fuse-overlayfs", sys.Uid)
	}
	s.Run(h.User, "exec", "--no-mount", "tmp", img, "/bin/sh", "-c", "! test -e /tmp/f").OK(t)
	if r := s.Run(h.User, "exec", "--overlay", ov, img, "grep", " / ", "/proc/self/mounts"); !strings.Contains(r.Stdout, "fuse-overlayfs") {
		t.Errorf("the root is not fuse-overlayfs: %s", r)
	}
}

// Batch jobs: a job's ranks start the same SIF at once and share one loop device; each
// payload stays in the caller's cgroup (the job's).
func TestHPCRanksShareALoopDeviceAndStayInTheJobCgroup(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := rootSIF(t, s)
	const ranks = 8
	var runs []*harness.Running
	for i := 0; i < ranks; i++ {
		runs = append(runs, s.Start(h.User, harness.Opts{}, "exec", img, "/bin/sh", "-c", "cat /proc/self/cgroup; sleep 2"))
	}
	time.Sleep(1200 * time.Millisecond)
	loops := 0
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, e := range ents {
		if b, err := os.ReadFile(e); err == nil && strings.TrimSpace(string(b)) == img {
			loops++
		}
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for i, run := range runs {
		r := run.Wait()
		if r.Code != 0 {
			t.Errorf("rank %d: %s", i, r)
			continue
		}
		if r.Stdout != string(own) {
			t.Errorf("rank %d is in cgroups\n%s\nwant the caller's\n%s", i, r.Stdout, own)
		}
	}
	if loops != 1 {
		t.Errorf("%d ranks used %d loop devices for %s, want 1 (shared)", ranks, loops, img)
	}
}
