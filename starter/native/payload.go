package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/starter/oci/seccomp"
)

// Privileges: root on entry, in the container (after pivot_root); exec drops to the caller
// for good before the payload runs. Everything runs on the main thread (cmd/starter locks
// it), the one that execs: the per-thread changes (ids, capabilities, no_new_privs,
// seccomp) are what the payload inherits; the runtime's other threads end with the exec.

// loopbackUp brings up lo in the container's new network namespace (--net: only lo).
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("network namespace: lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("network namespace: bring lo up: %w", err)
	}
	return nil
}

// exec drops to the caller, applies no_new_privs and seccomp, enters the working directory
// and execs the action.
func (c *container) exec() error {
	p := c.plan
	filters, err := c.compileSeccomp()
	if c.cacheFD >= 0 {
		unix.Close(c.cacheFD)
		c.cacheFD = -1
	}
	if err != nil {
		return err
	}
	if err := c.dropPrivileges(); err != nil {
		return err
	}
	c.enterCwd()
	env := c.environment()
	path, argv, err := c.command(env)
	if err != nil {
		return err
	}
	if p.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	for _, f := range filters {
		if err := f.Load(); err != nil {
			return err
		}
	}
	c.ready()
	err = unix.Exec(path, argv, env)
	return fmt.Errorf("exec %s: %w", path, err)
}

// compileSeccomp compiles the policy's profile and the caller's, both loaded right before
// exec; the kernel runs both, so the caller's can only take more away.
func (c *container) compileSeccomp() ([]*seccomp.Filter, error) {
	var out []*seccomp.Filter
	add := func(what string, data []byte) error {
		var s specs.LinuxSeccomp
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("seccomp profile %s: %w", what, err)
		}
		f, err := seccomp.Compile(&s)
		if err != nil {
			return fmt.Errorf("seccomp profile %s: %w", what, err)
		}
		out = append(out, f)
		return nil
	}
	if len(c.plan.Seccomp) > 0 {
		if f := c.cachedFilter(); f != nil {
			out = append(out, f)
		} else {
			if err := add(c.plan.SeccompPath+" (security.seccomp_profile)", c.plan.Seccomp); err != nil {
				return nil, err
			}
			c.cacheFilter(out[len(out)-1])
		}
	}
	if len(c.plan.UserSeccomp) > 0 {
		if err := add("given with --security", c.plan.UserSeccomp); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// The policy's profile, compiled, is kept in a directory only root writes, by a key of its
// bytes, libseccomp's version and the architecture: compiling it is a third of a start.
const maxCachedFilter = 64 << 10

// cacheDir is where compiled profiles are kept; stage 2 has the host's view until pivot,
// and compiles before it (see build).
func (c *container) cacheDir() string {
	return filepath.Join(filepath.Dir(filepath.Dir(c.sessionDir)), "seccomp")
}

// cachedFilter returns the compiled profile loadFilterCache found, else nil.
func (c *container) cachedFilter() *seccomp.Filter {
	if c.cached == nil {
		return nil
	}
	f, err := seccomp.UnmarshalFilter(c.cached)
	if err != nil {
		return nil
	}
	return f
}

// loadFilterCache reads the kept compiled profile of this plan's profile, before pivot.
// Only a regular, root-owned file that no one else may write is read.
func (c *container) loadFilterCache() {
	if len(c.plan.Seccomp) == 0 {
		return
	}
	c.cacheKey = seccomp.CacheKey(c.plan.Seccomp)
	if c.cacheKey == "" {
		return
	}
	fd, err := unix.Open(filepath.Join(c.cacheDir(), c.cacheKey), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), c.cacheKey)
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxCachedFilter {
		return
	}
	b := make([]byte, st.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return
	}
	c.cached = b
}

// cacheFilter keeps a compiled profile for the next start: root only (not in a user
// namespace), written to a temporary name and renamed. Best effort: a failure costs the
// next start the compile, nothing else. It runs after pivot_root, so the directory was
// opened before (cacheFD).
func (c *container) cacheFilter(f *seccomp.Filter) {
	if c.cacheFD < 0 || c.cacheKey == "" {
		return
	}
	b, err := f.MarshalBinary()
	if err != nil || len(b) > maxCachedFilter {
		return
	}
	key := c.cacheKey
	tmp := "." + key + ".tmp"
	fd, err := unix.Openat(c.cacheFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	_, werr := unix.Write(fd, b)
	cerr := unix.Close(fd)
	if werr != nil || cerr != nil || unix.Renameat(c.cacheFD, tmp, c.cacheFD, key) != nil {
		_ = unix.Unlinkat(c.cacheFD, tmp, 0)
	}
}

// openFilterCache opens (making it) the cache directory for cacheFilter, as root, before
// pivot_root; in a user namespace nothing is kept.
func (c *container) openFilterCache() {
	c.cacheFD = -1
	if c.plan.UserNS || c.cacheKey == "" || c.cached != nil {
		return
	}
	dir := c.cacheDir()
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Uid != 0 || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return
	}
	c.cacheFD = fd
}

// dropPrivileges becomes the caller for good: groups, gid, uid, and no capabilities at all
// (the bounding set emptied first, while CAP_SETPCAP is still held); root keeps the
// policy's capabilities.root_keeps (plus what it was granted).
func (c *container) dropPrivileges() error {
	u := c.plan.Caller
	caps, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := caps.Load(); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	keep := capsByName(c.plan.Capabilities)
	caps.Clear(capability.BOUNDING)
	caps.Set(capability.BOUNDING, keep...)
	if err := caps.Apply(capability.BOUNDING); err != nil {
		return fmt.Errorf("capabilities: bounding set: %w", err)
	}
	groups := make([]int, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = int(g)
	}
	// In a user namespace setgroups is denied (the kernel's rule for unprivileged maps):
	// the caller's groups stay as they were.
	if !c.plan.UserNS {
		if err := unix.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	// Capabilities the policy granted survive the change of uid (PR_SET_KEEPCAPS), then
	// become the payload's, ambient so that they survive its execve as a non-root user.
	if len(keep) > 0 && u.UID != 0 {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
		}
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setresgid %d: %w", u.GID, err)
	}
	// Without PR_SET_KEEPCAPS the kernel clears every capability set when all uids become
	// non-zero: the caller's payload has none.
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setresuid %d: %w", u.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	r, e, s := unix.Getresuid()
	if r != int(u.UID) || e != int(u.UID) || s != int(u.UID) {
		return fmt.Errorf("ids after the drop are %d/%d/%d, want %d", r, e, s, u.UID)
	}
	// Exactly the kept ones: from root the uid change has cleared the rest; in a user
	// namespace the uid did not change (the caller is mapped to themselves).
	caps.Clear(capability.CAPS | capability.AMBIENT)
	caps.Set(capability.EFFECTIVE|capability.PERMITTED|capability.INHERITABLE, keep...)
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := capability.ResetAmbient(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("capabilities: ambient set: %w", err)
	}
	if u.UID != 0 {
		for _, k := range keep {
			if err := capability.SetAmbient(true, k); err != nil {
				return fmt.Errorf("capabilities: ambient %s: %w", k, err)
			}
		}
	}
	if err := caps.Load(); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	for _, which := range []capability.CapType{capability.EFFECTIVE, capability.PERMITTED, capability.BOUNDING} {
		for _, cp := range capability.ListKnown() {
			if caps.Get(which, cp) && !slices.Contains(keep, cp) {
				return fmt.Errorf("capability %s left after the drop", cp)
			}
		}
	}
	return nil
}

func capsByName(names []string) []capability.Cap {
	var out []capability.Cap
	for _, n := range names {
		for _, c := range capability.ListKnown() {
			if "CAP_"+strings.ToUpper(c.String()) == n {
				out = append(out, c)
			}
		}
	}
	return out
}

// enterCwd enters the plan's working directory, as the caller; one the container does not
// have (or the caller may not enter) falls back to $HOME, then /, with a warning.
func (c *container) enterCwd() {
	for _, d := range []string{c.plan.Cwd, c.plan.Home, "/"} {
		if d == "" {
			continue
		}
		if err := unix.Chdir(d); err == nil {
			if d != c.plan.Cwd {
				fmt.Fprintf(os.Stderr, "WARNING: could not enter %s in the container, starting in %s\n", c.plan.Cwd, d)
			}
			return
		}
	}
}

// environment is the payload's: the inherited variables, then kerr's own (HOME, the
// container's name), with the explicit ones applied after the image's by the action.
func (c *container) environment() []string {
	p := c.plan
	env := make([]string, 0, len(p.Env)+8)
	for _, e := range p.Env {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "HOME", "KERR_CONTAINER", "KERR_NAME", "SINGULARITY_CONTAINER", "SINGULARITY_NAME",
			"APPTAINER_CONTAINER", "APPTAINER_NAME":
			continue
		}
		env = append(env, e)
	}
	name := filepath.Base(p.Image.Path)
	env = append(env, "HOME="+p.Home,
		"KERR_CONTAINER="+p.Image.Path, "KERR_NAME="+name,
		"SINGULARITY_CONTAINER="+p.Image.Path, "SINGULARITY_NAME="+name,
		"APPTAINER_CONTAINER="+p.Image.Path, "APPTAINER_NAME="+name)
	return env
}

// defaultPath is PATH for an image whose environment sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// actionScript is what /bin/sh runs: the image's environment scripts in name order (as
// Singularity and Apptainer do), then the caller's explicit variables, which win, then the
// action.
func (c *container) actionScript() string {
	var b strings.Builder
	b.WriteString(`for kerr_env in /.singularity.d/env/*.sh; do
	if [ -f "$kerr_env" ]; then . "$kerr_env"; fi
done
unset kerr_env
`)
	var prepend, appendPath string
	for _, e := range c.plan.EnvOverride {
		k, v, _ := strings.Cut(e, "=")
		switch {
		case !validShellName(k):
			continue
		case k == "PREPEND_PATH":
			prepend = v
			continue
		case k == "APPEND_PATH":
			appendPath = v
			continue
		}
		fmt.Fprintf(&b, "%s=%s; export %s\n", k, shellQuote(v), k)
	}
	b.WriteString(`if [ -z "${PATH:-}" ]; then PATH=` + defaultPath + `; export PATH; fi
`)
	// As Apptainer: PREPEND_PATH and APPEND_PATH extend the PATH the image set.
	if prepend != "" {
		fmt.Fprintf(&b, "PATH=%s:$PATH; export PATH\n", shellQuote(prepend))
	}
	if appendPath != "" {
		fmt.Fprintf(&b, "PATH=$PATH:%s; export PATH\n", shellQuote(appendPath))
	}
	switch c.plan.Action {
	case rpcnative.ActionExec:
		b.WriteString(`exec "$@"
`)
	case rpcnative.ActionRun:
		b.WriteString(`if [ -x /.singularity.d/runscript ]; then exec /.singularity.d/runscript "$@"; fi
if [ -x /singularity ]; then exec /singularity "$@"; fi
echo "kerr: this image has no runscript" >&2
exit 127
`)
	case rpcnative.ActionInstance:
		b.WriteString(`if [ -x /.singularity.d/startscript ]; then exec /.singularity.d/startscript "$@"; fi
exit 0
`)
	case rpcnative.ActionShell:
		b.WriteString(`for kerr_sh in "${KERR_SHELL:-}" "${SINGULARITY_SHELL:-}" "${APPTAINER_SHELL:-}" /bin/bash /bin/sh; do
	if [ -n "$kerr_sh" ] && [ -x "$kerr_sh" ]; then SHELL=$kerr_sh; export SHELL; exec "$kerr_sh" "$@"; fi
done
echo "kerr: no shell found in the image" >&2
exit 127
`)
	}
	return b.String()
}

func validShellName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, r := range k {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// command is what to exec: the image's /bin/sh with the action script; an image without
// one can still exec a command directly (with the explicit variables and a default PATH).
func (c *container) command(env []string) (string, []string, error) {
	if err := unix.Access("/bin/sh", unix.X_OK); err == nil {
		argv := append([]string{"/bin/sh", "-c", c.actionScript(), "kerr-" + c.plan.Action}, c.plan.Args...)
		return "/bin/sh", argv, nil
	}
	if c.plan.Action != rpcnative.ActionExec {
		return "", nil, fmt.Errorf("the image has no /bin/sh to run its %s action", c.plan.Action)
	}
	// Explicit variables win; PATH defaults.
	env = mergeEnv(env, c.plan.EnvOverride)
	path := c.plan.Args[0]
	if !strings.Contains(path, "/") {
		search := defaultPath
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				search = v
			}
		}
		found := ""
		for _, dir := range filepath.SplitList(search) {
			cand := filepath.Join(dir, path)
			if unix.Access(cand, unix.X_OK) == nil {
				found = cand
				break
			}
		}
		if found == "" {
			return "", nil, fmt.Errorf("%s: not found in the container's PATH", path)
		}
		path = found
	}
	return path, c.plan.Args, nil
}

// mergeEnv returns base with over's variables replacing or added, one entry per name.
func mergeEnv(base, over []string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(over))
	for _, list := range [][]string{base, over} {
		for _, e := range list {
			k, _, _ := strings.Cut(e, "=")
			if i, ok := idx[k]; ok {
				out[i] = e
				continue
			}
			idx[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}
