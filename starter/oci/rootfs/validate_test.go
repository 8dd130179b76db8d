package rootfs

import (
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func goodSpec() *specs.Spec {
	mode := os.FileMode(0o20666)
	return &specs.Spec{
		Root: &specs.Root{Path: "/bundle/rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/data", Source: "data", Options: []string{"rbind", "ro"}},
			{Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts"},
			{Destination: "/proc/cpuinfo", Type: "bind", Source: "/var/lib/lxcfs/proc/cpuinfo"},
			{Destination: "/ov", Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b", "upperdir=/u", "workdir=/w"}},
		},
		Linux: &specs.Linux{
			RootfsPropagation: "rprivate",
			Devices:           []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode}},
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			Sysctl:            map[string]string{"kernel.shmmax": "1", "net.ipv4.ip_forward": "1"},
		},
	}
}

func TestValidateAcceptsAUsualSpec(t *testing.T) {
	plans, err := validate(goodSpec())
	if err != nil {
		t.Fatal(err)
	}
	kinds := []mountKind{kindFS, kindFS, kindFS, kindFS, kindCgroup, kindBind, kindBind, kindBind, kindFS}
	for i, p := range plans {
		if p.kind != kinds[i] {
			t.Errorf("mounts[%d] kind %d, want %d", i, p.kind, kinds[i])
		}
	}
	if !plans[5].opts.recursive {
		t.Errorf("rbind is not recursive")
	}
}

func TestValidateRefuses(t *testing.T) {
	fm := func(m os.FileMode) *os.FileMode { return &m }
	for _, tc := range []struct {
		name   string
		change func(*specs.Spec)
		err    string
	}{
		{"nil root", func(s *specs.Spec) { s.Root = nil }, "root.path: missing"},
		{"empty root", func(s *specs.Spec) { s.Root.Path = "" }, "root.path: missing"},
		{"relative destination", func(s *specs.Spec) { s.Mounts[0].Destination = "proc" },
			`mounts[0] (proc): destination "proc" is not absolute`},
		{"empty destination", func(s *specs.Spec) { s.Mounts[1].Destination = "" }, "mounts[1] (): destination is empty"},
		{"over root", func(s *specs.Spec) { s.Mounts[1].Destination = "/tmp/.." }, "cannot mount over the container's root"},
		{"bind option changing the filesystem", func(s *specs.Spec) { s.Mounts[6].Options = []string{"sync"} },
			`mounts[6] (/etc/hosts): option "sync" changes the filesystem`},
		{"bind without source", func(s *specs.Spec) { s.Mounts[6].Source = "" }, "bind mount without a source"},
		{"no type", func(s *specs.Spec) { s.Mounts[1].Type = "" }, "type is empty"},
		{"bad type", func(s *specs.Spec) { s.Mounts[1].Type = "tmp/fs" }, "not a filesystem type name"},
		{"tmpcopyup", func(s *specs.Spec) { s.Mounts[1].Options = append(s.Mounts[1].Options, "tmpcopyup") }, "tmpcopyup"},
		{"idmapped", func(s *specs.Spec) { s.Mounts[5].UIDMappings = []specs.LinuxIDMapping{{Size: 1}} }, "id-mapped"},
		{"tmpfs on /proc", func(s *specs.Spec) { s.Mounts[1].Destination = "/proc" }, `only a proc mount may go on /proc, not "tmpfs"`},
		{"inside /proc", func(s *specs.Spec) { s.Mounts[1].Destination = "/proc/sys" }, "is inside /proc"},
		{"bind inside /proc", func(s *specs.Spec) { s.Mounts[6].Destination = "/proc/sys/kernel/core_pattern" }, "is inside /proc"},
		{"inside /proc by dots", func(s *specs.Spec) { s.Mounts[6].Destination = "/x/../proc/self" }, "is inside /proc"},
		{"remount cgroup", func(s *specs.Spec) { s.Mounts[4].Options = []string{"remount"} }, "remount of a cgroup mount"},
		{"bad propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rsharedd" }, `linux.rootfsPropagation: unknown value "rsharedd"`},
		{"mount label", func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:x" }, "linux.mountLabel"},
		{"device type", func(s *specs.Spec) { s.Linux.Devices[0].Type = "x"; s.Linux.Devices[0].FileMode = nil },
			`linux.devices[0] (/dev/fuse): type "x" is not one of c, b, u, p`},
		{"device path", func(s *specs.Spec) { s.Linux.Devices[0].Path = "dev/fuse" }, "is not absolute"},
		{"device root", func(s *specs.Spec) { s.Linux.Devices[0].Path = "/dev/" }, "cannot be a device"},
		{"device major", func(s *specs.Spec) { s.Linux.Devices[0].Major = -1 }, "major -1 out of range"},
		{"device minor", func(s *specs.Spec) { s.Linux.Devices[0].Minor = 1 << 20 }, "out of range"},
		{"device mode type", func(s *specs.Spec) { s.Linux.Devices[0].FileMode = fm(0o60666) }, "do not match type"},
		{"device mode bits", func(s *specs.Spec) { s.Linux.Devices[0].FileMode = fm(os.ModeSetuid | 0o666) }, "fileMode"},
		{"device dup", func(s *specs.Spec) {
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev//fuse", Type: "c", Major: 1, Minor: 3})
		}, "same path as linux.devices[0]"},
		{"masked relative", func(s *specs.Spec) { s.Linux.MaskedPaths = []string{"proc/kcore"} }, "linux.maskedPaths[0] (proc/kcore): not an absolute path"},
		{"readonly relative", func(s *specs.Spec) { s.Linux.ReadonlyPaths = []string{"/a", ""} }, "linux.readonlyPaths[1] (): not an absolute path"},
		{"sysctl dotdot", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel..shmmax": "1"} }, "linux.sysctl (kernel..shmmax)"},
		{"sysctl slash", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"../../x": "1"} }, "linux.sysctl (../../x)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSpec()
			tc.change(s)
			err := Validate(s)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestValidateNilSpec(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Fatal("nil spec accepted")
	}
}

func TestDevicePerm(t *testing.T) {
	fm := func(m os.FileMode) *os.FileMode { return &m }
	for _, tc := range []struct {
		d    specs.LinuxDevice
		want uint32
	}{
		{specs.LinuxDevice{Type: "c"}, 0o666},
		{specs.LinuxDevice{Type: "c", FileMode: fm(0o640)}, 0o640},
		{specs.LinuxDevice{Type: "c", FileMode: fm(0o20600)}, 0o600},
		{specs.LinuxDevice{Type: "b", FileMode: fm(0o60660)}, 0o660},
		{specs.LinuxDevice{Type: "p", FileMode: fm(0o10644)}, 0o644},
	} {
		got, err := devicePerm(tc.d)
		if err != nil || got != tc.want {
			t.Errorf("devicePerm(%+v) = %#o, %v; want %#o", tc.d, got, err, tc.want)
		}
	}
}

func TestCheckSysctlName(t *testing.T) {
	for _, ok := range []string{"kernel.shmmax", "net.ipv4.conf.eth0.forwarding", "fs.mqueue.msg_max", "net.ipv4.conf.veth-a_1.rp_filter"} {
		if err := checkSysctlName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../../x", "kernel..x", ".kernel", "kernel.", "kernel/shmmax", "kernel.shm max", "a\x00b", "net.\n"} {
		if err := checkSysctlName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
