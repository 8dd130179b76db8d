//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Regression tests for the CVEs of runc, crun and Singularity that apply to kerr's OCI
// engine. The rootfs package has the in-process ones (CVE-2025-31133 masked paths through a
// symlinked /dev/null, CVE-2025-52565 /dev/console, CVE-2025-52881 sysctl writes); these
// drive the installed binaries.

// rootWithCaps makes the container's process root with caps, the most a config can give.
func rootWithCaps(caps ...string) func(*specs.Spec) {
	return func(sp *specs.Spec) {
		sp.Process.User = specs.User{UID: 0, GID: 0}
		sp.Process.Cwd = "/"
		sp.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	}
}

// cve20195736 plays the attack from inside a created container: pid 1 is then the starter
// waiting for start. It opens /proc/1/exe, waits until pid 1 has exec'd its payload and the
// host's kerr commands have ended (so that nothing keeps the binary busy), and writes
// through the fd it kept. The outcome goes to /result.
const cve20195736 = `exec 3</proc/1/exe || { echo "open: $?" > /result; exit 1; }
while [ "$(cat /proc/1/comm)" = starter ]; do sleep 0.05; done
sleep 1
if (echo pwned >> /proc/self/fd/3) 2>/tmp/err; then echo WROTE > /result; else cat /tmp/err > /result; fi`

// A process in the container reaches the starter while it runs there and writes the
// host's binary through /proc/1/exe once the binary is no longer busy. Even as root with
// CAP_SYS_PTRACE and CAP_DAC_OVERRIDE it must fail: container processes run the starter
// from a read-only clone. Without the monitor, which would keep the binary busy anyway.
func TestCVE_2019_5736_ProcSelfExeNotWritable(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sleep", "1000"}, rootWithCaps("CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_FOWNER"))
	starter := filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter")
	before := fileSHA256(t, starter)
	quiet := func(args ...string) {
		t.Helper()
		e.quiet(t, append([]string{"--no-monitor"}, args...)...).OK(t)
	}
	quiet("create", "-b", e.bundle, "c1")
	quiet("exec", "--detach", "c1", "/bin/sh", "-c", cve20195736)
	time.Sleep(300 * time.Millisecond)
	quiet("start", "c1")
	result := filepath.Join(e.bundle, "overlay", "upper", "result")
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(result); err == nil && len(b) > 0 {
			got = b
			break
		}
	}
	switch {
	case got == nil:
		t.Errorf("the attack left no %s", result)
	case !strings.Contains(string(got), "Read-only file system"):
		t.Errorf("writing the starter through /proc/1/exe: %q, want EROFS", got)
	}
	if after := fileSHA256(t, starter); after != before {
		t.Errorf("the host's starter changed")
	}
	e.oci("delete", "--force", "c1").OK(t)
	e.gone(t, "c1", 0)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// No fd of the runtime reaches the container's process or an exec'd one, and a cwd that
// would go through a leaked fd (/proc/self/fd/N) is refused at create.
func TestCVE_2024_21626_NoLeakedFDs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	e := newOCIEnv(t, s, []string{"/bin/sleep", "1000"}, rootWithCaps("CAP_KILL"))
	e.oci("create", "-b", e.bundle, "c1").OK(t)
	e.oci("start", "c1").OK(t)
	e.waitStatus(t, "c1", "running")
	// The payload (pid 1) and an exec'd process: fds 0, 1, 2 only.
	r := e.oci("exec", "c1", "/bin/sh", "-c", `ls /proc/1/fd; echo --; exec ls /proc/self/fd`).OK(t)
	parts := strings.SplitN(r.Stdout, "--\n", 2)
	if got := strings.Fields(parts[0]); strings.Join(got, " ") != "0 1 2" {
		t.Errorf("fds of the container's process: %v, want 0 1 2", got)
	}
	// ls itself holds one more: the directory it lists.
	if len(parts) < 2 || strings.Join(strings.Fields(parts[1]), " ") != "0 1 2 3" {
		t.Errorf("fds of an exec'd process: %q, want 0 1 2 and ls's own 3", r.Stdout)
	}
	e.oci("delete", "--force", "c1").OK(t)

	for _, n := range []string{"3", "4", "5", "6", "7", "8"} {
		e.editSpec(t, func(sp *specs.Spec) { sp.Process.Cwd = "/proc/self/fd/" + n })
		r := e.oci("create", "-b", e.bundle, "cwd"+n)
		if r.Code == 0 {
			t.Errorf("create with cwd /proc/self/fd/%s succeeded", n)
			e.oci("delete", "--force", "cwd"+n)
			continue
		}
		r.Fails(t, 1)
		e.gone(t, "cwd"+n, 0)
	}
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// A mount whose destination in the image is a symlink to a host path lands in the
// container's rootfs (where the link points, resolved inside it), never on the host.
func TestOCIMountTargetSymlinkStaysInRootfs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	hostDir := s.Mkdir(h.Root, "hostdir")
	marker := filepath.Join(hostDir, "marker")
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newOCIEnv(t, s, []string{"/bin/sh", "-c", "ls /evil; mount | grep ' /evil\\| " + hostDir + "' "}, func(sp *specs.Spec) {
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/evil", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}})
	})
	if err := os.Symlink(hostDir, filepath.Join(e.bundle, "rootfs", "evil")); err != nil {
		t.Fatal(err)
	}
	e.oci("create", "-b", e.bundle, "c1").OK(t)
	e.oci("start", "c1").OK(t)
	e.waitStatus(t, "c1", "stopped")
	if b, err := os.ReadFile(marker); err != nil || string(b) != "host" {
		t.Errorf("host dir changed: %q %v", b, err)
	}
	for _, m := range mountsAt(hostDir) {
		t.Errorf("mounted on the host's %s: %s", hostDir, m)
	}
	e.oci("delete", "c1").OK(t)
	s.Run(h.Root, "oci", "umount", e.bundle).OK(t)
}

// mountsAt lists the host's mounts at dir.
func mountsAt(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			out = append(out, line)
		}
	}
	return out
}
