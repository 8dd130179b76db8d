package oci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/starter/oci/cgroups"
	"github.com/kerr-hpc/kerr/starter/oci/rootfs"
	"github.com/kerr-hpc/kerr/starter/oci/seccomp"
)

// maxConfig bounds config.json: the spec travels to the container's process in an envelope
// of at most 1 MiB.
const maxConfig = 512 << 10

// loadSpec reads BUNDLE/config.json strictly (an unknown field is an error, not a silent
// skip) and validates it. Root.Path comes back absolute. Privileges: root (reads the
// bundle).
func loadSpec(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, "config.json")
	f, err := os.Open(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("bundle %s has no config.json: %w", bundle, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", p, maxConfig, errdefs.ErrUsage)
	}
	return parseSpec(b, bundle)
}

// parseSpec decodes and validates a config. Errors wrap errdefs.ErrUsage and name the field.
func parseSpec(b []byte, bundle string) (*specs.Spec, error) {
	var s specs.Spec
	if err := decodeStrict(b, &s); err != nil {
		// The spec: runtimes MUST ignore properties they do not know (a newer spec's, or
		// an extension's). They are not silently skipped: the user is told.
		var lenient specs.Spec
		if !strings.Contains(err.Error(), "unknown field") || decodeLenient(b, &lenient) != nil {
			return nil, fmt.Errorf("config.json: %v: %w", err, errdefs.ErrUsage)
		}
		fmt.Fprintf(os.Stderr, "kerr: warning: config.json: %v: ignored\n", err)
		s = lenient
	}
	if err := validateSpec(&s, bundle); err != nil {
		return nil, fmt.Errorf("config.json: %v: %w", err, errdefs.ErrUsage)
	}
	return &s, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	return nil
}

func decodeLenient(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	return nil
}

// nsTypes maps the spec's namespace types to clone flags.
var nsTypes = map[specs.LinuxNamespaceType]uint32{
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// rlimitNames maps RLIMIT_* names to resource numbers.
var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// capNames maps CAP_* names to capabilities this kernel knows.
func capByName(name string) (capability.Cap, bool) {
	last, err := capability.LastCap()
	if err != nil {
		return 0, false
	}
	for _, c := range capability.ListKnown() {
		if c <= last && "CAP_"+strings.ToUpper(c.String()) == name {
			return c, true
		}
	}
	return 0, false
}

// validateSpec checks what kerr implements and refuses what it does not: a setting it would
// otherwise skip silently is an error here, at create.
func validateSpec(s *specs.Spec, bundle string) error {
	if !strings.HasPrefix(s.Version, "1.") {
		return fmt.Errorf("ociVersion %q: kerr runs runtime-spec 1.x configs", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		return fmt.Errorf("root.path is missing")
	}
	if !filepath.IsAbs(s.Root.Path) {
		s.Root.Path = filepath.Join(bundle, s.Root.Path)
	}
	s.Root.Path = filepath.Clean(s.Root.Path)
	if st, err := os.Stat(s.Root.Path); err != nil || !st.IsDir() {
		return fmt.Errorf("root.path %s is not a directory", s.Root.Path)
	}
	if s.Process == nil {
		return fmt.Errorf("process is missing")
	}
	if err := validateProcess(s.Process); err != nil {
		return fmt.Errorf("process.%v", err)
	}
	if s.Linux == nil {
		return fmt.Errorf("linux is missing: kerr runs Linux containers")
	}
	if s.Windows != nil || s.Solaris != nil || s.VM != nil || s.ZOS != nil || s.FreeBSD != nil {
		return fmt.Errorf("only the linux platform section is supported")
	}
	if err := validateHooks(s.Hooks); err != nil {
		return err
	}
	l := s.Linux
	seen := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range l.Namespaces {
		if _, ok := nsTypes[ns.Type]; !ok {
			return fmt.Errorf("linux.namespaces[%d]: unknown type %q", i, ns.Type)
		}
		if seen[ns.Type] {
			return fmt.Errorf("linux.namespaces[%d]: %s given twice", i, ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path != "" && !filepath.IsAbs(ns.Path) {
			return fmt.Errorf("linux.namespaces[%d]: path %q is not absolute", i, ns.Path)
		}
	}
	newUser := seen[specs.UserNamespace] && nsPath(l, specs.UserNamespace) == ""
	if newUser && (len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0) {
		return fmt.Errorf("linux.uidMappings and gidMappings are required with a new user namespace")
	}
	if !newUser && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) {
		return fmt.Errorf("linux.uidMappings and gidMappings need a new user namespace")
	}
	if s.Hostname != "" && !(seen[specs.UTSNamespace]) {
		return fmt.Errorf("hostname needs a uts namespace of the container's own")
	}
	if s.Domainname != "" && !(seen[specs.UTSNamespace]) {
		return fmt.Errorf("domainname needs a uts namespace of the container's own")
	}
	for k := range l.Sysctl {
		if err := sysctlAllowed(k, seen); err != nil {
			return fmt.Errorf("linux.sysctl %q: %v", k, err)
		}
	}
	if l.IntelRdt != nil {
		return fmt.Errorf("linux.intelRdt is not supported")
	}
	if l.MountLabel != "" {
		// As runc and crun: labels mean nothing on a host without SELinux.
		if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
			return fmt.Errorf("linux.mountLabel: SELinux labels are not supported")
		}
		fmt.Fprintln(os.Stderr, "kerr: warning: config.json: linux.mountLabel ignored: SELinux is not enabled on this host")
		l.MountLabel = ""
	}
	if l.Personality != nil {
		switch l.Personality.Domain {
		case specs.PerLinux, specs.PerLinux32:
		default:
			return fmt.Errorf("linux.personality.domain %q: LINUX or LINUX32", l.Personality.Domain)
		}
		if len(l.Personality.Flags) > 0 {
			return fmt.Errorf("linux.personality.flags are not supported")
		}
	}
	if len(l.NetDevices) > 0 {
		return fmt.Errorf("linux.netDevices are not supported")
	}
	if l.MemoryPolicy != nil {
		return fmt.Errorf("linux.memoryPolicy is not supported")
	}
	if l.Seccomp != nil {
		if err := seccomp.Validate(l.Seccomp); err != nil {
			return fmt.Errorf("linux.%v", err)
		}
	}
	if l.Resources != nil {
		if err := cgroups.Validate(l.Resources); err != nil {
			return err
		}
	}
	return rootfs.Validate(s)
}

func nsPath(l *specs.Linux, t specs.LinuxNamespaceType) string {
	for _, ns := range l.Namespaces {
		if ns.Type == t {
			return ns.Path
		}
	}
	return ""
}

// hasNamespace reports whether the config lists a namespace of type t (new or joined).
func hasNamespace(l *specs.Linux, t specs.LinuxNamespaceType) bool {
	for _, ns := range l.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// sysctlAllowed refuses sysctls that would change the host's kernel: only namespaced ones,
// and only when the container has that namespace, as runc does.
func sysctlAllowed(k string, ns map[specs.LinuxNamespaceType]bool) error {
	switch {
	case k == "" || strings.Contains(k, "..") || strings.ContainsAny(k, "/ \x00"):
		return fmt.Errorf("not a sysctl name")
	case strings.HasPrefix(k, "net."):
		if !ns[specs.NetworkNamespace] {
			return fmt.Errorf("needs a network namespace")
		}
	case strings.HasPrefix(k, "fs.mqueue."), strings.HasPrefix(k, "kernel.msg"), strings.HasPrefix(k, "kernel.sem"),
		strings.HasPrefix(k, "kernel.shm"):
		if !ns[specs.IPCNamespace] {
			return fmt.Errorf("needs an ipc namespace")
		}
	case k == "kernel.hostname", k == "kernel.domainname":
		if !ns[specs.UTSNamespace] {
			return fmt.Errorf("needs a uts namespace")
		}
	default:
		return fmt.Errorf("not a namespaced sysctl")
	}
	return nil
}

func validateProcess(p *specs.Process) error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("args is empty")
	}
	if p.CommandLine != "" {
		return fmt.Errorf("commandLine is for Windows")
	}
	if p.Cwd == "" || !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("cwd %q is not absolute", p.Cwd)
	}
	for i, e := range p.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return fmt.Errorf("env[%d] %q is not NAME=VALUE", i, e)
		}
	}
	if p.User.Username != "" {
		return fmt.Errorf("user.username is for Windows")
	}
	if p.ConsoleSize != nil && !p.Terminal {
		return fmt.Errorf("consoleSize needs terminal")
	}
	if p.Capabilities != nil {
		for set, caps := range map[string][]string{"bounding": p.Capabilities.Bounding,
			"effective": p.Capabilities.Effective, "inheritable": p.Capabilities.Inheritable,
			"permitted": p.Capabilities.Permitted, "ambient": p.Capabilities.Ambient} {
			for _, c := range caps {
				if _, ok := capByName(c); !ok {
					return fmt.Errorf("capabilities.%s: unknown capability %q", set, c)
				}
			}
		}
	}
	seen := map[string]bool{}
	for i, r := range p.Rlimits {
		if _, ok := rlimitNames[r.Type]; !ok {
			return fmt.Errorf("rlimits[%d]: unknown type %q", i, r.Type)
		}
		if seen[r.Type] {
			return fmt.Errorf("rlimits[%d]: %s given twice", i, r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return fmt.Errorf("rlimits[%d]: soft limit %d is above the hard limit %d", i, r.Soft, r.Hard)
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return fmt.Errorf("oomScoreAdj %d is outside -1000..1000", *p.OOMScoreAdj)
	}
	if p.ApparmorProfile != "" {
		return fmt.Errorf("apparmorProfile: AppArmor is not supported")
	}
	if p.SelinuxLabel != "" {
		return fmt.Errorf("selinuxLabel: SELinux is not supported")
	}
	if p.Scheduler != nil {
		return fmt.Errorf("scheduler is not supported")
	}
	if p.IOPriority != nil {
		return fmt.Errorf("ioPriority is not supported")
	}
	if p.ExecCPUAffinity != nil {
		return fmt.Errorf("execCPUAffinity is not supported")
	}
	return nil
}

func validateHooks(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	//lint:ignore SA1019 prestart is deprecated but still part of the spec: runtimes run it.
	for kind, hs := range map[string][]specs.Hook{"prestart": h.Prestart, "createRuntime": h.CreateRuntime,
		"createContainer": h.CreateContainer, "startContainer": h.StartContainer,
		"poststart": h.Poststart, "poststop": h.Poststop} {
		for i, hk := range hs {
			if !filepath.IsAbs(hk.Path) {
				return fmt.Errorf("hooks.%s[%d]: path %q is not absolute", kind, i, hk.Path)
			}
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				return fmt.Errorf("hooks.%s[%d]: timeout must be positive", kind, i)
			}
		}
	}
	return nil
}
