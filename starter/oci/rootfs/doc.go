// Package rootfs builds an OCI container's filesystem (runtime spec, Linux) and enters it:
// what runc's libcontainer/rootfs_linux.go and crun's linux.c do between the new mount
// namespace and the exec of the payload.
//
// Validate checks a spec's filesystem settings at create time without touching the kernel.
// Setup runs in the container's init process, in its new mount namespace, and does in
// order: the propagation of / (linux.rootfsPropagation, rslave by default), a recursive
// bind of the rootfs onto itself, every entry of mounts, /dev (default devices,
// linux.devices, symlinks, /dev/ptmx, the console), the engine's BeforePivot hook,
// pivot_root (or move and chroot), then linux.readonlyPaths, linux.maskedPaths and
// root.readonly. WriteSysctls writes linux.sysctl afterwards.
//
// The image is not trusted (DESIGN rule 3, fds not paths). Every path of the container is
// resolved inside the rootfs, never by joining strings, and opened without following
// symlinks; mounts are built detached with the new mount API (fsopen/fsmount, open_tree),
// given their flags with mount_setattr, and moved onto the fd of their mount point, so no
// path is resolved twice. The fixes for the runc CVEs of November 2025 are built in: masking
// binds the host's /dev/null checked to be the null device (CVE-2025-31133), /dev/console
// must not be a symlink and is bound from a checked pty fd (CVE-2025-52565), and sysctls
// are written through a checked, non-recursive copy of the /proc mount (CVE-2025-52881).
//
// Supported mount types: bind and rbind (by type "bind" or the bind/rbind options), proc,
// sysfs, tmpfs, devpts, mqueue, cgroup (cgroup2 on a unified host, runc's tmpfs layout of
// the v1 hierarchies otherwise), cgroup2, overlay and any other filesystem the kernel knows.
// Options: ro, rw, [no]suid, [no]dev, [no]exec, [no]diratime, [no]symfollow, atime,
// noatime, [no]relatime, [no]strictatime, sync, async, dirsync, mand, nomand, defaults,
// remount, bind, rbind, the propagation options ([r]private, [r]shared, [r]slave,
// [r]unbindable), the recursive attributes (rro, rrw, rnosuid, …); other options are the
// filesystem's own ("mode=755"). Refused: tmpcopyup, id-mapped mounts (idmap, ridmap,
// uidMappings, gidMappings), linux.mountLabel, unknown options on bind mounts.
//
// Needs Linux 5.12 (openat2, the new mount API, mount_setattr).
package rootfs
