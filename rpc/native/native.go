// Package native is the message the frontend sends to the starter's "native" engine (HPC
// mode: `kerr exec|run|shell IMAGE`, `kerr instance start`). It travels as the config of an
// rpc/envelope Envelope. Everything in it is a request: the starter's stage 1 checks each
// field against the admin's policy and the caller's own rights (the caller's identity comes
// from the kernel, never from here), and only what it allows reaches the privileged stage.
//
// Nothing here needs privileges; the package is pure Go and used by both sides.
package native

import (
	"fmt"
	"path/filepath"
	"strings"
)

// EngineName is the envelope's engine for these messages.
const EngineName = "native"

// Magic starts the config bytes of an HPC-mode request, before the envelope's JSON: the
// starter's C stage reads it to pick the two-stage HPC flow (frontend/launch writes it).
const Magic = "KERRHPC1\n"

// Actions: what runs in the container.
const (
	// ActionExec runs Args[0] with Args[1:] (`kerr exec IMAGE CMD ARGS`).
	ActionExec = "exec"
	// ActionRun runs the image's runscript with Args (`kerr run IMAGE ARGS`).
	ActionRun = "run"
	// ActionShell runs a shell, with Args as its arguments (`kerr shell IMAGE`).
	ActionShell = "shell"
	// ActionInstance starts Args (the image's startscript when empty) in the background, as
	// instance ID (`kerr instance start IMAGE NAME`).
	ActionInstance = "instance"
)

// Namespaces a request may ask for (beyond the mount namespace every container has).
const (
	NamespacePID = "pid"
	NamespaceIPC = "ipc"
	NamespaceUTS = "uts"
	NamespaceNet = "net"
)

// Bind is one --bind SRC[:DST[:ro|rw]]: a host path made visible in the container.
type Bind struct {
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Config is one request. Paths are absolute and clean (the frontend resolves relative ones
// against the caller's cwd); Validate says so, and stage 1 checks again.
type Config struct {
	Action string `json:"action"`
	// Image is a SIF file or a sandbox directory, or "instance://NAME" (join an instance).
	Image string `json:"image"`
	// Args: see the actions.
	Args []string `json:"args,omitempty"`
	// Env is what the container inherits of the caller's environment (all of it but what
	// Apptainer leaves out, or a minimal set with --cleanenv); the image's own environment
	// (/.singularity.d/env/*.sh) is applied over it inside. EnvOverride is what the caller
	// set explicitly (KERRENV_X, SINGULARITYENV_X, APPTAINERENV_X, --env-file, --env): it is
	// applied last and wins over the image's, as in Apptainer.
	Env         []string `json:"env,omitempty"`
	EnvOverride []string `json:"envOverride,omitempty"`
	// Cwd is the caller's working directory (bound into the container and entered unless
	// --contain); Pwd, when set, is the directory to enter inside the container (--pwd).
	Cwd string `json:"cwd"`
	Pwd string `json:"pwd,omitempty"`
	// Binds are the user's --bind entries, in order.
	Binds []Bind `json:"binds,omitempty"`
	// Home: --home SRC[:DST] ("" for the caller's home at the same path); NoHome: --no-home.
	HomeSource string `json:"homeSource,omitempty"`
	HomeDest   string `json:"homeDest,omitempty"`
	NoHome     bool   `json:"noHome,omitempty"`
	// Contain (-c): no host home, /tmp or cwd; ContainAll (-C): also a clean environment,
	// its own ipc and pid namespaces.
	Contain    bool `json:"contain,omitempty"`
	ContainAll bool `json:"containAll,omitempty"`
	// WritableTmpfs: the root filesystem is writable, changes kept in memory and dropped at
	// the end (--writable-tmpfs).
	WritableTmpfs bool `json:"writableTmpfs,omitempty"`
	// Overlay: a directory whose contents are layered over the image (--overlay DIR).
	Overlay string `json:"overlay,omitempty"`
	// Namespaces asked for (pid, ipc, uts, net) and the hostname, with uts.
	Namespaces []string `json:"namespaces,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	// Seccomp: --security seccomp:PROFILE (an absolute path), "" for the policy's default.
	Seccomp string `json:"seccomp,omitempty"`
	// NoMount lists mounts not to make: proc, sys, dev, devpts, home, tmp, cwd, hostfs or a
	// system bind's path (--no-mount).
	NoMount []string `json:"noMount,omitempty"`
	// Instance is the instance name for ActionInstance.
	Instance string `json:"instance,omitempty"`
	// AddCaps: capabilities the caller asks to keep (--add-caps), CAP_* names; the policy's
	// capabilities.grant must give them to the caller (root may ask for any).
	AddCaps []string `json:"addCaps,omitempty"`
	// UserNS: the frontend chose the unprivileged starter and a user namespace (--userns, or
	// the policy's setuid off). The starter goes by what it finds itself (setuid or not).
	UserNS bool `json:"userns,omitempty"`
}

// MaxArgs, MaxEnv and MaxBinds bound a request: stage 1 reads it as untrusted input.
const (
	MaxArgs  = 4096
	MaxEnv   = 4096
	MaxBinds = 64
)

func absClean(what, p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q is not an absolute, clean path", what, p)
	}
	if strings.ContainsRune(p, 0) {
		return fmt.Errorf("%s has a NUL byte", what)
	}
	return nil
}

// Validate checks the request's form; whether it is allowed is stage 1's decision.
func (c *Config) Validate() error {
	switch c.Action {
	case ActionExec:
		if len(c.Args) == 0 {
			return fmt.Errorf("exec needs a command")
		}
	case ActionRun, ActionShell:
	case ActionInstance:
		if err := ValidInstanceName(c.Instance); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown action %q", c.Action)
	}
	if name, ok := strings.CutPrefix(c.Image, "instance://"); ok {
		if err := ValidInstanceName(name); err != nil {
			return err
		}
		if c.Action == ActionInstance || len(c.Binds) > 0 || c.HomeSource != "" || c.Overlay != "" || len(c.Namespaces) > 0 || c.WritableTmpfs || len(c.AddCaps) > 0 {
			return fmt.Errorf("instance://%s: binds, home, overlay, namespaces, capabilities and --writable-tmpfs are the instance's, given at instance start", name)
		}
	} else if err := absClean("image", c.Image); err != nil {
		return err
	}
	if len(c.Args) > MaxArgs || len(c.Env) > MaxEnv || len(c.Binds) > MaxBinds {
		return fmt.Errorf("too many args, env entries or binds (at most %d, %d, %d)", MaxArgs, MaxEnv, MaxBinds)
	}
	for _, a := range c.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("an argument has a NUL byte")
		}
	}
	if len(c.EnvOverride) > MaxEnv {
		return fmt.Errorf("too many environment entries (at most %d)", MaxEnv)
	}
	for _, e := range append(append([]string(nil), c.Env...), c.EnvOverride...) {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.ContainsRune(e, 0) {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", e)
		}
	}
	if err := absClean("cwd", c.Cwd); err != nil {
		return err
	}
	if c.Pwd != "" {
		if err := absClean("pwd", c.Pwd); err != nil {
			return err
		}
	}
	for i, b := range c.Binds {
		if err := absClean(fmt.Sprintf("bind %d source", i+1), b.Source); err != nil {
			return err
		}
		if err := absClean(fmt.Sprintf("bind %d destination", i+1), b.Dest); err != nil {
			return err
		}
	}
	if c.HomeSource != "" {
		if err := absClean("home", c.HomeSource); err != nil {
			return err
		}
		if err := absClean("home destination", c.HomeDest); err != nil {
			return err
		}
	}
	if c.NoHome && c.HomeSource != "" {
		return fmt.Errorf("--home and --no-home do not go together")
	}
	if c.Overlay != "" {
		if err := absClean("overlay", c.Overlay); err != nil {
			return err
		}
		if c.WritableTmpfs {
			return fmt.Errorf("--overlay and --writable-tmpfs do not go together")
		}
	}
	for _, ns := range c.Namespaces {
		switch ns {
		case NamespacePID, NamespaceIPC, NamespaceUTS, NamespaceNet:
		default:
			return fmt.Errorf("unknown namespace %q (pid, ipc, uts or net)", ns)
		}
	}
	if c.Hostname != "" {
		if len(c.Hostname) > 64 || strings.ContainsAny(c.Hostname, "/\x00 ") {
			return fmt.Errorf("hostname %q", c.Hostname)
		}
	}
	if c.Seccomp != "" {
		if err := absClean("seccomp profile", c.Seccomp); err != nil {
			return err
		}
	}
	for _, cp := range c.AddCaps {
		name, ok := strings.CutPrefix(cp, "CAP_")
		if !ok || name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
			return fmt.Errorf("capability %q is not a CAP_ name", cp)
		}
	}
	if len(c.AddCaps) > 64 {
		return fmt.Errorf("too many capabilities")
	}
	return nil
}

// InstanceDir is where a user's instance records live, under the home of their passwd entry
// (never $HOME: the starter reads them without the caller's environment): one directory per
// host, as homes are often shared by a cluster's nodes.
func InstanceDir(home, hostname string) string {
	return filepath.Join(home, ".kerr", "instances", hostname)
}

// Instance is the record `kerr instance start` writes (as the user, mode 0600) and exec
// instance://NAME, list and stop read. It is the user's file, so nothing in it is trusted:
// the starter checks the process it names before joining it.
type Instance struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// PID is the instance's init on the host, StartTime its start time (clock ticks since
	// boot, /proc/PID/stat field 22): a pid reused by another process does not match.
	PID        int      `json:"pid"`
	StartTime  uint64   `json:"startTime"`
	UID        int      `json:"uid"`
	Created    string   `json:"created"`
	Namespaces []string `json:"namespaces"`
	// Logs: the instance's stdout and stderr.
	StdoutLog string `json:"stdoutLog,omitempty"`
	StderrLog string `json:"stderrLog,omitempty"`
}

// MaxInstanceRecord bounds what is read of a record.
const MaxInstanceRecord = 64 << 10

// ValidInstanceName says whether name may name an instance (it becomes a file name).
func ValidInstanceName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("instance name %q: 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
	}
	for _, r := range name {
		if !(r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("instance name %q: 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
		}
	}
	return nil
}
