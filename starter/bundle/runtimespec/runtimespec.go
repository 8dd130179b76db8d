package runtimespec

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-tools/generate"
	"golang.org/x/sys/unix"
)

// Options says what goes into config.json beyond the defaults.
type Options struct {
	// ImageConfig is the image's raw OCI image config JSON
	// (application/vnd.oci.image.config.v1+json); nil when the image has none.
	ImageConfig []byte
	// RootfsPath is root.path; "" means "rootfs". A relative path must stay inside the
	// bundle.
	RootfsPath string
	// ReadOnly is root.readonly.
	ReadOnly bool
	// SeccompProfile is the path of a JSON file holding a specs.LinuxSeccomp, such as kerr's
	// $sysconfdir/kerr/seccomp.json; "" leaves the seccomp section out.
	SeccompProfile string
	// Hostname is the container's hostname; "" means "kerr".
	Hostname string
	// Runscript runs Singularity's run action (/.singularity.d/actions/run) instead of the
	// image config's ENTRYPOINT and CMD; it is what an image without an OCI config needs. An
	// ImageConfig given alongside still supplies the environment, working directory and user.
	Runscript bool
	// Accounts resolves USER names and supplementary groups, usually ReadAccounts of the
	// mounted rootfs. nil: USER must be numeric, and no supplementary groups are added.
	Accounts *Accounts
}

// DefaultHostname is the hostname when Options.Hostname is empty.
const DefaultHostname = "kerr"

// RunscriptPath is the process Options.Runscript runs.
const RunscriptPath = "/.singularity.d/actions/run"

// defaultPath is PATH when the image sets none (what Docker and runc use).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// nofileLimit is RLIMIT_NOFILE's soft and hard value, when the caller's hard limit allows.
const nofileLimit = 1024

// defaultCapabilities are Docker's defaults: enough for a root payload to install packages
// and drop to another user, and nothing that reaches outside the container's namespaces.
var defaultCapabilities = []string{
	"CAP_AUDIT_WRITE",
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_MKNOD",
	"CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW",
	"CAP_SETFCAP",
	"CAP_SETGID",
	"CAP_SETPCAP",
	"CAP_SETUID",
	"CAP_SYS_CHROOT",
}

var defaultNamespaces = []string{"pid", "network", "ipc", "uts", "mount", "cgroup"}

// maskedPaths hide what tells about or reaches the host's hardware and kernel internals.
// /sys/devices/virtual/powercap is there for the power side channel (CVE-2020-8694).
var maskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// readonlyPaths are host-wide knobs under /proc that a container may read but never set.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// Generate returns config.json's bytes (indented JSON), validated before it is returned.
// Errors name what was wrong: the image config, the USER, the seccomp profile file, or the
// check that failed.
//
// Privileges: none. It reads the seccomp profile file and calls getrlimit; everything from
// the image comes in through o and is treated as untrusted.
func Generate(o Options) ([]byte, error) {
	img, err := parseImageConfig(o.ImageConfig)
	if err != nil {
		return nil, err
	}

	g, err := generate.New("linux")
	if err != nil {
		return nil, fmt.Errorf("runtime config defaults: %w", err)
	}
	// generate.New's defaults are a template: each part kerr decides is replaced below.
	spec := g.Config
	spec.Version = specs.Version

	rootfs := o.RootfsPath
	if rootfs == "" {
		rootfs = "rootfs"
	}
	if !filepath.IsAbs(rootfs) && !filepath.IsLocal(rootfs) {
		return nil, fmt.Errorf("root path %q is outside the bundle", rootfs)
	}
	g.SetRootPath(rootfs)
	g.SetRootReadonly(o.ReadOnly)

	hostname := o.Hostname
	if hostname == "" {
		hostname = DefaultHostname
	}
	if len(hostname) > 64 {
		return nil, fmt.Errorf("hostname %q is longer than 64 bytes", hostname)
	}
	g.SetHostname(hostname)

	if err := setProcess(&g, img, o); err != nil {
		return nil, err
	}

	g.ClearMounts()
	for _, m := range defaultMounts() {
		g.AddMount(m)
	}

	g.ClearLinuxNamespaces()
	for _, ns := range defaultNamespaces {
		if err := g.AddOrReplaceLinuxNamespace(ns, ""); err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	spec.Linux.Resources = &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	spec.Linux.MaskedPaths = nil
	for _, p := range maskedPaths {
		g.AddLinuxMaskedPaths(p)
	}
	spec.Linux.ReadonlyPaths = nil
	for _, p := range readonlyPaths {
		g.AddLinuxReadonlyPaths(p)
	}

	spec.Linux.Seccomp = nil
	if o.SeccompProfile != "" {
		profile, err := readSeccompProfile(o.SeccompProfile)
		if err != nil {
			return nil, err
		}
		spec.Linux.Seccomp = profile
	}

	if err := validateSpec(spec); err != nil {
		return nil, fmt.Errorf("generated runtime config is invalid: %w", err)
	}
	var buf bytes.Buffer
	if err := g.Save(&buf, generate.ExportOptions{}); err != nil {
		return nil, fmt.Errorf("encode runtime config: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// setProcess fills process: what to run, its environment, cwd, user and limits.
func setProcess(g *generate.Generator, img *imageConfig, o Options) error {
	g.SetProcessTerminal(false)
	g.SetProcessNoNewPrivileges(true)

	var args []string
	switch {
	case o.Runscript:
		args = []string{RunscriptPath}
	case img != nil:
		args = append(append(args, img.Config.Entrypoint...), img.Config.Cmd...)
	}
	if len(args) == 0 {
		args = []string{"/bin/sh"}
	}
	g.SetProcessArgs(args)

	env := processEnv(img)
	for _, e := range env {
		// The validator accepts such a name but logs a warning on stderr; POSIX names do
		// not start with a digit and no shell can use one, so it is refused here.
		if name := strings.TrimSpace(e); name != "" && name[0] >= '0' && name[0] <= '9' {
			return fmt.Errorf("image config: env %q: the name starts with a digit", e)
		}
	}
	g.ClearProcessEnv()
	g.AddMultipleProcessEnv(env)

	cwd := "/"
	if img != nil && img.Config.WorkingDir != "" {
		cwd = img.Config.WorkingDir
		if !filepath.IsAbs(cwd) {
			return fmt.Errorf("image config: WORKDIR %q is not an absolute path", cwd)
		}
		cwd = filepath.Clean(cwd)
	}
	g.SetProcessCwd(cwd)

	userSpec := ""
	if img != nil {
		userSpec = img.Config.User
	}
	u, err := resolveUser(userSpec, o.Accounts)
	if err != nil {
		return fmt.Errorf("image config: USER %q: %w", userSpec, err)
	}
	g.SetProcessUID(u.UID)
	g.SetProcessGID(u.GID)
	g.ClearProcessAdditionalGids()
	for _, gid := range u.AdditionalGids {
		g.AddProcessAdditionalGid(gid)
	}

	g.ClearProcessCapabilities()
	for _, c := range defaultCapabilities {
		for _, add := range []func(string) error{
			g.AddProcessCapabilityBounding,
			g.AddProcessCapabilityEffective,
			g.AddProcessCapabilityPermitted,
		} {
			if err := add(c); err != nil {
				return fmt.Errorf("capability %s: %w", c, err)
			}
		}
	}

	nofile, err := nofileRlimit()
	if err != nil {
		return err
	}
	g.ClearProcessRlimits()
	g.AddProcessRlimits("RLIMIT_NOFILE", nofile, nofile)
	return nil
}

// processEnv is the image's environment with PATH defaulted; a later entry for a name
// replaces an earlier one, as in Docker.
func processEnv(img *imageConfig) []string {
	env := []string{defaultPath}
	if img != nil {
		env = append(env, img.Config.Env...)
	}
	return env
}

// nofileRlimit is min(1024, the caller's hard RLIMIT_NOFILE): the container cannot get a
// hard limit above the runtime's without CAP_SYS_RESOURCE.
func nofileRlimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	return min(nofileLimit, rl.Max), nil
}
