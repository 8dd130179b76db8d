package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Filesystem magics the checks compare with.
const (
	mqueueMagic   = 0x19800202
	sysfsMagic    = 0x62656572
	cgroupV1Magic = 0x27e0eb
)

func init() {
	cases["standard"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			if _, err := os.Lstat("/proc/kcore"); err == nil {
				e.Vars["kcore"] = "true"
			}
		},
		config: func(e *env) Config {
			s := spec(e, procMount, devMount, devptsMount, shmMount, mqueueMount, sysMount, cgroupMount,
				specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
				specs.Mount{Destination: "/cg2", Type: "cgroup2", Source: "cgroup2", Options: []string{"nosuid", "noexec", "nodev"}},
			)
			mode := os.FileMode(0o640)
			uid, gid := uint32(1000), uint32(1001)
			s.Linux.Devices = []specs.LinuxDevice{
				{Path: "/dev/kerr-full", Type: "c", Major: 1, Minor: 7, FileMode: &mode, UID: &uid, GID: &gid},
				{Path: "/dev/sub/kerr-fifo", Type: "p"},
				{Path: "/dev/tty", Type: "c", Major: 1, Minor: 5}, // overrides the default
			}
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			if wd, err := os.Getwd(); err != nil || wd != "/" {
				r.errorf("cwd %q, %v; want /", wd, err)
			}
			checkContent(r, "/etc/marker", "image")
			checkMissing(r, e.Rootfs)
			checkMagic(r, "/proc", unix.PROC_SUPER_MAGIC)
			checkMagic(r, "/dev", unix.TMPFS_MAGIC)
			checkMagic(r, "/dev/pts", unix.DEVPTS_SUPER_MAGIC)
			checkMagic(r, "/dev/shm", unix.TMPFS_MAGIC)
			checkMagic(r, "/dev/mqueue", mqueueMagic)
			checkMagic(r, "/sys", sysfsMagic)
			checkReadonly(r, "/sys", true)
			checkMagic(r, "/sys/fs/cgroup", unix.TMPFS_MAGIC)
			checkReadonly(r, "/sys/fs/cgroup", true)
			checkMagic(r, "/cg2", unix.CGROUP2_SUPER_MAGIC)
			// The v1 hierarchies are the container's own cgroups: pid 1 is in them.
			for _, h := range []string{"memory", "cpu", "pids"} {
				p := "/sys/fs/cgroup/" + h
				checkMagic(r, p, cgroupV1Magic)
				checkReadonly(r, p, true)
				if b, err := os.ReadFile(p + "/cgroup.procs"); err != nil || !strings.Contains("\n"+string(b), "\n1\n") {
					r.errorf("%s/cgroup.procs = %q, %v; want pid 1 in it", p, b, err)
				}
			}
			st, _ := statOf(r, "/tmp", true)
			if st.Mode&0o7777 != 0o1777 {
				r.errorf("/tmp tmpfs has mode %#o, want the image's 1777", st.Mode&0o7777)
			}
			checkWrite(r, "/tmp/x", nil)
			checkWrite(r, "/dev/shm/x", nil)
			for _, d := range []struct {
				p            string
				major, minor uint32
			}{{"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7}, {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 1, 5}} {
				checkCharDev(r, d.p, d.major, d.minor, 0o666)
			}
			checkCharDev(r, "/dev/kerr-full", 1, 7, 0o640)
			if st, ok := statOf(r, "/dev/kerr-full", false); ok && (st.Uid != 1000 || st.Gid != 1001) {
				r.errorf("/dev/kerr-full owned by %d:%d, want 1000:1001", st.Uid, st.Gid)
			}
			if st, ok := statOf(r, "/dev/sub/kerr-fifo", false); ok && st.Mode&unix.S_IFMT != unix.S_IFIFO {
				r.errorf("/dev/sub/kerr-fifo has mode %#o, want a fifo", st.Mode)
			}
			if f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0); err != nil {
				r.errorf("open /dev/null: %v", err)
			} else {
				f.Close()
			}
			checkLink(r, "/dev/fd", "/proc/self/fd")
			checkLink(r, "/dev/stdin", "/proc/self/fd/0")
			checkLink(r, "/dev/stdout", "/proc/self/fd/1")
			checkLink(r, "/dev/stderr", "/proc/self/fd/2")
			checkLink(r, "/dev/ptmx", "pts/ptmx")
			if e.Vars["kcore"] == "true" {
				checkLink(r, "/dev/core", "/proc/kcore")
			}
			// A new devpts instance: /dev/ptmx gives a pty numbered in it.
			if out := sh(r, "cat /etc/marker; ls /proc/self/fd >/dev/null && echo ok"); out != "image"+"ok\n" {
				r.errorf("busybox in the container said %q", out)
			}
			// rslave by default: / receives from the host, sends nothing.
			if l := rootMountLine(r); !strings.Contains(l, " master:") || strings.Contains(l, " shared:") {
				r.errorf("/ is not a pure slave: %s", l)
			}
		},
	}
}

func TestSetupStandardMounts(t *testing.T) { run(t, "standard") }

func init() {
	cases["binds"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Dir, "host-ro/f"), "host")
			writeFile(t, filepath.Join(e.Dir, "host-rw/f"), "host")
			writeFile(t, filepath.Join(e.Dir, "host-rec/f"), "top")
			writeFile(t, filepath.Join(e.Dir, "hostfile"), "file")
			if err := os.Mkdir(filepath.Join(e.Dir, "host-rec/sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		before: func(e *env, r *report) {
			// A submount of a bind source, in the child's namespace only.
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
				r.errorf("make / rslave: %v", err)
			}
			sub := filepath.Join(e.Dir, "host-rec/sub")
			if err := unix.Mount("sub", sub, "tmpfs", 0, ""); err != nil {
				r.errorf("mount tmpfs on %s: %v", sub, err)
			}
			if err := os.WriteFile(sub+"/inner", []byte("inner"), 0o644); err != nil {
				r.errorf("%v", err)
			}
		},
		config: func(e *env) Config {
			s := spec(e, procMount,
				specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: filepath.Join(e.Dir, "host-ro"), Options: []string{"ro", "nosuid"}},
				specs.Mount{Destination: "/mnt/rel", Source: "host-ro", Options: []string{"bind"}},
				specs.Mount{Destination: "/mnt/rw", Source: filepath.Join(e.Dir, "host-rw"), Options: []string{"bind", "rw"}},
				specs.Mount{Destination: "/mnt/rec", Source: filepath.Join(e.Dir, "host-rec"), Options: []string{"rbind", "rro"}},
				specs.Mount{Destination: "/mnt/norec", Source: filepath.Join(e.Dir, "host-rec"), Options: []string{"bind"}},
				specs.Mount{Destination: "/new/dir/hostfile", Type: "bind", Source: filepath.Join(e.Dir, "hostfile"), Options: []string{"ro"}},
				specs.Mount{Destination: "/mnt/priv", Type: "bind", Source: filepath.Join(e.Dir, "host-rw"), Options: []string{"rprivate"}},
			)
			return Config{Spec: s, Bundle: e.Dir}
		},
		check: func(e *env, r *report) {
			checkContent(r, "/mnt/ro/f", "host")
			checkWrite(r, "/mnt/ro/new", unix.EROFS)
			checkReadonly(r, "/mnt/ro", true)
			var sfs unix.Statfs_t
			if err := unix.Statfs("/mnt/ro", &sfs); err != nil || sfs.Flags&unix.ST_NOSUID == 0 {
				r.errorf("/mnt/ro is not nosuid (%v)", err)
			}
			checkContent(r, "/mnt/rel/f", "host")
			// The source's nosuid and nodev stay on the binds, ro ones included.
			checkFlags(r, "/mnt/rel", unix.ST_NOSUID|unix.ST_NODEV)
			checkFlags(r, "/new/dir/hostfile", unix.ST_NOSUID|unix.ST_NODEV|unix.ST_RDONLY)
			checkWrite(r, "/mnt/rw/new", nil)
			checkContent(r, "/mnt/rec/sub/inner", "inner")
			checkWrite(r, "/mnt/rec/new", unix.EROFS)
			checkWrite(r, "/mnt/rec/sub/new", unix.EROFS)
			checkMissing(r, "/mnt/norec/sub/inner")
			checkContent(r, "/mnt/norec/f", "top")
			checkContent(r, "/new/dir/hostfile", "file")
			checkWrite(r, "/new/dir/hostfile", unix.EROFS)
			l := ""
			if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if f := strings.Fields(line); len(f) > 6 && f[4] == "/mnt/priv" {
						l = line
					}
				}
			}
			if f := strings.Fields(l); len(f) < 7 || f[6] != "-" {
				r.errorf("/mnt/priv is not private: %q", l)
			}
		},
		after: func(t *testing.T, e *env, r *report) {
			if b, err := os.ReadFile(filepath.Join(e.Dir, "host-rw/new")); err != nil || string(b) != "x" {
				t.Errorf("the write through the rw bind is not on the host: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(e.Dir, "host-ro/new")); err == nil {
				t.Errorf("the read-only bind let a write through")
			}
		},
	}
}

func TestBindMounts(t *testing.T) { run(t, "binds") }

func init() {
	// The image's symlinks point mount destinations at host paths; they must land inside the
	// rootfs.
	cases["symlink-target"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Dir, "hostetc/secret"), "host")
			writeFile(t, filepath.Join(e.Dir, "hostfile"), "hostfile")
			for link, target := range map[string]string{
				"mnt/abs":    filepath.Join(e.Dir, "hostetc"),
				"mnt/rel":    "../../../../../../../../../../etc",
				"mnt/file":   filepath.Join(e.Dir, "hostfile"),
				"mnt/dangle": "/nowhere/deep",
			} {
				if err := os.Symlink(target, filepath.Join(e.Rootfs, link)); err != nil {
					t.Fatal(err)
				}
			}
			e.Vars["src"] = filepath.Join(e.Dir, "src")
			writeFile(t, filepath.Join(e.Dir, "src"), "bound")
		},
		config: func(e *env) Config {
			s := spec(e, procMount,
				specs.Mount{Destination: "/mnt/abs", Type: "tmpfs", Source: "tmpfs"},
				specs.Mount{Destination: "/mnt/rel", Type: "tmpfs", Source: "tmpfs"},
				specs.Mount{Destination: "/mnt/file", Type: "bind", Source: e.Vars["src"]},
				specs.Mount{Destination: "/mnt/dangle", Type: "tmpfs", Source: "tmpfs"},
			)
			hostDir := filepath.Join(e.Dir, "hostetc")
			return Config{Spec: s, BeforePivot: func() error {
				// Still in the old root: nothing may be mounted at the host's paths.
				ms, err := readMounts()
				if err != nil {
					return err
				}
				for _, m := range ms {
					if m.Mountpoint == "/etc" || m.Mountpoint == hostDir || m.Mountpoint == filepath.Join(e.Dir, "hostfile") {
						return errors.New("mounted on the host's " + m.Mountpoint)
					}
				}
				return nil
			}}
		},
		check: func(e *env, r *report) {
			// Each symlink was followed inside the rootfs.
			checkMagic(r, filepath.Join(e.Dir, "hostetc"), unix.TMPFS_MAGIC)
			checkMagic(r, "/etc", unix.TMPFS_MAGIC)
			checkMagic(r, "/nowhere/deep", unix.TMPFS_MAGIC)
			checkContent(r, filepath.Join(e.Dir, "hostfile"), "bound")
			checkMissing(r, "/etc/marker")
		},
		after: func(t *testing.T, e *env, r *report) {
			b, err := os.ReadFile(filepath.Join(e.Dir, "hostetc/secret"))
			if err != nil || string(b) != "host" {
				t.Errorf("host's hostetc/secret: %q, %v", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(e.Dir, "hostfile")); err != nil || string(b) != "hostfile" {
				t.Errorf("host's hostfile: %q, %v", b, err)
			}
		},
	}
	cases["symlink-into-proc"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			if err := os.Symlink("/proc/sys/kernel", filepath.Join(e.Rootfs, "mnt/viaproc")); err != nil {
				t.Fatal(err)
			}
		},
		config: func(e *env) Config {
			return Config{Spec: spec(e, procMount,
				specs.Mount{Destination: "/mnt/viaproc", Type: "tmpfs", Source: "tmpfs"})}
		},
		wantErr: "mounts[1] (/mnt/viaproc): destination resolves to /proc/sys/kernel",
	}
}

func TestMountTargetSymlinkStaysInRootfs(t *testing.T) { run(t, "symlink-target") }

func init() {
	// Device paths through, or at, symlinks of the image that point at host paths: the
	// nodes are made inside the rootfs and the host paths are left alone.
	cases["symlink-device"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			if err := os.Mkdir(filepath.Join(e.Dir, "hostdev"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(e.Dir, "hostfile"), "host")
			if err := os.Symlink(filepath.Join(e.Dir, "hostdev"), filepath.Join(e.Rootfs, "mnt/devlink")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(e.Dir, "hostfile"), filepath.Join(e.Rootfs, "dev/kerr-x")); err != nil {
				t.Fatal(err)
			}
		},
		config: func(e *env) Config {
			s := spec(e, procMount)
			s.Linux.Devices = []specs.LinuxDevice{
				{Path: "/mnt/devlink/kerr-null", Type: "c", Major: 1, Minor: 3},
				{Path: "/dev/kerr-x", Type: "c", Major: 1, Minor: 5},
			}
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			checkCharDev(r, filepath.Join(e.Dir, "hostdev/kerr-null"), 1, 3, 0o666)
			checkCharDev(r, "/dev/kerr-x", 1, 5, 0o666)
		},
		after: func(t *testing.T, e *env, r *report) {
			if ents, err := os.ReadDir(filepath.Join(e.Dir, "hostdev")); err != nil || len(ents) != 0 {
				t.Errorf("the host's hostdev: %d entries, %v", len(ents), err)
			}
			if st, err := os.Lstat(filepath.Join(e.Dir, "hostfile")); err != nil || !st.Mode().IsRegular() {
				t.Errorf("the host's hostfile: %v, %v", st, err)
			}
		},
	}
}

func TestDeviceSymlinkStaysInRootfs(t *testing.T) { run(t, "symlink-device") }

func TestMountTargetSymlinkIntoProcRefused(t *testing.T) { run(t, "symlink-into-proc") }

func init() {
	cases["masked-readonly"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Rootfs, "secret-file"), "secret")
			writeFile(t, filepath.Join(e.Rootfs, "secret-dir/f"), "secret")
			if err := os.Symlink("/secret-file", filepath.Join(e.Rootfs, "link-to-secret")); err != nil {
				t.Fatal(err)
			}
		},
		config: func(e *env) Config {
			s := spec(e, procMount, devMount)
			s.Linux.ReadonlyPaths = []string{"/ro-dir", "/proc/sys", "/nothing/here"}
			s.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/acpi", "/secret-file", "/secret-dir", "/missing", "/proc/nonexistent"}
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			checkContent(r, "/secret-file", "")
			checkCharDev(r, "/secret-file", 1, 3, 0)
			checkContent(r, "/link-to-secret", "")
			if ents, err := os.ReadDir("/secret-dir"); err != nil || len(ents) != 0 {
				r.errorf("/secret-dir: %v entries, %v; want empty", len(ents), err)
			}
			checkWrite(r, "/secret-dir/x", unix.EROFS)
			checkMagic(r, "/secret-dir", unix.TMPFS_MAGIC)
			if _, err := os.Lstat("/proc/kcore"); err == nil {
				checkCharDev(r, "/proc/kcore", 1, 3, 0)
			}
			checkContent(r, "/ro-dir/file", "ro")
			checkWrite(r, "/ro-dir/x", unix.EROFS)
			checkWrite(r, "/ro-dir/file", unix.EROFS)
			checkReadonly(r, "/proc/sys", true)
			if f, err := os.OpenFile("/proc/sys/kernel/hostname", os.O_WRONLY, 0); !errors.Is(err, unix.EROFS) {
				r.errorf("open /proc/sys/kernel/hostname for writing: %v, want EROFS", err)
				if err == nil {
					f.Close()
				}
			}
			checkReadonly(r, "/proc", false)
			checkWrite(r, "/etc/x", nil) // the rest stays writable
		},
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) { run(t, "masked-readonly") }

func init() {
	// The image has no /dev mount and /dev/null is a symlink (to a file standing for a
	// sensitive one) or a plain file: masking must still hide the path with the null
	// device and never bind the symlink's target or the file.
	for name, plant := range map[string]func(t *testing.T, e *env){
		"cve-31133-symlink": func(t *testing.T, e *env) {
			if err := os.Symlink("/etc/target", filepath.Join(e.Rootfs, "dev/null")); err != nil {
				t.Fatal(err)
			}
		},
		"cve-31133-file": func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Rootfs, "dev/null"), "planted")
		},
	} {
		cases[name] = &tcase{
			prepare: func(t *testing.T, e *env) {
				writeFile(t, filepath.Join(e.Rootfs, "etc/target"), "TARGET")
				writeFile(t, filepath.Join(e.Rootfs, "secret"), "secret")
				plant(t, e)
			},
			config: func(e *env) Config {
				s := spec(e, procMount)
				s.Linux.MaskedPaths = []string{"/secret"}
				return Config{Spec: s}
			},
			check: func(e *env, r *report) {
				checkContent(r, "/secret", "")
				checkCharDev(r, "/secret", 1, 3, 0)
				if err := os.WriteFile("/secret", []byte("overwritten"), 0); err != nil {
					r.errorf("write the masked /secret: %v", err)
				}
				checkContent(r, "/etc/target", "TARGET")
				st, _ := statOf(r, "/dev/null", false)
				if st.Mode&unix.S_IFMT == unix.S_IFCHR {
					r.errorf("the image's /dev/null was replaced; the test would prove nothing")
				}
			},
			after: func(t *testing.T, e *env, r *report) {
				if b, err := os.ReadFile(filepath.Join(e.Rootfs, "etc/target")); err != nil || string(b) != "TARGET" {
					t.Errorf("etc/target: %q, %v", b, err)
				}
			},
		}
	}
}

func TestCVE_2025_31133_MaskedPathsWithSymlinkedDevNull(t *testing.T) {
	t.Run("symlink", func(t *testing.T) { run(t, "cve-31133-symlink") })
	t.Run("file", func(t *testing.T) { run(t, "cve-31133-file") })
}

func init() {
	cases["root-readonly"] = &tcase{
		config: func(e *env) Config {
			s := spec(e, procMount, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"})
			s.Root.Readonly = true
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			checkWrite(r, "/newfile", unix.EROFS)
			checkWrite(r, "/etc/x", unix.EROFS)
			checkWrite(r, "/tmp/x", nil)
			checkReadonly(r, "/", true)
		},
	}
}

func TestRootReadonly(t *testing.T) { run(t, "root-readonly") }

func init() {
	cases["propagation-private"] = &tcase{
		config: func(e *env) Config {
			s := spec(e, procMount)
			s.Linux.RootfsPropagation = "private"
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			l := rootMountLine(r)
			if f := strings.Fields(l); len(f) < 7 || f[6] != "-" {
				r.errorf("/ is not private: %s", l)
			}
		},
	}
	cases["propagation-rshared"] = &tcase{
		config: func(e *env) Config {
			s := spec(e, procMount)
			s.Linux.RootfsPropagation = "rshared"
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			if l := rootMountLine(r); !strings.Contains(l, " shared:") {
				r.errorf("/ is not shared: %s", l)
			}
			// Shared, but in a peer group of its own: this mount must not reach the host.
			if err := unix.Mount("late", "/mnt", "tmpfs", 0, ""); err != nil {
				r.errorf("mount /mnt: %v", err)
			}
		},
	}
}

func TestRootfsPropagationPrivate(t *testing.T) { run(t, "propagation-private") }

func init() {
	cases["propagation-runbindable"] = &tcase{
		config: func(e *env) Config {
			s := spec(e, procMount)
			s.Linux.RootfsPropagation = "runbindable"
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			if l := rootMountLine(r); !strings.Contains(l, " unbindable ") {
				r.errorf("/ is not unbindable: %s", l)
			}
		},
	}
}

func TestRootfsPropagationRunbindable(t *testing.T) { run(t, "propagation-runbindable") }

func TestRootfsPropagationRshared(t *testing.T) { run(t, "propagation-rshared") }

func init() {
	cases["nopivot"] = &tcase{
		config: func(e *env) Config {
			// A read-only /dev is filled first, then made read-only.
			dev := devMount
			dev.Options = append([]string{"ro"}, dev.Options...)
			s := spec(e, procMount, dev)
			s.Linux.MaskedPaths = []string{"/proc/kcore"}
			return Config{Spec: s, NoPivot: true}
		},
		check: func(e *env, r *report) {
			if wd, err := os.Getwd(); err != nil || wd != "/" {
				r.errorf("cwd %q, %v; want /", wd, err)
			}
			checkContent(r, "/etc/marker", "image")
			checkMissing(r, e.Rootfs)
			checkCharDev(r, "/dev/null", 1, 3, 0o666)
			checkLink(r, "/dev/fd", "/proc/self/fd")
			checkReadonly(r, "/dev", true)
			checkWrite(r, "/dev/x", unix.EROFS)
			checkMagic(r, "/proc", unix.PROC_SUPER_MAGIC)
			if out := sh(r, "echo hi"); out != "hi\n" {
				r.errorf("sh said %q", out)
			}
		},
	}
}

func TestNoPivot(t *testing.T) { run(t, "nopivot") }

// openPty opens a pty master in the parent and returns the path of its slave.
func openPty(t *testing.T) string {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	return "/dev/pts/" + strconv.Itoa(n)
}

func init() {
	cases["console"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			e.Vars["pty"] = openPty(t)
			var st unix.Stat_t
			if err := unix.Stat(e.Vars["pty"], &st); err != nil {
				t.Fatal(err)
			}
			e.Vars["rdev"] = strconv.FormatUint(st.Rdev, 10)
		},
		config: func(e *env) Config {
			return Config{Spec: spec(e, procMount, devMount, devptsMount), ConsolePath: e.Vars["pty"]}
		},
		check: func(e *env, r *report) {
			st, ok := statOf(r, "/dev/console", false)
			if ok && (st.Mode&unix.S_IFMT != unix.S_IFCHR || strconv.FormatUint(st.Rdev, 10) != e.Vars["rdev"]) {
				r.errorf("/dev/console: mode %#o rdev %d, want the pty (rdev %s)", st.Mode, st.Rdev, e.Vars["rdev"])
			}
		},
	}
	// The image has /dev/console as a symlink to a host path (no tmpfs on /dev hides
	// it): Setup must refuse, and the host file must stay as it was.
	cases["cve-52565"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			e.Vars["pty"] = openPty(t)
			target := filepath.Join(e.Dir, "host-target")
			writeFile(t, target, "host")
			writeFile(t, filepath.Join(e.Rootfs, strings.TrimPrefix(target, "/")), "in-root")
			if err := os.Symlink(target, filepath.Join(e.Rootfs, "dev/console")); err != nil {
				t.Fatal(err)
			}
		},
		config: func(e *env) Config {
			return Config{Spec: spec(e, procMount), ConsolePath: e.Vars["pty"]}
		},
		wantErr: "refusing /dev/console: the rootfs has a symlink there",
		after: func(t *testing.T, e *env, r *report) {
			if b, err := os.ReadFile(filepath.Join(e.Dir, "host-target")); err != nil || string(b) != "host" {
				t.Errorf("host target: %q, %v", b, err)
			}
		},
	}
	cases["console-not-pty"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Dir, "fake-pty"), "")
		},
		config: func(e *env) Config {
			return Config{Spec: spec(e, procMount, devMount), ConsolePath: filepath.Join(e.Dir, "fake-pty")}
		},
		wantErr: "is not a pty",
	}
}

func TestConsole(t *testing.T) { run(t, "console") }

func TestCVE_2025_52565_ConsoleNotRedirected(t *testing.T) {
	run(t, "cve-52565")
	run(t, "console-not-pty")
}

func init() {
	cases["sysctl"] = &tcase{
		config: func(e *env) Config {
			s := spec(e, procMount)
			s.Linux.ReadonlyPaths = []string{"/proc/sys"}
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			if err := WriteSysctls(map[string]string{"kernel.shmmax": "123456789", "kernel.shmmni": "4000"}); err != nil {
				r.errorf("WriteSysctls: %v", err)
			}
			checkContent(r, "/proc/sys/kernel/shmmax", "123456789\n")
			checkContent(r, "/proc/sys/kernel/shmmni", "4000\n")
			for _, bad := range []string{"../../x", "kernel/shmmax", "kernel..shmmax", "kernel.nonexistent"} {
				if err := WriteSysctls(map[string]string{bad: "1"}); err == nil {
					r.errorf("WriteSysctls(%q) succeeded", bad)
				}
			}
			// A mount over part of /proc/sys does not redirect the write (CVE-2025-52881).
			if err := unix.Mount("fake", "/proc/sys/kernel", "tmpfs", 0, ""); err != nil {
				r.errorf("mount over /proc/sys/kernel: %v", err)
				return
			}
			if err := os.WriteFile("/proc/sys/kernel/shmmni", nil, 0o644); err != nil {
				r.errorf("create the decoy: %v", err)
			}
			if err := WriteSysctls(map[string]string{"kernel.shmmni": "4001"}); err != nil {
				r.errorf("WriteSysctls under an overmount: %v", err)
			}
			checkContent(r, "/proc/sys/kernel/shmmni", "")
			if err := unix.Unmount("/proc/sys/kernel", 0); err != nil {
				r.errorf("unmount: %v", err)
			}
			checkContent(r, "/proc/sys/kernel/shmmni", "4001\n")
			// A /proc that is not procfs is refused.
			if err := unix.Mount("fake", "/proc", "tmpfs", 0, ""); err != nil {
				r.errorf("mount over /proc: %v", err)
				return
			}
			if err := WriteSysctls(map[string]string{"kernel.shmmni": "4002"}); err == nil || !strings.Contains(err.Error(), "not on procfs") {
				r.errorf("WriteSysctls with a tmpfs on /proc: %v", err)
			}
		},
		after: func(t *testing.T, e *env, r *report) {
			b, err := os.ReadFile("/proc/sys/kernel/shmmax")
			if err != nil || strings.TrimSpace(string(b)) == "123456789" {
				t.Errorf("the host's kernel.shmmax is %q (%v): the write left the IPC namespace", b, err)
			}
		},
	}
}

func TestWriteSysctls(t *testing.T) { run(t, "sysctl") }

func TestWriteSysctlsRefusesBadNames(t *testing.T) {
	if err := WriteSysctls(map[string]string{"../../x": "1"}); err == nil || !strings.Contains(err.Error(), "not a sysctl name") {
		t.Errorf("err = %v", err)
	}
}

func init() {
	// A user namespace (root mapped to root): devices are binds of the host's nodes, and
	// the host's flags locked on bind sources stay.
	cases["userns"] = &tcase{
		userns: true,
		flags:  unix.CLONE_NEWNET,
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Dir, "host-ro/f"), "host")
			writeFile(t, filepath.Join(e.Rootfs, "secret-file"), "secret")
		},
		config: func(e *env) Config {
			s := spec(e, procMount, devMount, devptsMount, mqueueMount, sysMount,
				specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: filepath.Join(e.Dir, "host-ro"), Options: []string{"ro"}})
			// Bound from the host's node of the same path, which must be that device.
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/full", Type: "c", Major: 1, Minor: 7}, {Path: "/dev/kerr-fifo", Type: "p"}}
			s.Linux.MaskedPaths = []string{"/secret-file", "/proc/kcore"}
			s.Linux.ReadonlyPaths = []string{"/ro-dir", "/proc/sys"}
			s.Root.Readonly = true
			return Config{Spec: s, InUserNS: true}
		},
		check: func(e *env, r *report) {
			checkCharDev(r, "/dev/null", 1, 3, 0)
			checkCharDev(r, "/dev/full", 1, 7, 0)
			if st, ok := statOf(r, "/dev/kerr-fifo", false); ok && st.Mode&unix.S_IFMT != unix.S_IFIFO {
				r.errorf("/dev/kerr-fifo is not a fifo")
			}
			if f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0); err != nil {
				r.errorf("open /dev/null: %v", err)
			} else {
				f.Close()
			}
			checkMagic(r, "/sys", sysfsMagic)
			checkMagic(r, "/dev/mqueue", mqueueMagic)
			checkContent(r, "/mnt/ro/f", "host")
			checkWrite(r, "/mnt/ro/x", unix.EROFS)
			// nosuid and nodev of the source are locked in the user namespace; ro keeps them.
			checkFlags(r, "/mnt/ro", unix.ST_NOSUID|unix.ST_NODEV|unix.ST_RDONLY)
			checkContent(r, "/secret-file", "")
			checkWrite(r, "/ro-dir/x", unix.EROFS)
			checkWrite(r, "/x", unix.EROFS)
			checkLink(r, "/dev/ptmx", "pts/ptmx")
		},
	}
}

func TestUserNamespace(t *testing.T) { run(t, "userns") }

func init() {
	cases["cgroupns"] = &tcase{
		flags: unix.CLONE_NEWCGROUP,
		config: func(e *env) Config {
			s := spec(e, procMount, sysMount, cgroupMount)
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.CgroupNamespace}}
			return Config{Spec: s}
		},
		check: func(e *env, r *report) {
			checkMagic(r, "/sys/fs/cgroup", unix.TMPFS_MAGIC)
			b, err := os.ReadFile("/proc/self/mountinfo")
			if err != nil {
				r.errorf("%v", err)
				return
			}
			for _, h := range []string{"memory", "pids"} {
				p := "/sys/fs/cgroup/" + h
				checkMagic(r, p, cgroupV1Magic)
				if b, err := os.ReadFile(p + "/cgroup.procs"); err != nil || !strings.Contains("\n"+string(b), "\n1\n") {
					r.errorf("%s/cgroup.procs = %q, %v; want pid 1 in it", p, b, err)
				}
				// A new mount of the hierarchy, rooted at the namespace's root.
				found := false
				for _, l := range strings.Split(string(b), "\n") {
					if f := strings.Fields(l); len(f) > 5 && f[4] == p && f[3] == "/" {
						found = true
					}
				}
				if !found {
					r.errorf("no mount of the namespace's root at %s:\n%s", p, b)
				}
			}
		},
	}
}

func TestCgroupNamespace(t *testing.T) { run(t, "cgroupns") }

func init() {
	cases["overlay-remount"] = &tcase{
		prepare: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.Dir, "lower/lowerfile"), "lower")
			for _, d := range []string{"upper", "work"} {
				if err := os.Mkdir(filepath.Join(e.Dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		},
		config: func(e *env) Config {
			return Config{Spec: spec(e, procMount,
				specs.Mount{Destination: "/ov", Type: "overlay", Source: "overlay", Options: []string{
					"lowerdir=" + filepath.Join(e.Dir, "lower"), "upperdir=" + filepath.Join(e.Dir, "upper"),
					"workdir=" + filepath.Join(e.Dir, "work")}},
				specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=4m"}},
				specs.Mount{Destination: "/data", Type: "tmpfs", Options: []string{"remount", "ro", "nosuid", "size=1m"}},
				specs.Mount{Destination: "/mnt/b", Type: "bind", Source: filepath.Join(e.Dir, "lower")},
				specs.Mount{Destination: "/mnt/b", Type: "bind", Options: []string{"remount", "ro"}},
			)}
		},
		check: func(e *env, r *report) {
			checkContent(r, "/ov/lowerfile", "lower")
			checkWrite(r, "/ov/new", nil)
			checkReadonly(r, "/data", true)
			var sfs unix.Statfs_t
			if err := unix.Statfs("/data", &sfs); err != nil || sfs.Blocks*uint64(sfs.Bsize) != 1<<20 || sfs.Flags&unix.ST_NOSUID == 0 {
				r.errorf("/data: %d blocks of %d, flags %#x, %v; want 1 MiB, nosuid", sfs.Blocks, sfs.Bsize, sfs.Flags, err)
			}
			checkWrite(r, "/mnt/b/x", unix.EROFS)
		},
		after: func(t *testing.T, e *env, r *report) {
			if b, err := os.ReadFile(filepath.Join(e.Dir, "upper/new")); err != nil || string(b) != "x" {
				t.Errorf("the overlay's upper dir on the host: %q, %v", b, err)
			}
		},
	}
}

func TestOverlayAndRemount(t *testing.T) { run(t, "overlay-remount") }

func init() {
	errCase := func(wantErr string, prepare func(t *testing.T, e *env), mounts func(e *env) []specs.Mount) *tcase {
		return &tcase{
			prepare: prepare,
			config:  func(e *env) Config { return Config{Spec: spec(e, mounts(e)...)} },
			wantErr: wantErr,
		}
	}
	cases["err-relative-source"] = errCase("mounts[0] (/mnt/x): relative source \"data\" and no bundle directory", nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/mnt/x", Source: "data", Options: []string{"rbind"}}}
		})
	cases["err-fstype"] = errCase("mounts[0] (/mnt/x): mount nosuchfs on /mnt/x: fsopen nosuchfs: unknown filesystem type", nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/mnt/x", Type: "nosuchfs"}}
		})
	cases["err-data"] = errCase(`mounts[0] (/mnt/x): mount tmpfs on /mnt/x: option "nosuchoption=1"`, nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/mnt/x", Type: "tmpfs", Options: []string{"nosuchoption=1"}}}
		})
	cases["err-file-on-dir"] = errCase("mount point /etc is a directory but the source is not",
		func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.Dir, "f"), "") },
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/etc", Type: "bind", Source: filepath.Join(e.Dir, "f")}}
		})
	cases["err-remount-not-mount"] = errCase("remount /etc: mount_setattr +ro: invalid argument (is it a mount point?)", nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/etc", Type: "bind", Options: []string{"remount", "ro"}}}
		})
	cases["err-missing-source"] = errCase("open bind source /nonexistent", nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/mnt/x", Type: "bind", Source: "/nonexistent"}}
		})
	cases["err-proc-bind-not-proc"] = errCase("bind source /etc of /proc is not a procfs", nil,
		func(e *env) []specs.Mount {
			return []specs.Mount{{Destination: "/proc", Type: "bind", Source: "/etc"}}
		})
}

func TestSetupErrors(t *testing.T) {
	for _, name := range []string{"err-relative-source", "err-fstype", "err-data", "err-file-on-dir",
		"err-remount-not-mount", "err-missing-source", "err-proc-bind-not-proc"} {
		t.Run(name, func(t *testing.T) { run(t, name) })
	}
}
