// Package oci is the message the frontend sends to the starter's root-only "oci" engine,
// which runs OCI runtime-spec containers (`kerr oci create|start|state|kill|delete|exec`).
// It travels as the config of an rpc/envelope Envelope whose id is the container id.
package oci

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// EngineName is the envelope's engine for these messages.
const EngineName = "oci"

// Actions.
const (
	ActionCreate = "create"
	ActionStart  = "start"
	ActionState  = "state"
	ActionKill   = "kill"
	ActionDelete = "delete"
	ActionExec   = "exec"
	ActionRun    = "run" // create, start, wait and delete in one process
	ActionPause  = "pause"
	ActionResume = "resume"
	ActionUpdate = "update"
	ActionAttach = "attach"
	ActionLogs   = "logs"
	ActionPs     = "ps"
	ActionEvents = "events"
	// ActionMonitor is internal: the process `create` starts to stay with a container.
	ActionMonitor = "monitor"
)

// Log formats of a container's output (create --log-format).
const (
	LogBasic      = "basic"
	LogKubernetes = "kubernetes"
	LogJSON       = "json"
)

// Config is one request. Paths are absolute and clean; the engine checks every field again.
type Config struct {
	Action string `json:"action"`
	// Root is the state directory (`kerr oci --root`).
	Root string `json:"root"`
	// SystemdCgroup is the global --systemd-cgroup: create has systemd make the
	// container's cgroup, a transient scope unit. Other commands use the
	// driver recorded in the container's state whatever this says.
	SystemdCgroup bool `json:"systemdCgroup,omitempty"`

	// create
	Bundle        string `json:"bundle,omitempty"`
	PidFile       string `json:"pidFile,omitempty"`
	ConsoleSocket string `json:"consoleSocket,omitempty"`
	NoPivot       bool   `json:"noPivot,omitempty"`
	NoNewKeyring  bool   `json:"noNewKeyring,omitempty"`
	// Monitor keeps a kerr monitor process as the container's parent: it records the exit
	// status and serves the control socket. Without it the container's process is the
	// caller's child (reparented to its subreaper), as with runc.
	Monitor bool `json:"monitor,omitempty"`
	// PreserveFDs (create, exec): the caller's fds 3 .. 3+N-1 go to the container's process.
	PreserveFDs int    `json:"preserveFds,omitempty"`
	LogPath     string `json:"logPath,omitempty"`
	LogFormat   string `json:"logFormat,omitempty"`
	// SyncSocket (create): a unix socket that gets the container's state JSON at each
	// change (created, running, stopped), one connection each, as Singularity sends it.
	SyncSocket string `json:"syncSocket,omitempty"`

	// kill
	Signal int  `json:"signal,omitempty"`
	All    bool `json:"all,omitempty"`

	// delete
	Force bool `json:"force,omitempty"`

	// ps: table or json
	Format string `json:"format,omitempty"`

	// logs: keep printing until the container stops; or, with Reopen, have the monitor
	// reopen its log file (after rotation) instead of printing anything.
	Follow bool `json:"follow,omitempty"`
	Reopen bool `json:"reopen,omitempty"`
	// attach, and run with the monitor: the key sequence that detaches (ParseDetachKeys);
	// NoStdin does not pass our stdin on.
	DetachKeys string `json:"detachKeys,omitempty"`
	NoStdin    bool   `json:"noStdin,omitempty"`

	// update: the new linux.resources
	Resources *specs.LinuxResources `json:"resources,omitempty"`

	// exec: either a whole process (--process FILE), or args with changes to the
	// container's own process (env added, cwd, user "UID[:GID]", tty).
	Process  *specs.Process `json:"process,omitempty"`
	ExecArgs []string       `json:"execArgs,omitempty"`
	ExecEnv  []string       `json:"execEnv,omitempty"`
	ExecCwd  string         `json:"execCwd,omitempty"`
	ExecUser string         `json:"execUser,omitempty"`
	Tty      bool           `json:"tty,omitempty"`
	Detach   bool           `json:"detach,omitempty"`
}

// MaxPreserveFDs is the most fds --preserve-fds may pass (the starter's KERR_KEEP_FDS_MAX).
const MaxPreserveFDs = 1024

// DefaultRoot is where container state lives unless --root moves it.
const DefaultRoot = "/run/kerr"

func absClean(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q is not an absolute, clean path", what, p)
	}
	return nil
}

// Validate checks the fields both sides rely on.
func (c Config) Validate() error {
	if err := absClean("state root", c.Root); err != nil {
		return err
	}
	if c.PreserveFDs < 0 || c.PreserveFDs > MaxPreserveFDs {
		return fmt.Errorf("preserve-fds %d is out of range 0..%d", c.PreserveFDs, MaxPreserveFDs)
	}
	if c.PreserveFDs > 0 && c.Action != ActionCreate && c.Action != ActionMonitor && c.Action != ActionExec && c.Action != ActionRun {
		return fmt.Errorf("preserve-fds is for create and exec")
	}
	switch c.Action {
	case ActionCreate, ActionMonitor, ActionRun:
		if err := absClean("bundle", c.Bundle); err != nil {
			return err
		}
		for what, p := range map[string]string{"pid file": c.PidFile, "console socket": c.ConsoleSocket, "log path": c.LogPath, "sync socket": c.SyncSocket} {
			if p != "" {
				if err := absClean(what, p); err != nil {
					return err
				}
			}
		}
		switch c.LogFormat {
		case "", LogBasic, LogKubernetes, LogJSON:
		default:
			return fmt.Errorf("unknown log format %q (basic, kubernetes or json)", c.LogFormat)
		}
		if _, err := ParseDetachKeys(c.DetachKeys); err != nil {
			return err
		}
		if c.LogPath != "" && !c.Monitor {
			return fmt.Errorf("a log path needs the monitor (it writes the log)")
		}
		if c.ConsoleSocket != "" && c.Monitor {
			return fmt.Errorf("a console socket is for runs without the monitor")
		}
	case ActionKill:
		if c.Signal <= 0 || c.Signal > 64 {
			return fmt.Errorf("signal %d is out of range", c.Signal)
		}
	case ActionExec:
		if (c.Process == nil) == (len(c.ExecArgs) == 0) {
			return fmt.Errorf("exec needs either a process or args")
		}
		if c.Process != nil && len(c.Process.Args) == 0 {
			return fmt.Errorf("exec: the process has no args")
		}
		if c.PidFile != "" {
			if err := absClean("pid file", c.PidFile); err != nil {
				return err
			}
		}
		if c.ConsoleSocket != "" {
			if err := absClean("console socket", c.ConsoleSocket); err != nil {
				return err
			}
		}
	case ActionUpdate:
		if c.Resources == nil {
			return fmt.Errorf("update needs resources")
		}
	case ActionAttach:
		if _, err := ParseDetachKeys(c.DetachKeys); err != nil {
			return err
		}
	case ActionLogs:
		if c.Reopen && c.Follow {
			return fmt.Errorf("logs: --reopen and --follow do not go together")
		}
	case ActionStart, ActionState, ActionDelete, ActionPause, ActionResume, ActionEvents:
	case ActionPs:
		if c.Format != "table" && c.Format != "json" {
			return fmt.Errorf("ps format %q: table or json", c.Format)
		}
	default:
		return fmt.Errorf("unknown oci action %q", c.Action)
	}
	return nil
}

// DefaultDetachKeys is the sequence that detaches from a container, as docker and podman
// have it.
const DefaultDetachKeys = "ctrl-p,ctrl-q"

// ParseDetachKeys reads a detach sequence: a comma list of single characters and ctrl-X
// (X a letter or one of @[\\]^_), "" for the default; "none" turns detaching off (nil).
func ParseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = DefaultDetachKeys
	}
	if s == "none" {
		return nil, nil
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1 && k[0] >= 0x20 && k[0] < 0x7f:
			keys = append(keys, k[0])
		case len(k) == 6 && strings.HasPrefix(strings.ToLower(k), "ctrl-"):
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				keys = append(keys, c-'a'+1)
			case c >= 'A' && c <= 'Z':
				keys = append(keys, c-'A'+1)
			case strings.IndexByte("@[\\]^_", c) >= 0:
				keys = append(keys, c-'@')
			default:
				return nil, fmt.Errorf("detach keys %q: no control character ctrl-%c", s, c)
			}
		default:
			return nil, fmt.Errorf("detach keys %q: %q is neither one character nor ctrl-X", s, k)
		}
	}
	if len(keys) > 16 {
		return nil, fmt.Errorf("detach keys %q: at most 16 keys", s)
	}
	return keys, nil
}
