// Package runtimespec writes the OCI runtime configuration (a bundle's config.json) that
// `kerr oci mount SIF BUNDLE` leaves next to the rootfs: the image's own process (from its
// OCI image config, or Singularity's run action), under defaults a container runtime is
// expected to have.
//
// The defaults, and why:
//   - process: terminal false, so no TERM; PATH set when the image sets none; cwd "/" unless
//     WORKDIR says otherwise; no_new_privs; RLIMIT_NOFILE 1024 soft and hard, or the
//     caller's hard limit where that is lower (raising a hard limit needs CAP_SYS_RESOURCE,
//     which a root without it, in a VM or a nested container, lacks, and the container
//     would then fail to start).
//   - capabilities: Docker's default set of 14 in bounding, effective and permitted;
//     inheritable and ambient empty, so a non-root USER gets none after exec.
//   - namespaces: pid, network, ipc, uts, mount and cgroup. The cgroup namespace makes
//     /proc/self/cgroup and /sys/fs/cgroup show the container's own subtree instead of the
//     host's layout (runc's and Docker's default on cgroup v2); it costs nothing on v1.
//     No user namespace: this is the root-only OCI engine's config.
//   - hostname "kerr" unless Options.Hostname says otherwise. An OCI image config has no
//     hostname to derive one from.
//   - mounts, masked and read-only paths: what runc and crun give every container; the
//     device cgroup denies every device, so only the runtime's default devices work.
//   - seccomp: only when Options.SeccompProfile names a file; kerr's default profile is
//     etc/kerr/seccomp.json. Generate copies the profile into config.json, so the bundle
//     keeps working when an admin edits the file later.
//
// kerr's default seccomp profile (etc/kerr/seccomp.json, installed for admins to edit; JSON
// has no comments, so its reasons are here). Everything not listed fails with EPERM. Its
// rules, in file order: files, memory, processes and ids, signals, time, event loops and AIO,
// sockets, SysV and POSIX IPC, the 32-bit and arm-only names (for x86, x32 and arm
// binaries), debugging, NUMA; then the filtered ones.
//   - Left out: what needs a capability the container does not get or reaches the whole
//     host: mount and the new mount API, pivot_root, setns, kexec, modules, reboot, swap,
//     bpf, perf_event_open, the keyring, open_by_handle_at, clock setting, syslog, quotactl,
//     iopl/ioperm, userfaultfd, fanotify, kcmp, modify_ldt. specs.LinuxSeccomp has no
//     capability conditions, so a container granted CAP_SYS_ADMIN needs its own profile.
//   - clone is allowed only when no namespace flag is set (arg 0 masked with 0x7E020000 is
//     0); unshare likewise, CLONE_NEWTIME included, so unshare(CLONE_FS|CLONE_FILES) works.
//   - clone3 fails with ENOSYS: its flags sit in memory a filter cannot read, and the C
//     library then falls back to clone.
//   - io_uring_setup, io_uring_enter and io_uring_register fail with ENOSYS, so programs
//     fall back to epoll and threads: io_uring has had a long run of privilege-escalation
//     bugs, and Docker's default profile and Google's production kernels leave it out too.
//     epoll, poll, select and Linux AIO are allowed.
//   - ptrace, process_vm_readv and process_vm_writev are allowed: debuggers and MPI's
//     single-copy transfers (CMA) need them, the kernel's ptrace access checks still apply,
//     and since Linux 4.8 a tracer cannot use ptrace to skip seccomp.
//   - NUMA placement (mbind, set_mempolicy, get_mempolicy, move_pages, migrate_pages) and
//     sched_setaffinity are allowed: HPC jobs pin memory and threads.
//   - personality only for PER_LINUX, PER_LINUX32, UNAME26, both, and the 0xffffffff query.
//   - Names newer than the libseccomp a runtime links against are skipped by runtimes, so
//     the file can list syscalls from new kernels (fchmodat2, cachestat, map_shadow_stack);
//     every name is one libseccomp 2.5.4 knows.
//
// Image content is hostile: ReadAccounts resolves /etc/passwd and /etc/group inside the
// rootfs (openat2 RESOLVE_IN_ROOT, or filepath-securejoin's safe emulation on older
// kernels), so an image's symlink cannot make kerr read a host file.
//
// Privileges: none needed. The bundle engine calls this package as root, which is why
// nothing here follows a path out of the image's rootfs.
package runtimespec
