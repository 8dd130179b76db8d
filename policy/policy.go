// Package policy is kerr's admin policy: the TOML file at buildcfg.PolicyFile(), its typed
// form with safe defaults, strict parsing, and loading with ownership checks.
//
// The starter's stage 1 is the authority that loads it (HPC mode); the frontend loads it only
// to give early, friendly errors, and `kerr policy check` to validate a file. Nothing here
// needs privileges: every function runs with whatever privileges its caller has.
package policy

// Policy is the whole file. Every field has a default (Default); a file need not set all of
// them, but the shipped etc/kerr/kerr.toml sets every one to its default.
type Policy struct {
	Access       Access       `toml:"access"`
	Images       Images       `toml:"images"`
	Mounts       Mounts       `toml:"mounts"`
	Namespaces   Namespaces   `toml:"namespaces"`
	Capabilities Capabilities `toml:"capabilities"`
	Security     Security     `toml:"security"`
}

// Access says who may use kerr and through which starter. Root is never refused.
type Access struct {
	// AllowSetuid lets non-root users run containers through starter-suid.
	AllowSetuid bool `toml:"allow_setuid"`
	// AllowUserNamespaces lets non-root users run containers in a user namespace with the
	// unprivileged starter.
	AllowUserNamespaces bool `toml:"allow_user_namespaces"`
	// Users and Groups, when either is non-empty, are the only non-root callers allowed
	// (by name; a caller is allowed when listed or in a listed group).
	Users  []string `toml:"users"`
	Groups []string `toml:"groups"`
}

// Images says which images may be run and how they are mounted.
type Images struct {
	// Formats is the set of image formats non-root users may run: "sif", "sandbox".
	Formats []string `toml:"formats"`
	// KernelSquashfs is when a setuid run mounts a SIF's squashfs with the kernel driver:
	// "always", "root-owned" (only images owned by root and not writable by group or others;
	// others go through squashfuse) or "never" (squashfuse only).
	KernelSquashfs string `toml:"kernel_squashfs"`
	// LimitOwners, LimitGroups: when non-empty, non-root users may run only images owned by
	// one of these users / groups.
	LimitOwners []string `toml:"limit_owners"`
	LimitGroups []string `toml:"limit_groups"`
	// LimitPaths: when non-empty, non-root users may run only images under these directories.
	LimitPaths []string `toml:"limit_paths"`
	// MaxLoopDevices is the highest loop device number kerr uses (1..4096).
	MaxLoopDevices int `toml:"max_loop_devices"`
	// SharedLoopDevices lets concurrent runs of the same unchanged image share a loop device.
	SharedLoopDevices bool `toml:"shared_loop_devices"`
}

// Dev values of Mounts.Dev.
const (
	DevYes     = "yes"
	DevNo      = "no"
	DevMinimal = "minimal"
)

// Mounts says what the container sees of the host.
type Mounts struct {
	Proc bool `toml:"proc"`
	Sys  bool `toml:"sys"`
	// Dev is "yes" (the host's /dev), "minimal" (a tmpfs with null, zero, random, urandom,
	// tty, full, shm and the devpts) or "no".
	Dev    string `toml:"dev"`
	Devpts bool   `toml:"devpts"`
	Home   bool   `toml:"home"`
	Tmp    bool   `toml:"tmp"`
	// Hostfs binds every host filesystem mount point into the container.
	Hostfs bool `toml:"hostfs"`
	// SystemBinds are host paths always bound at the same path (absent ones are skipped).
	SystemBinds []string `toml:"system_binds"`
	// UserBinds lets users bind host paths of their own (--bind).
	UserBinds bool `toml:"user_binds"`
	// UserBindAllow: when non-empty, a user's bind source must be one of these or beneath
	// one. UserBindDeny: a source that is one of these, beneath one, or above one is refused.
	UserBindAllow []string `toml:"user_bind_allow"`
	UserBindDeny  []string `toml:"user_bind_deny"`
	// Passwd, Group, ResolvConf: give the container an /etc/passwd and /etc/group with the
	// caller's entry added, and the host's /etc/resolv.conf.
	Passwd     bool `toml:"passwd"`
	Group      bool `toml:"group"`
	ResolvConf bool `toml:"resolv_conf"`
	// SessionSize is the size of the tmpfs holding the container's session directory
	// (overlay upper layer, generated files); TmpSize of the tmpfs at /tmp and /var/tmp when
	// the host's are not bound. Sizes: a number with an optional k, m, g or t suffix
	// (powers of 1024), 1m to 1t.
	SessionSize string `toml:"session_size"`
	TmpSize     string `toml:"tmp_size"`
}

// Namespaces says which namespaces users may ask for; root may ask for any.
type Namespaces struct {
	// Allow: namespaces every user may ask for ("pid", "ipc", "uts", "net", "cgroup").
	Allow []string `toml:"allow"`
	// Grant: more namespaces for named users and groups.
	Grant []NamespaceGrant `toml:"grant"`
}

// NamespaceGrant gives Namespaces to the listed users and the members of the listed groups.
type NamespaceGrant struct {
	Users      []string `toml:"users"`
	Groups     []string `toml:"groups"`
	Namespaces []string `toml:"namespaces"`
}

// Capabilities says which capabilities a container's payload keeps.
type Capabilities struct {
	// RootKeeps: what root's payload keeps when it asks for nothing else.
	RootKeeps []string `toml:"root_keeps"`
	// Grant: capabilities named users and groups may ask for; no user gets any by default.
	Grant []CapabilityGrant `toml:"grant"`
}

// CapabilityGrant lets the listed users and the members of the listed groups ask for
// Capabilities.
type CapabilityGrant struct {
	Users        []string `toml:"users"`
	Groups       []string `toml:"groups"`
	Capabilities []string `toml:"capabilities"`
}

// Security holds the last steps before the payload runs.
type Security struct {
	// SeccompProfile: "default" ($sysconfdir/kerr/seccomp.json), "none", or an absolute path
	// to a runtime-spec LinuxSeccomp JSON file.
	SeccompProfile string `toml:"seccomp_profile"`
	// NoNewPrivs forces no_new_privs on every payload, root's included; users' payloads get it
	// in any case.
	NoNewPrivs bool `toml:"no_new_privs"`
}

// Default is the policy used for every key a file does not set; etc/kerr/kerr.toml spells
// it out. Its slices are empty, not nil, so that it equals a parse of that file.
func Default() *Policy {
	return &Policy{
		Access: Access{
			AllowSetuid:         true,
			AllowUserNamespaces: true,
			Users:               []string{},
			Groups:              []string{},
		},
		Images: Images{
			Formats:           []string{"sif", "sandbox"},
			KernelSquashfs:    "root-owned",
			LimitOwners:       []string{},
			LimitGroups:       []string{},
			LimitPaths:        []string{},
			MaxLoopDevices:    256,
			SharedLoopDevices: true,
		},
		Mounts: Mounts{
			Proc:          true,
			Sys:           true,
			Dev:           DevYes,
			Devpts:        true,
			Home:          true,
			Tmp:           true,
			Hostfs:        false,
			SystemBinds:   []string{"/etc/localtime", "/etc/hosts"},
			UserBinds:     true,
			UserBindAllow: []string{},
			UserBindDeny: []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d",
				"/etc/ssh", "/root", "/proc", "/sys", "/boot"},
			Passwd:      true,
			Group:       true,
			ResolvConf:  true,
			SessionSize: "64m",
			TmpSize:     "256m",
		},
		Namespaces: Namespaces{
			Allow: []string{"pid", "ipc", "uts"},
			Grant: []NamespaceGrant{},
		},
		Capabilities: Capabilities{
			RootKeeps: []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
				"CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
				"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"},
			Grant: []CapabilityGrant{},
		},
		Security: Security{
			SeccompProfile: "default",
			NoNewPrivs:     true,
		},
	}
}
