package harness

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// snapshot is the machine state a session compares against when it ends.
type snapshot struct {
	mounts  map[string]bool   // mount ids of watched mounts
	loops   map[string]string // loop device -> backing file
	procs   map[int]bool      // watched processes
	tmpUser map[string]bool   // /tmp entries owned by the test account
}

// helperNames are the processes kerr starts; one that outlives its command leaked.
var helperNames = []string{"kerr", "starter", "starter-suid", "tar2sqfs", "sqfs2tar", "mksquashfs", "sqfstar", "gensquashfs", "unsquashfs", "squashfuse", "squashfuse_ll"}

func (h *Harness) takeSnapshot() snapshot {
	s := snapshot{mounts: map[string]bool{}, loops: loopDevices(), procs: map[int]bool{}, tmpUser: map[string]bool{}}
	for _, m := range h.watchedMounts() {
		s.mounts[m.id] = true
	}
	for _, p := range h.watchedProcs(nil) {
		s.procs[p.pid] = true
	}
	for _, n := range h.tmpOwnedByUser() {
		s.tmpUser[n] = true
	}
	return s
}

// leaksSince describes what appeared since snap, and cleans it up. pgids are the process
// groups of the commands the session ran: anything still in one of them outlived its command.
func (h *Harness) leaksSince(snap snapshot, pgids map[int]bool) []string {
	var leaks []string

	// Helpers get a moment to exit after kerr did; a first empty scan is repeated once, for
	// a child that was still between fork and exec.
	var procs []proc
	for deadline, scans := time.Now().Add(3*time.Second), 0; ; scans++ {
		procs = procs[:0]
		for _, p := range h.watchedProcs(pgids) {
			if !snap.procs[p.pid] {
				procs = append(procs, p)
			}
		}
		if len(procs) == 0 && scans > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range procs {
		leaks = append(leaks, fmt.Sprintf("process %d (%s, uid %d) still running: %s", p.pid, p.comm, p.uid, p.cmdline))
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}

	ms := h.watchedMounts()
	for i := len(ms) - 1; i >= 0; i-- { // newest (innermost) first
		m := ms[i]
		if snap.mounts[m.id] {
			continue
		}
		leaks = append(leaks, fmt.Sprintf("mount %s (%s from %s)", m.point, m.fstype, m.source))
		_ = syscall.Unmount(m.point, syscall.MNT_DETACH)
	}

	for dev, backing := range loopDevices() {
		if snap.loops[dev] == backing || !strings.HasPrefix(backing, h.Tmp+"/") {
			continue
		}
		leaks = append(leaks, fmt.Sprintf("loop device %s attached to %s", dev, backing))
		_ = exec.Command("losetup", "-d", dev).Run()
	}

	for _, n := range h.tmpOwnedByUser() {
		if snap.tmpUser[n] {
			continue
		}
		p := filepath.Join(os.TempDir(), n)
		leaks = append(leaks, fmt.Sprintf("%s owned by %s left in %s", n, UserName, os.TempDir()))
		_ = os.RemoveAll(p)
	}
	return leaks
}

// mount is one line of mountinfo: ids, mount point, per-mount options, file system type,
// source and superblock options.
type mount struct{ id, parent, point, opts, fstype, source, super string }

// mountinfo parses /proc/self/mountinfo.
func mountinfo() []mount {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []mount
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			continue
		}
		m := mount{id: f[0], parent: f[1], point: unescapeMount(f[4]), opts: f[5], fstype: g[0], source: unescapeMount(g[1])}
		if len(g) > 2 {
			m.super = g[2]
		}
		ms = append(ms, m)
	}
	return ms
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space and so on).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// watchedMounts are the mounts a kerr command of this run could have left: anything mounted
// on, or from, a path under the run's temp tree, squashfs mounts of loop devices backed by a
// file there included. Mounts of other runs and other people are left alone.
func (h *Harness) watchedMounts() []mount {
	loops := loopDevices()
	var out []mount
	for _, m := range mountinfo() {
		if under(m.point, h.Tmp) || under(m.source, h.Tmp) || under(loops[m.source], h.Tmp) {
			out = append(out, m)
		}
	}
	return out
}

// mountsUnder lists mount points under dir, innermost first.
func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mountinfo() {
		if under(m.point, dir) {
			out = append(out, m.point)
		}
	}
	slices.Reverse(out)
	return out
}

// loopDevices maps each attached loop device to its backing file.
func loopDevices() map[string]string {
	out := map[string]string{}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		out[dev] = strings.TrimSpace(string(b))
	}
	return out
}

type proc struct {
	pid     int
	uid     int
	comm    string
	cmdline string
}

// watchedProcs are the processes that kerr commands of this suite may have started: any
// process in one of pgids, any binary of the install, and kerr's helpers when they run as
// the test account or work on the suite's files. Other people's processes on the same
// machine are left out.
func (h *Harness) watchedProcs(pgids map[int]bool) []proc {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		name := strings.TrimSpace(string(comm))
		cl, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
		cwd, _ := os.Readlink(filepath.Join(dir, "cwd"))
		var st syscall.Stat_t
		state, pgid := procStat(dir)
		if syscall.Stat(dir, &st) != nil || state == 'Z' || state == 0 {
			continue
		}
		ours := pgids[pgid] || under(exe, h.Prefix) ||
			slices.Contains(helperNames, name) &&
				(st.Uid == h.User.UID && h.User.UID != 0 || under(cwd, h.Tmp) || strings.Contains(cmdline, h.Tmp))
		if ours {
			out = append(out, proc{pid: pid, uid: int(st.Uid), comm: name, cmdline: cmdline})
		}
	}
	return out
}

// procStat returns a process's state letter and process group from /proc/PID/stat (state
// 0 when it is gone).
func procStat(procDir string) (state byte, pgid int) {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	// After the command name: state, ppid, pgrp, ...
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, 0
	}
	pgid, _ = strconv.Atoi(f[2])
	return f[0][0], pgid
}

// tmpOwnedByUser lists the entries of the system temp dir owned by the test account.
func (h *Harness) tmpOwnedByUser() []string {
	if h.User.UID == 0 {
		return nil
	}
	ents, _ := os.ReadDir(os.TempDir())
	var out []string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == h.User.UID {
			out = append(out, e.Name())
		}
	}
	return out
}

// IsTempName reports whether a file name looks like a temporary or partial download.
func IsTempName(name string) bool {
	for _, suf := range []string{".tmp", ".part", ".partial", ".incomplete", ".download", ".kerrtmp"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return strings.HasPrefix(name, ".tmp") || strings.HasPrefix(name, "tmp-") || strings.Contains(name, ".kerr-") ||
		strings.Contains(name, ".tmp-") || strings.Contains(name, ".tmp.") || strings.HasPrefix(name, ".") && strings.Contains(name, ".sif")
}

// tempFiles lists temporary-looking files anywhere under dir, and anything left in a
// cache's scratch dir (a "tmp" directory inside a dir named "cache").
func tempFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		parent := filepath.Dir(p)
		inCacheTmp := (filepath.Base(parent) == "tmp" || filepath.Base(parent) == ".tmp") && strings.Contains(parent, "/cache/")
		if p != dir && (IsTempName(d.Name()) || inCacheTmp) {
			out = append(out, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	return out
}
