/*
 * starter.h - what the C stage of the starter shares with its Go side.
 *
 * Paths come from builddir/config.h, written by ./mconfig and found through
 * CGO_CPPFLAGS="-I<builddir> -DKERR_HAVE_CONFIG_H" set by the Makefile. A plain `go build`
 * or `go test` has no config.h and gets the defaults below, which match buildcfg's defaults
 * (cmd/starter refuses to run when the two disagree).
 */
#ifndef KERR_STARTER_H
#define KERR_STARTER_H

#include <stddef.h>
#include <sys/types.h>

#ifdef KERR_HAVE_CONFIG_H
#include "config.h"
#endif

#ifndef KERR_PREFIX
#define KERR_PREFIX "/usr/local"
#endif
#ifndef KERR_SYSCONFDIR
#define KERR_SYSCONFDIR KERR_PREFIX "/etc"
#endif
#ifndef KERR_LIBEXECDIR
#define KERR_LIBEXECDIR KERR_PREFIX "/libexec"
#endif
#ifndef KERR_LOCALSTATEDIR
#define KERR_LOCALSTATEDIR KERR_PREFIX "/var"
#endif
#ifndef KERR_POLICY_FILE
#define KERR_POLICY_FILE KERR_SYSCONFDIR "/kerr/kerr.toml"
#endif
#ifndef KERR_VERSION
#define KERR_VERSION "0.0.0-dev"
#endif

/* Most fds --keep-fds may keep open (runc's --preserve-fds, for the payload). */
#define KERR_KEEP_FDS_MAX 1024

/* Largest config accepted on the config fd; equals envelope.MaxSize (a test checks). */
#define KERR_CONFIG_MAX (1 << 20)

/*
 * The starter's own exit codes. They are high so that they rarely collide with a payload's
 * status; once an engine runs a payload, the payload's status passes through instead.
 * starter-c/README.md is the documented copy of this table.
 */
enum kerr_exit {
	KERR_EXIT_DENIED = 5,   /* HPC mode: not the caller's to join (errdefs.ExitDenied) */
	KERR_EXIT_ENGINE = 252, /* the envelope names an engine this starter was not built with */
	KERR_EXIT_CONFIG = 253, /* the config is too large or not a valid envelope */
	KERR_EXIT_USAGE = 254,  /* bad command line, or the config fd is not usable */
	KERR_EXIT_FATAL = 255,  /* a privilege or process-setup step failed; nothing ran */
};

/*
 * The namespace plan: an optional binary preamble before the envelope on the config fd, for
 * the root-only starters that become a container's process. C applies it before Go starts,
 * because joining a user or mount namespace needs a single-threaded process and entering a
 * new pid namespace needs a fork. Layout, native byte order (writer and reader are one
 * machine's binaries): KERR_PLAN_MAGIC, u32 unshare_flags, u32 njoin, then njoin times
 * { u32 nstype, u32 len, len bytes of path }. rpc/nsplan is the Go writer.
 */
#define KERR_PLAN_MAGIC "KERRNS1\n"
#define KERR_PLAN_MAGIC_LEN 8
#define KERR_PLAN_MAX_JOIN 8

/*
 * Messages on the sync fd (a SOCK_SEQPACKET socket, one message per send): a u32 type, then
 * the payload. C uses the first four; the Go stages (starter/oci) use 16 and up.
 */
enum kerr_sync_type {
	KERR_SYNC_USERMAP = 1,      /* child -> parent: write my uid_map and gid_map now */
	KERR_SYNC_USERMAP_DONE = 2, /* parent -> child: the maps are written */
	KERR_SYNC_PID = 3,          /* child -> parent: payload int32, the pid of the process
	                               that went on into the new pid namespace */
	KERR_SYNC_ERROR = 4,        /* child -> parent: payload, one line of error text */
};

/*
 * HPC mode (the native engine): a config that starts with KERR_HPC_MAGIC (the frontend always
 * writes it; starter-suid takes nothing else for its privileged path) is handled in two
 * processes whose roles C fixes at fork time (DESIGN.md rule 2):
 *   stage 1, a child with the caller's ids only (saved ids dropped too), gets the request,
 *     checks it against the policy and the caller's rights, opens what the caller may open,
 *     and sends back on stage1_fd a plan: the HPC preamble below followed by an envelope,
 *     and up to KERR_HPC_MAX_FDS fds (SCM_RIGHTS), then exits 0;
 *   stage 2, the parent, takes root back (setresuid(0, 0, 0): the caller can no longer
 *     signal it), unshares the planned namespaces and hands Go the plan's envelope and fds.
 * With a new pid namespace, stage 2 runs as pid 2 of it under a C init (pid 1) that passes
 * signals on and reaps, and the process the caller started stays outside as a relay with the
 * caller's ids: both exit with the payload's status.
 */
#define KERR_HPC_MAGIC "KERRHPC1\n"
#define KERR_HPC_MAGIC_LEN 9
#define KERR_HPC_MAX_FDS 64

/*
 * The HPC preamble, stage 1 -> C, native byte order: KERR_HPC_PLAN_MAGIC, u32 mode
 * (KERR_HPC_RUN or KERR_HPC_INSTANCE), u32 flags to unshare (CLONE_NEWNS always, NEWPID,
 * NEWIPC, NEWUTS, NEWNET), u32 pid of an instance to join (0: none), u64 that process's
 * start time (clock ticks since boot, /proc/PID/stat field 22), u32 namespaces of it to join
 * (CLONE_NEWNS always, NEWPID, NEWIPC, NEWUTS, NEWNET). Joining and unsharing exclude each
 * other; an instance always has a new pid namespace. C checks that the process to join is
 * the caller's, runs this starter's program and started at that time before it opens any of
 * its namespaces (CVE-2019-11328: an instance file is the caller's to forge).
 */
#define KERR_HPC_PLAN_MAGIC "KERRHP1\n"
#define KERR_HPC_PLAN_MAGIC_LEN 8
#define KERR_HPC_PLAN_LEN (KERR_HPC_PLAN_MAGIC_LEN + 4 + 4 + 4 + 8 + 4)
enum kerr_hpc_mode {
	KERR_HPC_RUN = 0,      /* exec, run, shell, or exec into an instance */
	KERR_HPC_INSTANCE = 1, /* start an instance: daemonized once stage 2 is ready */
};
/* Stage 2 of an instance writes one of these on ready_fd: ready (right before exec), or
 * failed, followed by one byte, its exit code. */
#define KERR_HPC_READY 'R'
#define KERR_HPC_FAILED 'E'

enum kerr_role {
	KERR_ROLE_PLAIN = 0,  /* one process, as exec'd (oci, bundle; the setuid front door) */
	KERR_ROLE_STAGE1 = 1, /* HPC stage 1: the caller's ids only; sends the plan */
	KERR_ROLE_STAGE2 = 2, /* HPC stage 2: root, in the planned namespaces */
};

/* What the constructor found and did, for the Go side to read once the runtime is up. */
struct kerr_stage0 {
	int suid_build;         /* this binary is starter-suid (built with the suid tag) */
	int dropped;            /* real and effective ids differed at exec: effective ids were
	                           dropped to the real ones, the old effective ids kept as saved */
	uid_t uid;              /* the caller: real uid and gid at exec */
	gid_t gid;
	unsigned char *config;  /* the bytes read from the config fd (malloc'd) */
	size_t config_len;
	size_t config_off;      /* where the envelope starts (after a namespace plan) */
	int sync_fd;            /* --sync-fd N, or -1 */
	int keep_fds;           /* --keep-fds K: fds 3 .. 3+K-1 stay open for the payload */
	int planned;            /* a namespace plan was applied */
	int role;               /* enum kerr_role */
	int stage1_fd;          /* stage 1: the socket to send the plan on, else -1 */
	int passed_fds[KERR_HPC_MAX_FDS]; /* stage 2: the fds stage 1 sent, in order */
	int npassed;
	int ready_fd;           /* stage 2 of an instance: tells C it is ready, or why not */
	int joined;             /* stage 2 joined an instance: its container is already built */
	int userns;             /* HPC mode without privileges: stage 2 runs in a user namespace */
	int planned_userns;     /* ... and that user namespace exists (the relays may stay dumpable) */
};

extern struct kerr_stage0 kerr_stage0;

/* The compile-time paths, as C saw them, for the consistency check in cmd/starter. */
const char *kerr_build_value(int which);
enum kerr_build_key {
	KERR_BUILD_PREFIX,
	KERR_BUILD_SYSCONFDIR,
	KERR_BUILD_LIBEXECDIR,
	KERR_BUILD_LOCALSTATEDIR,
	KERR_BUILD_POLICY_FILE,
	KERR_BUILD_VERSION,
};

/* Copies the config into dst (at most cap bytes), then wipes and frees the C buffer; returns
 * the number of bytes copied. Later calls copy nothing. */
size_t kerr_stage0_take_config(unsigned char *dst, size_t cap);

#endif
