package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/oci/seccomp"
)

// The functions in this file run in the container's process (the init or an exec'd one),
// as root of the container's namespaces, on the OS thread that will execve the payload:
// capabilities, no_new_privs, the personality and seccomp are per thread.

// setRlimits applies process.rlimits to this process. It runs late (after the rootfs and
// the seccomp filter are made, which allocate) and before the user switch (after it, the
// process could no longer raise a soft limit to the hard one it was given): a limit such as
// RLIMIT_AS may leave the Go runtime little room. Raising a hard limit needs
// CAP_SYS_RESOURCE, so a config that asks for more than the runtime has fails here, at
// create.
func setRlimits(p *specs.Process) error {
	for _, r := range p.Rlimits {
		res := rlimitNames[r.Type]
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("setrlimit %s (soft %d, hard %d): %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// setOOMScoreAdj writes process.oomScoreAdj for this process (its children inherit it).
func setOOMScoreAdj(p *specs.Process) error {
	if p.OOMScoreAdj == nil {
		return nil
	}
	v := strconv.Itoa(*p.OOMScoreAdj)
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(v), 0); err != nil {
		return fmt.Errorf("oomScoreAdj %s: %w", v, err)
	}
	return nil
}

// envValue returns NAME's value in env, the last one winning as execve's readers do.
func envValue(env []string, name string) (string, bool) {
	val, ok := "", false
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == name {
			val, ok = v, true
		}
	}
	return val, ok
}

// defaultPath is used to find the executable when the process's env has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds args[0] in the container (this process's root) the way execvp would, so
// that a missing executable is reported at create as "no such file or directory".
func lookPath(p *specs.Process) (string, error) {
	name := p.Args[0]
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	path, ok := envValue(p.Env, "PATH")
	if !ok {
		path = defaultPath
	}
	var firstErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		c := filepath.Join(dir, name)
		err := checkExecutable(c)
		if err == nil {
			return c, nil
		}
		if firstErr == nil && !errors.Is(err, unix.ENOENT) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH: %w", name, unix.ENOENT)
}

func checkExecutable(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("exec %s: is a directory: %w", path, unix.EACCES)
	}
	if st.Mode&0o111 == 0 {
		return fmt.Errorf("exec %s: %w", path, unix.EACCES)
	}
	return nil
}

// capSet returns the capabilities named (validated at create).
func capSet(names []string) []capability.Cap {
	out := make([]capability.Cap, 0, len(names))
	for _, n := range names {
		if c, ok := capByName(n); ok {
			out = append(out, c)
		}
	}
	return out
}

// dropBounding narrows the bounding set to process.capabilities.bounding, while this
// thread still has CAP_SETPCAP. No capabilities section: the set is emptied.
func dropBounding(p *specs.Process) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	c.Clear(capability.BOUNDING)
	if p.Capabilities != nil {
		c.Set(capability.BOUNDING, capSet(p.Capabilities.Bounding)...)
	}
	if err := c.Apply(capability.BOUNDING); err != nil {
		return fmt.Errorf("capabilities: bounding set: %w", err)
	}
	return nil
}

// setUser switches to process.user, keeping the permitted capabilities across the switch
// (setCaps sets the final ones). Groups first: they can no longer change once uid is not 0.
func setUser(p *specs.Process) error {
	u := p.User
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	groups := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int(g))
	}
	if err := unix.Setgroups(groups); err != nil {
		// In a user namespace whose setgroups is "deny", only an empty list was ever possible.
		if !(errors.Is(err, unix.EPERM) && len(groups) == 0) {
			return fmt.Errorf("setgroups %v: %w", groups, err)
		}
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setresgid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setresuid %d: %w", u.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	return nil
}

// setCaps sets the effective, permitted, inheritable and ambient sets of this thread.
func setCaps(p *specs.Process) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	c.Clear(capability.CAPS)
	if pc := p.Capabilities; pc != nil {
		c.Set(capability.EFFECTIVE, capSet(pc.Effective)...)
		c.Set(capability.PERMITTED, capSet(pc.Permitted)...)
		c.Set(capability.INHERITABLE, capSet(pc.Inheritable)...)
	}
	if err := c.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := capability.ResetAmbient(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("capabilities: ambient set: %w", err)
	}
	if p.Capabilities == nil {
		return nil
	}
	// The kernel raises an ambient capability only if it is permitted and inheritable;
	// configs commonly list ambient ones without inheritable (runc's default), and runc
	// skips those with a warning rather than fail: so does kerr, without the warning.
	for _, a := range capSet(p.Capabilities.Ambient) {
		if err := capability.SetAmbient(true, a); err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("capabilities: ambient %s: %w", a, err)
		}
	}
	return nil
}

// setPersonality applies linux.personality (this thread; execve keeps it).
func setPersonality(l *specs.Linux) error {
	if l == nil || l.Personality == nil {
		return nil
	}
	// PER_LINUX and PER_LINUX32 (linux/personality.h).
	v := 0x0000
	if l.Personality.Domain == specs.PerLinux32 {
		v = 0x0008
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(v), 0, 0); errno != 0 {
		return fmt.Errorf("personality %s: %w", l.Personality.Domain, errno)
	}
	return nil
}

// finalize drops to process.user with its capabilities and moves to cwd: everything of
// the process's last steps that can fail because of the config, so that such an error ends
// create, not start. The seccomp filter is compiled here; without no_new_privs it is also
// loaded here, last, with the capabilities still permitted raised (loading needs
// CAP_SYS_ADMIN), so that the runtime's own calls before it (getcwd, ...) are not
// filtered. With no_new_privs the caller loads the returned filter right before execve.
// The working directory is entered as root first (a cwd only root may enter is valid, as
// with runc), then again as the user.
func finalize(p *specs.Process, l *specs.Linux) (*seccomp.Filter, error) {
	if err := setPersonality(l); err != nil {
		return nil, err
	}
	var filter *seccomp.Filter
	if l != nil && l.Seccomp != nil {
		f, err := seccomp.Compile(l.Seccomp)
		if err != nil {
			return nil, err
		}
		filter = f
	}
	if err := setRlimits(p); err != nil {
		return nil, err
	}
	if err := dropBounding(p); err != nil {
		return nil, err
	}
	chdirErr := unix.Chdir(p.Cwd)
	if err := setUser(p); err != nil {
		return nil, err
	}
	if err := unix.Chdir(p.Cwd); err != nil && chdirErr != nil {
		return nil, fmt.Errorf("chdir to cwd %s: %w", p.Cwd, err)
	}
	if err := checkCwd(); err != nil {
		return nil, err
	}
	if filter != nil && !p.NoNewPrivileges {
		if err := raiseEffective(); err != nil {
			return nil, err
		}
		if err := filter.Load(); err != nil {
			return nil, err
		}
		filter = nil
	}
	return filter, setCaps(p)
}

// raiseEffective makes the effective capabilities those still permitted (the user switch
// cleared them; loading a seccomp filter without no_new_privs needs CAP_SYS_ADMIN).
func raiseEffective() error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.PERMITTED, cp) {
			c.Set(capability.EFFECTIVE, cp)
		}
	}
	if err := c.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	return nil
}

// execPayload sets no_new_privs and, with it, loads the seccomp filter as late as possible,
// and execs the payload. Nothing here allocates much: the rlimits, which the runtime has
// set on this process by now, may leave little address space.
func execPayload(p *specs.Process, filter *seccomp.Filter, path string) error {
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	if filter != nil {
		if err := filter.Load(); err != nil {
			return err
		}
	}
	env := p.Env
	if env == nil {
		env = []string{}
	}
	err := unix.Exec(path, p.Args, env)
	return fmt.Errorf("exec %s: %w", path, err)
}

// checkCwd refuses a working directory outside the container's root (CVE-2024-21626: a
// leaked directory fd of the host as cwd): getcwd then reports "(unreachable)".
func checkCwd() error {
	wd, err := unix.Getwd()
	if err != nil {
		return fmt.Errorf("getcwd: %w", err)
	}
	if !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("cwd %q is outside the container", wd)
	}
	return nil
}
