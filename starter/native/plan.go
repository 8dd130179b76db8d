package native

import (
	"encoding/json"
	"fmt"

	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// Plan is what stage 1 decided and stage 2 carries out: every decision the policy and the
// caller's rights govern is made in stage 1; stage 2 adds none and opens no path the caller
// named. FD fields index the fds stage 1 sent along (stage 0 lists them in order).
type Plan struct {
	// UserNS: stage 2 runs in a user namespace of the caller's (no setuid): no loop devices,
	// groups frozen, capabilities only inside.
	UserNS bool     `json:"userns,omitempty"`
	Caller Caller   `json:"caller"`
	Action string   `json:"action"`
	Args   []string `json:"args,omitempty"`
	// Env is inherited; EnvOverride wins over the image's environment.
	Env         []string  `json:"env,omitempty"`
	EnvOverride []string  `json:"envOverride,omitempty"`
	Image       PlanImage `json:"image"`
	// Binds in the order they are made: system binds, home, tmp, cwd, then the user's.
	Binds []PlanBind `json:"binds,omitempty"`
	// Tmpfs mounts (a contained home, /tmp and /var/tmp), made where a bind is not.
	Tmpfs []PlanTmpfs `json:"tmpfs,omitempty"`
	// Cwd is where the payload starts, inside the container; Home is $HOME inside.
	Cwd  string `json:"cwd"`
	Home string `json:"home"`
	// What of the host the container sees (policy [mounts]).
	Proc       bool   `json:"proc,omitempty"`
	Sys        bool   `json:"sys,omitempty"`
	Dev        string `json:"dev"`
	Devpts     bool   `json:"devpts,omitempty"`
	Passwd     bool   `json:"passwd,omitempty"`
	Group      bool   `json:"group,omitempty"`
	ResolvConf bool   `json:"resolvConf,omitempty"`
	// SystemBinds are the admin's paths, bound at the same place when they exist.
	SystemBinds []string `json:"systemBinds,omitempty"`
	SessionSize int64    `json:"sessionSize"`
	TmpSize     int64    `json:"tmpSize"`
	// Namespaces besides the mount namespace (C has made them), and the hostname with uts.
	Namespaces []string `json:"namespaces,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	// WritableTmpfs: the root filesystem stays writable (changes in the session tmpfs).
	WritableTmpfs bool `json:"writableTmpfs,omitempty"`
	// Overlay: the caller's directory whose upper/ takes the changes, through fuse-overlayfs
	// run as the caller (the root filesystem stays writable).
	Overlay string `json:"overlay,omitempty"`
	// Seccomp is the policy's profile (security.seccomp_profile, read by stage 1 from the
	// admin's root-owned file; empty for none) and UserSeccomp the caller's own (read as the
	// caller): both are loaded, the caller's can only restrict further.
	Seccomp     json.RawMessage `json:"seccomp,omitempty"`
	SeccompPath string          `json:"seccompPath,omitempty"`
	UserSeccomp json.RawMessage `json:"userSeccomp,omitempty"`
	// Join: exec into a running instance (its namespaces, joined by C after checking the
	// process); nothing is built. Instance: this run starts instance Instance.
	Join     *PlanJoin `json:"join,omitempty"`
	Instance string    `json:"instance,omitempty"`
	// Capabilities the payload keeps (root's; none for users unless granted).
	Capabilities []string `json:"capabilities,omitempty"`
	NoNewPrivs   bool     `json:"noNewPrivs"`
	// Warnings for the caller, printed by stage 2 (stage 1's stderr is the caller's too, but
	// one place prints them all, in order).
	Warnings []string `json:"warnings,omitempty"`
}

// Caller is who runs the container, from the kernel's view of stage 1 and the passwd entry.
type Caller struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	Name   string   `json:"name"`
	Gecos  string   `json:"gecos,omitempty"`
	Home   string   `json:"home"`
	Shell  string   `json:"shell,omitempty"`
	// GroupName is the primary group's name, for /etc/group.
	GroupName string `json:"groupName,omitempty"`
}

// PlanJoin is a running instance to enter.
type PlanJoin struct {
	// User: join the instance's user namespace first (HPC mode without setuid).
	User       bool     `json:"user,omitempty"`
	PID        int      `json:"pid"`
	StartTime  uint64   `json:"startTime"`
	Namespaces []string `json:"namespaces"`
}

// PlanImage is the image, opened by stage 1 as the caller.
type PlanImage struct {
	FD     int    `json:"fd"`
	Path   string `json:"path"`
	Format string `json:"format"`
	// Offset and Size of the squashfs root filesystem in a SIF.
	Offset int64 `json:"offset,omitempty"`
	Size   int64 `json:"size,omitempty"`
	// FUSE: mount the squashfs with squashfuse, run as the caller, not with the kernel's
	// driver (images.kernel_squashfs: an image the caller could have written).
	FUSE bool `json:"fuse,omitempty"`
	// SharedLoop: another run of the same image may share the loop device.
	SharedLoop bool `json:"sharedLoop,omitempty"`
	// MaxLoop is the policy's max_loop_devices.
	MaxLoop int `json:"maxLoop"`
}

// PlanBind is a host directory or file, opened by stage 1 as the caller (O_PATH), bound at
// Dest in the container.
type PlanBind struct {
	FD       int    `json:"fd"`
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// What is for messages: "home", "tmp", "cwd", "bind".
	What string `json:"what"`
}

// PlanTmpfs is a tmpfs of Size bytes at Dest, owned by the caller (Mode 0700) or world
// writable with the sticky bit (01777).
type PlanTmpfs struct {
	Dest string `json:"dest"`
	Size int64  `json:"size"`
	Mode uint32 `json:"mode"`
	// Owned: owned by the caller (a contained home), else by root.
	Owned bool `json:"owned,omitempty"`
}

// encodePlan is the plan as stage 2 reads it: an envelope for the native engine.
func encodePlan(id string, p *Plan) ([]byte, error) {
	env, err := envelope.New(EngineName, id, p)
	if err != nil {
		return nil, err
	}
	return env.Encode()
}

// decodePlan reads stage 1's plan and checks the fds it names against those received.
func decodePlan(env *envelope.Envelope, nfds int) (*Plan, error) {
	var p Plan
	if err := envelope.DecodeConfig(env.Config, &p); err != nil {
		return nil, err
	}
	check := func(what string, fd int) error {
		if fd < 0 || fd >= nfds {
			return fmt.Errorf("%w: the plan's %s names fd %d of %d", envelope.ErrInvalid, what, fd, nfds)
		}
		return nil
	}
	if p.Join == nil {
		if err := check("image", p.Image.FD); err != nil {
			return nil, err
		}
	}
	for _, b := range p.Binds {
		if err := check(b.What+" bind", b.FD); err != nil {
			return nil, err
		}
	}
	return &p, nil
}
