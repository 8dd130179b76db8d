/*
 * starter.c - stage 0 of kerr's starter: the C that runs before the Go runtime.
 *
 * The constructor below runs when the dynamic loader initialises the program, before Go
 * starts any thread. In setuid mode it is the only code that ever runs with the effective uid
 * of root, and all it does there is give it up. See README.md for the stages and the
 * config-fd protocol. Every call's result is checked; any failure writes one line to stderr
 * and exits with a code from enum kerr_exit, before any Go code has run.
 *
 * Only cmd/starter may link this package: the constructor runs in any program that does.
 */
#define _GNU_SOURCE
#include "starter.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __GLIBC__
#error "the starter relies on glibc passing argc, argv and envp to constructors"
#endif

struct kerr_stage0 kerr_stage0 = {.sync_fd = -1, .stage1_fd = -1, .ready_fd = -1};

static void send_error(const char *line, size_t len);

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* die writes "starter: <message>" as one line to stderr and exits without running atexit
 * handlers. Privileges: any; safe while still privileged (it only writes and exits). */
static void die(int code, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "starter: ");
	if (n < 0)
		n = 0;
	va_start(ap, fmt);
	if (vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap) < 0)
		line[n] = '\0';
	va_end(ap);
	n = (int)strlen(line);
	send_error(line, (size_t)n);
	line[n++] = '\n';
	/* One write so the line is not interleaved; if stderr is gone there is no one to tell. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		_exit(code);
	_exit(code);
}

/* set_nondumpable keeps other processes of the caller from ptracing us or reading our memory
 * while we hold a saved uid of root. Privileges: any. */
static void set_nondumpable(void)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		die(KERR_EXIT_FATAL, "prctl(PR_SET_DUMPABLE, 0): %m");
}

/* ensure_stdio opens /dev/null on any of fds 0-2 the caller closed, so that no file we open
 * later can land on stderr and receive our messages. Privileges: any (the opened file is
 * /dev/null). */
static void ensure_stdio(void)
{
	int fd, nfd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1)
			continue;
		if (errno != EBADF)
			die(KERR_EXIT_FATAL, "checking fd %d: %m", fd);
		nfd = open("/dev/null", O_RDWR);
		if (nfd < 0)
			_exit(KERR_EXIT_FATAL); /* stderr may be the fd we failed to open */
		if (nfd != fd)
			die(KERR_EXIT_FATAL, "opening /dev/null on fd %d gave fd %d", fd, nfd);
	}
}

/* drop_privileges sets the effective uid and gid to the caller's real ones, keeping the old
 * effective ids as saved ids so that later stages can regain them where the policy allows.
 * A starter built without the suid tag refuses to run setuid at all (DESIGN rule 4: root-only
 * engines are not reachable through a setuid binary). Privileges: entered with whatever the
 * exec gave; leaves with the caller's effective ids. */
static void drop_privileges(void)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (getresuid(&ruid, &euid, &suid) != 0)
		die(KERR_EXIT_FATAL, "getresuid: %m");
	if (getresgid(&rgid, &egid, &sgid) != 0)
		die(KERR_EXIT_FATAL, "getresgid: %m");
	kerr_stage0.uid = ruid;
	kerr_stage0.gid = rgid;
	if (ruid == euid && rgid == egid)
		return;
#ifndef KERR_SUID
	die(KERR_EXIT_FATAL, "this starter is installed setuid or setgid; only starter-suid may be");
#endif
	/* Groups first: once the effective uid is the caller's we could no longer change them. */
	if (setresgid(rgid, rgid, egid) != 0)
		die(KERR_EXIT_FATAL, "setresgid(%u, %u, %u): %m", rgid, rgid, egid);
	if (setresuid(ruid, ruid, euid) != 0)
		die(KERR_EXIT_FATAL, "setresuid(%u, %u, %u): %m", ruid, ruid, euid);
	/* Trust the kernel's answer, not the calls' return values alone. */
	if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0)
		die(KERR_EXIT_FATAL, "reading back ids: %m");
	if (ruid != kerr_stage0.uid || euid != kerr_stage0.uid || rgid != kerr_stage0.gid ||
	    egid != kerr_stage0.gid)
		die(KERR_EXIT_FATAL, "ids after the drop are uid %u/%u/%u gid %u/%u/%u", ruid, euid,
		    suid, rgid, egid, sgid);
	kerr_stage0.dropped = 1;
}

/* wipe_environment removes every variable the caller set, both from libc's environ and from
 * the initial stack array the Go runtime reads its environment from (GODEBUG, GOTRACEBACK,
 * GOMAXPROCS, ... must not reach it). Nothing is kept. Entries are pointed at "" rather than
 * removed, as Go ignores empty entries: Go finds the auxiliary vector just past the array's
 * terminating NULL, so the array must keep its length. Privileges: the caller's. */
static void wipe_environment(char **envp)
{
	static char empty[] = "";
	char **e, **gap;
	int i;

	if (envp == NULL)
		die(KERR_EXIT_FATAL, "no environment array from the loader");
	for (e = envp; *e != NULL; e++)
		*e = empty;
	/*
	 * In setuid mode the loader deletes unsafe variables (LD_*, GCONV_PATH, ...) by shifting
	 * the array down, which leaves one NULL per deleted variable before the auxiliary vector.
	 * Go would then read a NULL as the vector and miss AT_SECURE (its own setuid hardening),
	 * AT_RANDOM and the vDSO. Fill the extra NULLs with "" too, but only when the words after
	 * them really are the vector: its first entry must be what getauxval reports.
	 */
	for (gap = e, i = 0; gap[1] == NULL && i < 256; gap++, i++)
		;
	if (gap > e && gap[1] != NULL) {
		unsigned long *auxv = (unsigned long *)(gap + 1);

		errno = 0;
		if (auxv[0] != 0 && getauxval(auxv[0]) == auxv[1] && errno == 0)
			for (; e < gap; e++)
				*e = empty;
	}
	if (clearenv() != 0)
		die(KERR_EXIT_FATAL, "clearenv failed");
}

/* parse_fd accepts a decimal fd number without sign or leading zeros; -1 otherwise.
 * Privileges: none used. */
static int parse_fd(const char *s)
{
	long v = 0;

	if (*s < '1' || *s > '9')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return -1;
	}
	return (int)v;
}

/* parse_number parses a decimal count without sign or leading zeros ("0" allowed); -1
 * otherwise. Privileges: none used. */
static int parse_count(const char *s)
{
	if (strcmp(s, "0") == 0)
		return 0;
	return parse_fd(s);
}

/* parse_args accepts `starter --config-fd N [--sync-fd M] [--keep-fds K]`: N and M >= 3,
 * distinct, open, and above the K kept fds 3 .. 3+K-1. The sync fd and kept fds are for the
 * root-only starters that become a container's process (and the runtime processes on the
 * way to it); a setuid starter refuses both, as it takes no namespace plan. Privileges: the
 * caller's. */
static int parse_args(int argc, char **argv)
{
	int fd, sfd = -1, keep = 0, i, v;

	if (argc < 3 || (argc % 2) != 1 || argv == NULL || argv[1] == NULL ||
	    strcmp(argv[1], "--config-fd") != 0)
		die(KERR_EXIT_USAGE, "usage: starter --config-fd N (it is started by kerr, not by hand)");
	fd = parse_fd(argv[2]);
	if (fd < 3)
		die(KERR_EXIT_USAGE, "--config-fd wants a decimal fd number of 3 or more");
	for (i = 3; i + 1 < argc; i += 2) {
		if (argv[i] == NULL || argv[i + 1] == NULL)
			die(KERR_EXIT_USAGE, "usage: starter --config-fd N [--sync-fd M] [--keep-fds K]");
		if (kerr_stage0.suid_build || kerr_stage0.dropped)
			die(KERR_EXIT_USAGE, "%s is refused in setuid mode", argv[i]);
		if (strcmp(argv[i], "--sync-fd") == 0 && sfd < 0) {
			sfd = parse_fd(argv[i + 1]);
			if (sfd < 3 || sfd == fd)
				die(KERR_EXIT_USAGE, "--sync-fd wants a decimal fd number of 3 or more, not the config fd");
			if (fcntl(sfd, F_GETFD) == -1)
				die(KERR_EXIT_USAGE, "sync fd %d: %m", sfd);
		} else if (strcmp(argv[i], "--keep-fds") == 0 && keep == 0) {
			v = parse_count(argv[i + 1]);
			if (v < 0 || v > KERR_KEEP_FDS_MAX)
				die(KERR_EXIT_USAGE, "--keep-fds wants a count of 0 to %d", KERR_KEEP_FDS_MAX);
			keep = v;
		} else {
			die(KERR_EXIT_USAGE, "usage: starter --config-fd N [--sync-fd M] [--keep-fds K]");
		}
	}
	if (fd < 3 + keep || (sfd >= 0 && sfd < 3 + keep))
		die(KERR_EXIT_USAGE, "the config and sync fds must come after the %d kept fds", keep);
	if (fcntl(fd, F_GETFD) == -1)
		die(KERR_EXIT_USAGE, "config fd %d: %m", fd);
	/* Kept fds must be there: the Go runtime would otherwise open its own at those numbers
	 * and the engine hand them on as the caller's. */
	for (v = 3; v < 3 + keep; v++)
		if (fcntl(v, F_GETFD) == -1)
			die(KERR_EXIT_USAGE, "kept fd %d: %m", v);
	kerr_stage0.sync_fd = sfd;
	kerr_stage0.keep_fds = keep;
	return fd;
}

/* close_fds_proc is the fallback for kernels without close_range (before 5.9): walk
 * /proc/self/fd. Closing while walking is safe: the kernel lists fds by number.
 * Privileges: the caller's. */
static void close_fds_proc(const int keep[2])
{
	struct dirent *de;
	DIR *d;
	int dfd, fd;

	d = opendir("/proc/self/fd");
	if (d == NULL)
		die(KERR_EXIT_FATAL, "close_range is unsupported and /proc/self/fd: %m");
	dfd = dirfd(d);
	if (dfd < 0)
		die(KERR_EXIT_FATAL, "dirfd: %m");
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		fd = parse_fd(de->d_name);
		if (fd < 3 + kerr_stage0.keep_fds || fd == keep[0] || fd == keep[1] || fd == dfd)
			continue;
		if (close(fd) != 0 && errno != EBADF && errno != EINTR)
			die(KERR_EXIT_FATAL, "closing fd %d: %m", fd);
	}
	if (errno != 0)
		die(KERR_EXIT_FATAL, "reading /proc/self/fd: %m");
	if (closedir(d) != 0)
		die(KERR_EXIT_FATAL, "closedir /proc/self/fd: %m");
}

/* close_between closes fds lo..hi (inclusive) with close_range, falling back to a walk of
 * /proc/self/fd that keeps every fd in keep[]. Privileges: the caller's. */
static void close_between(unsigned lo, unsigned hi, const int keep[2])
{
	if (lo > hi)
		return;
	if (syscall(SYS_close_range, lo, hi, 0U) == 0)
		return;
	if (errno != ENOSYS)
		die(KERR_EXIT_FATAL, "close_range: %m");
	close_fds_proc(keep);
}

/* close_fds closes every fd but 0, 1, 2, the kept fds 3 .. 3+keep_fds-1 and the ones in
 * keep[] (-1 for none; above the kept range), so that nothing the caller left open
 * (CVE-2024-21626 style: a directory fd of the host) reaches the Go side, the container or
 * the payload unless it was asked to. Privileges: the caller's. */
static void close_fds(int keep0, int keep1)
{
	int keep[2] = {keep0, keep1};
	unsigned lo = 3U + (unsigned)kerr_stage0.keep_fds;

	if (keep[1] >= 0 && keep[1] < keep[0]) {
		keep[0] = keep1;
		keep[1] = keep0;
	}
	close_between(lo, (unsigned)keep[0] - 1, keep);
	if (keep[1] < 0) {
		close_between((unsigned)keep[0] + 1, ~0U, keep);
		return;
	}
	close_between((unsigned)keep[0] + 1, (unsigned)keep[1] - 1, keep);
	close_between((unsigned)keep[1] + 1, ~0U, keep);
}

/* read_config reads the whole config from fd, at most KERR_CONFIG_MAX bytes, then closes
 * fd. The bytes are untrusted; the Go side decodes and validates them. A non-blocking fd is
 * waited on with poll rather than changed, since its file status flags are shared with the
 * caller. Privileges: the caller's. */
static void read_config(int fd)
{
	const size_t cap = (size_t)KERR_CONFIG_MAX + 1;
	unsigned char *buf;
	size_t len = 0;
	ssize_t n;
	struct pollfd p;

	buf = malloc(cap);
	if (buf == NULL)
		die(KERR_EXIT_FATAL, "allocating the config buffer: %m");
	while (len < cap) {
		n = read(fd, buf + len, cap - len);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			die(KERR_EXIT_USAGE, "reading config fd %d: %m", fd);
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			die(KERR_EXIT_USAGE, "waiting for config fd %d: %m", fd);
	}
	if (len > KERR_CONFIG_MAX)
		die(KERR_EXIT_CONFIG, "invalid engine config: more than %d bytes", KERR_CONFIG_MAX);
	/* On Linux the fd is released even when close reports EINTR. */
	if (close(fd) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "closing config fd %d: %m", fd);
	kerr_stage0.config = buf;
	kerr_stage0.config_len = len;
}

/* send_error passes a fatal error line to the parent on the sync fd, when there is one, so
 * that the runtime can report why a container's process died before Go ran. Best effort:
 * die() prints the line on stderr too. Privileges: any. */
static void send_error(const char *line, size_t len)
{
	unsigned char msg[4 + 512];
	uint32_t type = KERR_SYNC_ERROR;

	if (kerr_stage0.sync_fd < 0)
		return;
	if (len > sizeof(msg) - 4)
		len = sizeof(msg) - 4;
	memcpy(msg, &type, 4);
	memcpy(msg + 4, line, len);
	(void)send(kerr_stage0.sync_fd, msg, 4 + len, MSG_NOSIGNAL);
}

/* sync_send sends a message of type with an optional int32 payload. Privileges: any. */
static void sync_send(uint32_t type, const int32_t *value)
{
	unsigned char msg[8];
	size_t len = 4;

	memcpy(msg, &type, 4);
	if (value != NULL) {
		memcpy(msg + 4, value, 4);
		len = 8;
	}
	if (send(kerr_stage0.sync_fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		die(KERR_EXIT_FATAL, "sync: sending message %u: %m", type);
}

/* sync_wait reads one message and dies unless it is of type want. Privileges: any. */
static void sync_wait(uint32_t want)
{
	unsigned char msg[64];
	uint32_t type;
	ssize_t n;

	do
		n = recv(kerr_stage0.sync_fd, msg, sizeof(msg), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		die(KERR_EXIT_FATAL, "sync: waiting for message %u: %m", want);
	if (n < 4)
		die(KERR_EXIT_FATAL, "sync: the parent went away while we waited for message %u", want);
	memcpy(&type, msg, 4);
	if (type != want)
		die(KERR_EXIT_FATAL, "sync: got message %u, want %u", type, want);
}

/* The namespace types a plan may name; anything else is refused. */
#define KERR_NS_ALL                                                                            \
	(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | \
	 CLONE_NEWCGROUP | CLONE_NEWTIME)

/* plan_u32 reads a u32 at *off of the config, advancing *off; dies when it would run past the
 * end. Privileges: none used. */
static uint32_t plan_u32(size_t *off)
{
	uint32_t v;

	if (kerr_stage0.config_len - *off < 4)
		die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan is truncated");
	memcpy(&v, kerr_stage0.config + *off, 4);
	*off += 4;
	return v;
}

/* apply_plan applies a namespace plan found at the start of the config: it opens every
 * namespace to join (paths name the caller's view, so all are opened before any setns),
 * joins them with the user namespace first (so that the others are joined with the
 * capabilities it gives), unshares a new user namespace and has the parent write its maps,
 * unshares the other new namespaces, and forks into a new or joined pid (or time) namespace.
 * The fork uses CLONE_PARENT, so the process that goes on is the parent's child, as the
 * runtime must wait for it; the one in between reports its pid and exits. Only root's
 * unprivileged starter takes a plan (the caller checks). Privileges: root; joins and
 * creates namespaces. */
static void apply_plan(void)
{
	int fds[KERR_PLAN_MAX_JOIN];
	uint32_t types[KERR_PLAN_MAX_JOIN];
	char path[PATH_MAX];
	size_t off = KERR_PLAN_MAGIC_LEN;
	uint32_t unshare_flags, njoin, i, len, joined = 0;
	int pass, gate[2];
	pid_t pid;

	unshare_flags = plan_u32(&off);
	njoin = plan_u32(&off);
	if ((unshare_flags & ~(uint32_t)KERR_NS_ALL) != 0)
		die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: unknown flags %#x",
		    unshare_flags & ~(uint32_t)KERR_NS_ALL);
	if (njoin > KERR_PLAN_MAX_JOIN)
		die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: %u namespaces to join", njoin);
	if (kerr_stage0.sync_fd < 0 && (unshare_flags & CLONE_NEWUSER))
		die(KERR_EXIT_USAGE, "a namespace plan with a new user namespace needs --sync-fd");
	for (i = 0; i < njoin; i++) {
		types[i] = plan_u32(&off);
		len = plan_u32(&off);
		if (types[i] == 0 || (types[i] & (types[i] - 1)) != 0 ||
		    (types[i] & ~(uint32_t)KERR_NS_ALL) != 0)
			die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: bad type %#x", types[i]);
		if (len == 0 || len >= sizeof(path) || kerr_stage0.config_len - off < len)
			die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: bad path length");
		memcpy(path, kerr_stage0.config + off, len);
		path[len] = '\0';
		off += len;
		if (strlen(path) != len || path[0] != '/')
			die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: bad path");
		if (joined & types[i])
			die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan: %s joined twice", path);
		joined |= types[i];
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			die(KERR_EXIT_FATAL, "open namespace %s: %m", path);
	}
	if (joined & unshare_flags)
		die(KERR_EXIT_CONFIG, "invalid engine config: namespace plan both joins and creates %#x",
		    joined & unshare_flags);
	/* Pass 0 joins the user namespace, pass 1 the others. */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < njoin; i++) {
			if ((types[i] == CLONE_NEWUSER) != (pass == 0))
				continue;
			if (setns(fds[i], (int)types[i]) != 0)
				die(KERR_EXIT_FATAL, "setns(%#x): %m", types[i]);
			if (close(fds[i]) != 0 && errno != EINTR)
				die(KERR_EXIT_FATAL, "close namespace fd: %m");
		}
	if (unshare_flags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) != 0)
			die(KERR_EXIT_FATAL, "unshare(CLONE_NEWUSER): %m");
		sync_send(KERR_SYNC_USERMAP, NULL);
		sync_wait(KERR_SYNC_USERMAP_DONE);
		/* Become root of the new namespace when the maps have one; otherwise the process keeps
		 * the full capability set unshare gave it until it execs. */
		if (setresgid(0, 0, 0) != 0 && errno != EINVAL)
			die(KERR_EXIT_FATAL, "setresgid(0) in the user namespace: %m");
		if (setresuid(0, 0, 0) != 0 && errno != EINVAL)
			die(KERR_EXIT_FATAL, "setresuid(0) in the user namespace: %m");
		set_nondumpable();
	}
	if ((unshare_flags & ~(uint32_t)CLONE_NEWUSER) != 0 &&
	    unshare((int)(unshare_flags & ~(uint32_t)CLONE_NEWUSER)) != 0)
		die(KERR_EXIT_FATAL, "unshare(%#x): %m", unshare_flags & ~(uint32_t)CLONE_NEWUSER);
	kerr_stage0.config_off = off;
	kerr_stage0.planned = 1;
	if (((unshare_flags | joined) & (CLONE_NEWPID | CLONE_NEWTIME)) == 0)
		return;
	if (kerr_stage0.sync_fd < 0)
		die(KERR_EXIT_USAGE, "a namespace plan with a pid or time namespace needs --sync-fd");
	/* The child must not talk on the sync fd before its pid is sent: it waits for EOF on
	 * this pipe, which comes when the process in between exits. */
	if (pipe2(gate, O_CLOEXEC) != 0)
		die(KERR_EXIT_FATAL, "pipe: %m");
	/* A raw clone with no new stack is a fork; glibc's fork would run atfork handlers that
	 * have no business here. */
	pid = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL, NULL);
	if (pid < 0)
		die(KERR_EXIT_FATAL, "clone into the new pid namespace: %m");
	if (pid == 0) {
		char b;
		ssize_t n;

		if (close(gate[1]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
		do
			n = read(gate[0], &b, 1);
		while (n < 0 && errno == EINTR);
		if (n != 0)
			die(KERR_EXIT_FATAL, "waiting for the pid to be sent: %s", n < 0 ? strerror(errno) : "unexpected data");
		if (close(gate[0]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
		return;
	}
	{
		int32_t v = (int32_t)pid;

		sync_send(KERR_SYNC_PID, &v);
	}
	_exit(0);
}

/* raw_fork forks without glibc's atfork handlers, which have no business here. Privileges:
 * any. */
static pid_t raw_fork(void)
{
	return (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, NULL);
}

/* become_caller sets real, effective and saved ids to the caller's, for good, and checks
 * with the kernel. Root's starter (the caller is root) has nothing to drop. Privileges:
 * leaves with the caller's ids and, for a non-root caller, no capabilities. */
static void become_caller(void)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;
	uid_t uid = kerr_stage0.uid;
	gid_t gid = kerr_stage0.gid;

	if (setresgid(gid, gid, gid) != 0)
		die(KERR_EXIT_FATAL, "setresgid(%u): %m", gid);
	if (setresuid(uid, uid, uid) != 0)
		die(KERR_EXIT_FATAL, "setresuid(%u): %m", uid);
	if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0)
		die(KERR_EXIT_FATAL, "reading back ids: %m");
	if (r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid)
		die(KERR_EXIT_FATAL, "ids after dropping for good are uid %u/%u/%u gid %u/%u/%u", r, e, s, rg, eg, sg);
	/* Changing ids resets dumpable; setuid mode keeps it off. In a user namespace (nothing
	 * of the host's held) the relays stay dumpable, so that the user can join them. */
	if (kerr_stage0.planned_userns) {
		if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
			die(KERR_EXIT_FATAL, "prctl(PR_SET_DUMPABLE, 1): %m");
		return;
	}
	set_nondumpable();
}

/* become_root takes root back for stage 2 in setuid mode: real, effective and saved ids 0, so
 * that the caller can neither signal nor trace the process (it is non-dumpable too).
 * Supplementary groups stay the caller's; stage 2 sets the payload's own. Privileges: needs
 * the saved uid of root that drop_privileges kept. */
static void become_root(void)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (setresuid(0, 0, 0) != 0)
		die(KERR_EXIT_FATAL, "setresuid(0): %m");
	if (setresgid(0, 0, 0) != 0)
		die(KERR_EXIT_FATAL, "setresgid(0): %m");
	if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0)
		die(KERR_EXIT_FATAL, "reading back ids: %m");
	if (r != 0 || e != 0 || s != 0 || rg != 0 || eg != 0 || sg != 0)
		die(KERR_EXIT_FATAL, "ids after taking root back are uid %u/%u/%u gid %u/%u/%u", r, e, s, rg, eg, sg);
	set_nondumpable();
}

/* receive_plan reads stage 1's plan from fd until EOF: at most KERR_CONFIG_MAX bytes and
 * KERR_HPC_MAX_FDS fds (close-on-exec), which replace the request as the config. Stage 1 is
 * trusted code, but a bound is a bound. Privileges: the caller's. */
static void receive_plan(int fd)
{
	const size_t cap = (size_t)KERR_CONFIG_MAX + 1;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * KERR_HPC_MAX_FDS)];
	} ctl;
	unsigned char *buf;
	size_t len = 0;
	ssize_t n;

	buf = malloc(cap);
	if (buf == NULL)
		die(KERR_EXIT_FATAL, "allocating the plan buffer: %m");
	for (;;) {
		struct iovec iov = {.iov_base = buf + len, .iov_len = cap - len};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf)};
		struct cmsghdr *c;

		if (len == cap)
			die(KERR_EXIT_CONFIG, "invalid engine config: the plan is over %d bytes", KERR_CONFIG_MAX);
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(KERR_EXIT_FATAL, "receiving the plan: %m");
		for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
			size_t i, nfds;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				die(KERR_EXIT_FATAL, "receiving the plan: unexpected control message");
			nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; i < nfds; i++) {
				int pfd;

				memcpy(&pfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (kerr_stage0.npassed == KERR_HPC_MAX_FDS)
					die(KERR_EXIT_FATAL, "receiving the plan: more than %d fds", KERR_HPC_MAX_FDS);
				kerr_stage0.passed_fds[kerr_stage0.npassed++] = pfd;
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			die(KERR_EXIT_FATAL, "receiving the plan: more than %d fds", KERR_HPC_MAX_FDS);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (close(fd) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "closing the plan socket: %m");
	memset(kerr_stage0.config, 0, kerr_stage0.config_len);
	free(kerr_stage0.config);
	kerr_stage0.config = buf;
	kerr_stage0.config_len = len;
	kerr_stage0.config_off = 0;
}

/* wait_stage1 waits for stage 1 and exits with its status unless it succeeded: it has said
 * why on stderr. Privileges: any. */
static void wait_stage1(pid_t pid)
{
	int st;
	pid_t r;

	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (r != pid)
		die(KERR_EXIT_FATAL, "waiting for stage 1: %m");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	if (WIFEXITED(st))
		_exit(WEXITSTATUS(st));
	die(KERR_EXIT_FATAL, "stage 1 was killed by signal %d", WTERMSIG(st));
}

/* exit_like exits as the payload did: its code, or 128+N when signal N killed it. */
static void exit_like(int st) __attribute__((noreturn));
static void exit_like(int st)
{
	if (WIFSIGNALED(st))
		_exit(128 + WTERMSIG(st));
	_exit(WEXITSTATUS(st));
}

/* relay passes every signal it gets on to child and exits as child does; as pid 1 of a pid
 * namespace (reap_all) it also reaps the orphans the namespace hands it. An instance's init
 * (persist) outlives its first process: it then ends on SIGTERM, SIGINT, SIGHUP or SIGQUIT,
 * and the kernel kills what is left in the namespace. Signals are blocked (by the caller,
 * before the fork) and taken with sigwaitinfo, so none is lost and the kernel delivers them
 * to a namespace's init even without handlers. Privileges: the caller's ids (become_caller
 * ran): the caller may signal it, which is the point. */
static void relay(pid_t child, int reap_all, int persist) __attribute__((noreturn));
static void relay(pid_t child, int reap_all, int persist)
{
	sigset_t all;
	siginfo_t si;
	int sig, st, gone = 0;
	pid_t r;

	if (sigfillset(&all) != 0)
		die(KERR_EXIT_FATAL, "sigfillset: %m");
	for (;;) {
		sig = sigwaitinfo(&all, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			die(KERR_EXIT_FATAL, "sigwaitinfo: %m");
		}
		if (sig != SIGCHLD) {
			if (gone) {
				if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT)
					_exit(0);
				continue;
			}
			if (kill(child, sig) != 0 && errno != ESRCH)
				die(KERR_EXIT_FATAL, "passing signal %d on: %m", sig);
			continue;
		}
		for (;;) {
			r = waitpid(reap_all ? -1 : child, &st, WNOHANG);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			if (r == child && (WIFEXITED(st) || WIFSIGNALED(st))) {
				if (!persist)
					exit_like(st);
				gone = 1;
			}
		}
	}
}

/* close_passed closes the fds stage 1 sent: a relay has no use for them, and they would stay
 * open for the container's life. Privileges: any. */
static void close_passed(void)
{
	int i;

	for (i = 0; i < kerr_stage0.npassed; i++)
		if (close(kerr_stage0.passed_fds[i]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
	kerr_stage0.npassed = 0;
}

/* await_instance is the process the caller started, for an instance: it waits until stage
 * 2 says it is ready (then exits 0 and leaves the instance running, in a session of its
 * own) or failed (then kills the instance's init and exits with stage 2's code).
 * Privileges: root on entry (only reads a pipe and signals its child). */
static void await_instance(pid_t init, int ready) __attribute__((noreturn));
static void await_instance(pid_t init, int ready)
{
	unsigned char msg[2];
	size_t got = 0;
	ssize_t n;
	int st;

	while (got < sizeof(msg)) {
		n = read(ready, msg + got, sizeof(msg) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (msg[0] == KERR_HPC_READY)
			_exit(0);
	}
	(void)kill(init, SIGKILL);
	while (waitpid(init, &st, 0) < 0 && errno == EINTR)
		;
	if (got == 2 && msg[0] == KERR_HPC_FAILED && msg[1] != 0)
		_exit(msg[1]);
	die(KERR_EXIT_FATAL, "the instance's setup ended without saying why");
}

/* enter_pid_namespace: unshare has made the next child the first of a new pid namespace.
 * The process the caller started (outside) becomes a relay with the caller's ids (for an
 * instance: waits until it is ready, then exits); its child, pid 1 inside, becomes an init
 * relay that reaps, with the caller's ids too, and dies with the outside relay (not an
 * instance's: that one lives in a session of its own until stopped); then the kernel kills
 * the whole namespace. Pid 2 goes on to stage 2 as root, with the signal mask the caller
 * gave. Privileges: root on entry. */
static void enter_pid_namespace(int instance)
{
	sigset_t all, old;
	struct pollfd p;
	int gone[2], ready[2];
	pid_t init, payload;

	if (sigfillset(&all) != 0 || sigprocmask(SIG_SETMASK, &all, &old) != 0)
		die(KERR_EXIT_FATAL, "blocking signals: %m");
	/* The relay holds the write end for its life: init sees POLLHUP once it is gone. */
	if (pipe2(gone, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0)
		die(KERR_EXIT_FATAL, "pipe: %m");
	init = raw_fork();
	if (init < 0)
		die(KERR_EXIT_FATAL, "fork into the new pid namespace: %m");
	if (init > 0) {
		if (close(gone[0]) != 0 || close(ready[1]) != 0)
			die(KERR_EXIT_FATAL, "close: %m");
		close_passed();
		if (instance)
			await_instance(init, ready[0]);
		become_caller();
		relay(init, 0, 0);
	}
	if (close(gone[1]) != 0 || close(ready[0]) != 0)
		die(KERR_EXIT_FATAL, "close: %m");
	if (instance && setsid() < 0)
		die(KERR_EXIT_FATAL, "setsid: %m");
	payload = raw_fork();
	if (payload < 0)
		die(KERR_EXIT_FATAL, "fork inside the new pid namespace: %m");
	if (payload > 0) {
		if (close(ready[1]) != 0)
			die(KERR_EXIT_FATAL, "close: %m");
		close_passed();
		become_caller();
		if (!instance) {
			/* After the last change of ids, which clears it. Our parent is outside the
			 * namespace (getppid says 0), so the pipe tells whether it died before this
			 * took effect. */
			if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
				die(KERR_EXIT_FATAL, "prctl(PR_SET_PDEATHSIG): %m");
			p.fd = gone[0];
			p.events = POLLIN;
			p.revents = 0;
			if (poll(&p, 1, 0) != 0)
				_exit(KERR_EXIT_FATAL);
		}
		if (close(gone[0]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
		relay(payload, 1, instance);
	}
	if (close(gone[0]) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "close: %m");
	if (instance)
		kerr_stage0.ready_fd = ready[1];
	else if (close(ready[1]) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "close: %m");
	if (sigprocmask(SIG_SETMASK, &old, NULL) != 0)
		die(KERR_EXIT_FATAL, "restoring the signal mask: %m");
}

/* hpc_u32, hpc_u64 read the HPC preamble; it was checked to be whole. */
static uint32_t hpc_u32(size_t *off)
{
	uint32_t v;

	memcpy(&v, kerr_stage0.config + *off, 4);
	*off += 4;
	return v;
}

static uint64_t hpc_u64(size_t *off)
{
	uint64_t v;

	memcpy(&v, kerr_stage0.config + *off, 8);
	*off += 8;
	return v;
}

/* read_small reads a small /proc file of dirfd into buf (NUL-terminated); -1 on error. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t cap)
{
	ssize_t n, got = 0;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	while ((size_t)got < cap - 1) {
		n = read(fd, buf + got, cap - 1 - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	if (close(fd) != 0 && errno != EINTR)
		return -1;
	buf[got] = '\0';
	return got;
}

/* check_instance checks that the process whose /proc directory is procfd is an instance
 * of the caller's: all four uids the caller's, the start time stage 1 read from the
 * instance file, and the program one of kerr's starters (an instance's init). Privileges:
 * root (reads /proc of a non-dumpable process). */
static void check_instance(int procfd, uint32_t pid, uint64_t start)
{
	char buf[4096], exe[PATH_MAX];
	const char *p;
	unsigned long long st = 0;
	unsigned u[4];
	ssize_t n;
	int field;

	if (read_small(procfd, "stat", buf, sizeof(buf)) <= 0)
		die(KERR_EXIT_FATAL, "instance process %u: cannot read its stat", pid);
	p = strrchr(buf, ')');
	/* Field 22 is the start time; after ')' come field 3 onwards. */
	for (field = 2; p != NULL && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%llu", &st) != 1 || st != start)
		die(KERR_EXIT_DENIED, "instance process %u is not the instance's any more (it ended)", pid);
	if (read_small(procfd, "status", buf, sizeof(buf)) <= 0 || (p = strstr(buf, "\nUid:")) == NULL ||
	    sscanf(p + 5, "%u %u %u %u", &u[0], &u[1], &u[2], &u[3]) != 4)
		die(KERR_EXIT_FATAL, "instance process %u: cannot read its ids", pid);
	if (u[0] != kerr_stage0.uid || u[1] != kerr_stage0.uid || u[2] != kerr_stage0.uid || u[3] != kerr_stage0.uid)
		die(KERR_EXIT_DENIED, "process %u is not an instance of yours", pid);
	n = readlinkat(procfd, "exe", exe, sizeof(exe) - 1);
	if (n < 0)
		die(KERR_EXIT_FATAL, "instance process %u: its program: %m", pid);
	exe[n] = '\0';
	if (strcmp(exe, KERR_LIBEXECDIR "/kerr/bin/starter-suid") != 0 && strcmp(exe, KERR_LIBEXECDIR "/kerr/bin/starter") != 0)
		die(KERR_EXIT_DENIED, "process %u is not a kerr instance (it runs %s)", pid, exe);
}

/* join_instance enters the namespaces of a checked instance process: every namespace file
 * is opened from the /proc directory fd held since the check (a pid reused meanwhile
 * cannot swap in), the mount namespace joined last (it moves our root into the container).
 * A joined pid namespace takes a fork: the process the caller started stays outside as a
 * relay. Privileges: root. */
static void join_instance(uint32_t pid, uint64_t start, uint32_t types)
{
	static const struct {
		uint32_t type;
		const char *name;
	} order[] = {{CLONE_NEWUSER, "ns/user"}, {CLONE_NEWPID, "ns/pid"}, {CLONE_NEWIPC, "ns/ipc"},
		     {CLONE_NEWUTS, "ns/uts"}, {CLONE_NEWNET, "ns/net"}, {CLONE_NEWNS, "ns/mnt"}};
	int fds[6], procfd, rootfd, i;
	char path[64];
	sigset_t all, old;
	pid_t child;

	if (snprintf(path, sizeof(path), "/proc/%u", pid) >= (int)sizeof(path))
		die(KERR_EXIT_FATAL, "instance pid %u", pid);
	procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		die(KERR_EXIT_DENIED, "instance process %u: %m (is the instance running?)", pid);
	check_instance(procfd, pid, start);
	for (i = 0; i < 6; i++) {
		fds[i] = -1;
		if (!(types & order[i].type))
			continue;
		fds[i] = openat(procfd, order[i].name, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			die(KERR_EXIT_FATAL, "instance %u: open %s: %m", pid, order[i].name);
	}
	/* The container's root: setns puts us at the mount namespace's first root, which the
	 * instance's pivot_root has left behind. */
	rootfd = openat(procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		die(KERR_EXIT_FATAL, "instance %u: open its root: %m", pid);
	/* Checked again now that every namespace is open: the process is still the one. */
	check_instance(procfd, pid, start);
	for (i = 0; i < 6; i++) {
		if (fds[i] < 0)
			continue;
		if (setns(fds[i], (int)order[i].type) != 0)
			die(KERR_EXIT_FATAL, "join the instance's %s: %m", order[i].name);
		if (close(fds[i]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
	}
	if (fchdir(rootfd) != 0 || chroot(".") != 0 || chdir("/") != 0)
		die(KERR_EXIT_FATAL, "enter the instance's root: %m");
	if ((close(rootfd) != 0 && errno != EINTR) || (close(procfd) != 0 && errno != EINTR))
		die(KERR_EXIT_FATAL, "close: %m");
	kerr_stage0.joined = 1;
	if (!(types & CLONE_NEWPID))
		return;
	if (sigfillset(&all) != 0 || sigprocmask(SIG_SETMASK, &all, &old) != 0)
		die(KERR_EXIT_FATAL, "blocking signals: %m");
	child = raw_fork();
	if (child < 0)
		die(KERR_EXIT_FATAL, "fork into the instance's pid namespace: %m");
	if (child > 0) {
		close_passed();
		become_caller();
		relay(child, 0, 0);
	}
	if (sigprocmask(SIG_SETMASK, &old, NULL) != 0)
		die(KERR_EXIT_FATAL, "restoring the signal mask: %m");
}

static void enter_user_namespace(void);

/* hpc_plan applies the HPC preamble at the start of stage 1's plan (see starter.h).
 * Privileges: root. */
static void hpc_plan(void)
{
	const uint32_t allowed = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID;
	const uint32_t joinable = allowed | (kerr_stage0.userns ? (uint32_t)CLONE_NEWUSER : 0U);
	size_t off = KERR_HPC_PLAN_MAGIC_LEN;
	uint32_t mode, flags, pid, types;
	uint64_t start;

	if (kerr_stage0.config_len < KERR_HPC_PLAN_LEN ||
	    memcmp(kerr_stage0.config, KERR_HPC_PLAN_MAGIC, KERR_HPC_PLAN_MAGIC_LEN) != 0)
		die(KERR_EXIT_CONFIG, "invalid engine config: stage 1's plan has no HPC preamble");
	mode = hpc_u32(&off);
	flags = hpc_u32(&off);
	pid = hpc_u32(&off);
	start = hpc_u64(&off);
	types = hpc_u32(&off);
	kerr_stage0.config_off = off;
	if (mode != KERR_HPC_RUN && mode != KERR_HPC_INSTANCE)
		die(KERR_EXIT_CONFIG, "invalid engine config: HPC mode %u", mode);
	if (pid != 0) {
		/* In a user namespace, an instance is joined through its user namespace, which the
		 * caller owns; the one C made above is left for it. */
		if (flags != 0 || mode != KERR_HPC_RUN || (types & ~joinable) != 0 || !(types & CLONE_NEWNS) || pid == 1 ||
		    (kerr_stage0.userns && !(types & CLONE_NEWUSER)))
			die(KERR_EXIT_CONFIG, "invalid engine config: joining instance %u (%#x, %#x)", pid, flags, types);
		join_instance(pid, start, types);
		return;
	}
	if ((flags & ~allowed) != 0 || (flags & CLONE_NEWNS) == 0 || types != 0 ||
	    (mode == KERR_HPC_INSTANCE && !(flags & CLONE_NEWPID)))
		die(KERR_EXIT_CONFIG, "invalid engine config: stage 1's namespaces (%#x)", flags);
	if (kerr_stage0.userns)
		enter_user_namespace();
	if (unshare((int)flags & ~CLONE_NEWPID) != 0)
		die(KERR_EXIT_FATAL, "unshare(%#x): %m", flags & ~(uint32_t)CLONE_NEWPID);
	if (flags & CLONE_NEWPID) {
		if (unshare(CLONE_NEWPID) != 0)
			die(KERR_EXIT_FATAL, "unshare(CLONE_NEWPID): %m");
		enter_pid_namespace(mode == KERR_HPC_INSTANCE);
	}
}

/* write_proc writes a short string to a file of /proc/self. Privileges: any. */
static void write_proc(const char *name, const char *text)
{
	size_t len = strlen(text);
	ssize_t n;
	int fd;

	fd = open(name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die(KERR_EXIT_FATAL, "open %s: %m", name);
	do
		n = write(fd, text, len);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		die(KERR_EXIT_FATAL, "write %s: %m", name);
	if (close(fd) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "close %s: %m", name);
}

/* enter_user_namespace is HPC mode without setuid: a new user namespace in which the
 * caller keeps their own uid and gid (mapped to themselves, one each; supplementary groups
 * frozen by setgroups "deny", as the kernel requires of an unprivileged map), holding the
 * capabilities the kernel gives its creator there and none outside. The namespaces unshared
 * next are owned by it. The policy's allow_user_namespaces said yes in stage 1.
 * Privileges: the caller's. */
static void enter_user_namespace(void)
{
	char map[64];

	if (unshare(CLONE_NEWUSER) != 0)
		die(KERR_EXIT_FATAL, "unshare(CLONE_NEWUSER): %m (are user namespaces enabled?)");
	/* /proc/self's files of a non-dumpable process are root's: the maps could not be
	 * written. Nothing privileged is held here (these are the caller's own ids). */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
		die(KERR_EXIT_FATAL, "prctl(PR_SET_DUMPABLE, 1): %m");
	write_proc("/proc/self/setgroups", "deny");
	if (snprintf(map, sizeof(map), "%u %u 1\n", kerr_stage0.uid, kerr_stage0.uid) >= (int)sizeof(map))
		die(KERR_EXIT_FATAL, "uid map");
	write_proc("/proc/self/uid_map", map);
	if (snprintf(map, sizeof(map), "%u %u 1\n", kerr_stage0.gid, kerr_stage0.gid) >= (int)sizeof(map))
		die(KERR_EXIT_FATAL, "gid map");
	write_proc("/proc/self/gid_map", map);
	kerr_stage0.planned_userns = 1;
	/* It stays dumpable: it holds no privilege of the host's, and a later exec instance://
	 * by the same user must be able to open this container's namespaces. */
}

/* hpc_stages runs HPC mode's two stages (see starter.h). Returns in stage 1 (the child) and in
 * stage 2 (this process, or pid 2 of a new pid namespace). Privileges: the caller's on entry;
 * stage 2 returns as root. */
static void hpc_stages(void)
{
	int sp[2];
	pid_t pid;

	/* Neither setuid nor root: the unprivileged starter in a user namespace. */
	kerr_stage0.userns = !kerr_stage0.dropped && geteuid() != 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
		die(KERR_EXIT_FATAL, "socketpair: %m");
	pid = raw_fork();
	if (pid < 0)
		die(KERR_EXIT_FATAL, "fork stage 1: %m");
	if (pid == 0) {
		if (close(sp[0]) != 0 && errno != EINTR)
			die(KERR_EXIT_FATAL, "close: %m");
		become_caller();
		kerr_stage0.role = KERR_ROLE_STAGE1;
		kerr_stage0.stage1_fd = sp[1];
		kerr_stage0.config_off = KERR_HPC_MAGIC_LEN;
		return;
	}
	if (close(sp[1]) != 0 && errno != EINTR)
		die(KERR_EXIT_FATAL, "close: %m");
	receive_plan(sp[0]);
	wait_stage1(pid);
	if (kerr_stage0.dropped)
		become_root();
	hpc_plan();
	kerr_stage0.planned = 1;
	kerr_stage0.role = KERR_ROLE_STAGE2;
}

/* kerr_stage0_init is stage 0. glibc passes main's arguments to constructors. Privileges: in
 * setuid mode entered with the effective uid of root; everything after drop_privileges runs
 * with the caller's. */
__attribute__((constructor)) static void kerr_stage0_init(int argc, char **argv, char **envp)
{
	int fd;

#ifdef KERR_SUID
	kerr_stage0.suid_build = 1;
#endif
	set_nondumpable();
	/* The runtime execs container processes through /proc/self/fd/N (a read-only clone of
	 * this binary), which names the process "N": give it its name back, for ps and the
	 * admin. */
	if (prctl(PR_SET_NAME, "starter", 0, 0, 0) != 0)
		die(KERR_EXIT_FATAL, "prctl(PR_SET_NAME): %m");
	ensure_stdio();
	drop_privileges();
	/* Changing effective ids resets dumpable to fs.suid_dumpable, which may be 1: set it
	 * again. The process stays non-dumpable from here on. */
	set_nondumpable();
	wipe_environment(envp);
	fd = parse_args(argc, argv);
	close_fds(fd, kerr_stage0.sync_fd);
	read_config(fd);
	if (kerr_stage0.config_len >= KERR_HPC_MAGIC_LEN &&
	    memcmp(kerr_stage0.config, KERR_HPC_MAGIC, KERR_HPC_MAGIC_LEN) == 0) {
		if (kerr_stage0.sync_fd >= 0 || kerr_stage0.keep_fds > 0)
			die(KERR_EXIT_USAGE, "HPC mode takes neither --sync-fd nor --keep-fds");
		hpc_stages();
		return;
	}
	if (kerr_stage0.config_len >= KERR_PLAN_MAGIC_LEN &&
	    memcmp(kerr_stage0.config, KERR_PLAN_MAGIC, KERR_PLAN_MAGIC_LEN) == 0) {
		/* Setuid mode never gets here with a sync fd, but a plan without one is refused
		 * there too: namespaces in HPC mode are stage 1's decision under the policy. */
		if (kerr_stage0.suid_build || kerr_stage0.dropped || geteuid() != 0)
			die(KERR_EXIT_CONFIG, "invalid engine config: a namespace plan needs root's starter");
		apply_plan();
	}
}

/* kerr_stage0_take_config: see starter.h. Privileges: none used (memory only). */
size_t kerr_stage0_take_config(unsigned char *dst, size_t cap)
{
	size_t n = kerr_stage0.config_len - kerr_stage0.config_off;

	if (kerr_stage0.config == NULL)
		return 0;
	if (n > cap)
		n = cap;
	memcpy(dst, kerr_stage0.config + kerr_stage0.config_off, n);
	memset(kerr_stage0.config, 0, kerr_stage0.config_len);
	free(kerr_stage0.config);
	kerr_stage0.config = NULL;
	kerr_stage0.config_len = 0;
	kerr_stage0.config_off = 0;
	return n;
}

/* kerr_build_value: see starter.h. Privileges: none used. */
const char *kerr_build_value(int which)
{
	switch (which) {
	case KERR_BUILD_PREFIX:
		return KERR_PREFIX;
	case KERR_BUILD_SYSCONFDIR:
		return KERR_SYSCONFDIR;
	case KERR_BUILD_LIBEXECDIR:
		return KERR_LIBEXECDIR;
	case KERR_BUILD_LOCALSTATEDIR:
		return KERR_LOCALSTATEDIR;
	case KERR_BUILD_POLICY_FILE:
		return KERR_POLICY_FILE;
	case KERR_BUILD_VERSION:
		return KERR_VERSION;
	}
	return "";
}
