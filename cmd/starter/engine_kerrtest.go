//go:build kerrtest

package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/kerr-hpc/kerr/rpc/envelope"
	starterc "github.com/kerr-hpc/kerr/starter-c"
)

// The probe engine exists only in test builds (-tags kerrtest; the Makefile never sets it).
// It reports what the process looks like when stage 1 starts, so that tests in starter/ can
// check what stage 0 did from the Go side: ids, dumpable flag, open fds, environment.
func init() { builtinEngines = append(builtinEngines, probe{}) }

type probe struct{}

// ProbeReport is what the probe engine prints as JSON on stdout.
type ProbeReport struct {
	ID        string              `json:"id"`
	Config    json.RawMessage     `json:"config"`
	ResUID    [3]int              `json:"resuid"`
	ResGID    [3]int              `json:"resgid"`
	Dumpable  int                 `json:"dumpable"`
	FDs       map[int]string      `json:"fds"`
	Env       []string            `json:"env"`
	Stage0    starterc.Stage0     `json:"stage0"`
	Paths     starterc.BuildPaths `json:"paths"`
	ConfigMax int                 `json:"config_max"`
	// NS maps namespace names to their /proc/self/ns link targets; Pid is os.Getpid().
	NS  map[string]string `json:"ns"`
	Pid int               `json:"pid"`
}

func (probe) Name() string { return "probe" }

// Run prints the report. Privileges: stage 1; it only reads its own process state.
func (probe) Run(env *envelope.Envelope) error {
	// Read the fds first, before anything here could open one.
	fds, err := openFDs()
	if err != nil {
		return err
	}
	r := ProbeReport{
		ID:        env.ID,
		Config:    env.Config,
		FDs:       fds,
		Env:       os.Environ(),
		Stage0:    starterc.State(),
		Paths:     starterc.Paths(),
		ConfigMax: starterc.ConfigMax,
	}
	r.Pid = os.Getpid()
	r.NS = map[string]string{}
	for _, n := range []string{"user", "mnt", "uts", "ipc", "net", "pid", "cgroup", "time"} {
		r.NS[n], _ = os.Readlink("/proc/self/ns/" + n)
	}
	if r.ResUID, r.ResGID, err = ids(); err != nil {
		return err
	}
	d, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
	if errno != 0 {
		return errno
	}
	r.Dumpable = int(d)
	return json.NewEncoder(os.Stdout).Encode(r)
}

// ids reads the real, effective and saved uid and gid from /proc/self/status.
func ids() (uid, gid [3]int, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return uid, gid, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != "Uid:" && f[0] != "Gid:") {
			continue
		}
		dst := &uid
		if f[0] == "Gid:" {
			dst = &gid
		}
		for i := range dst {
			if dst[i], err = strconv.Atoi(f[i+1]); err != nil {
				return uid, gid, err
			}
		}
	}
	return uid, gid, nil
}

// openFDs lists /proc/self/fd with raw syscalls (the os package would set up the poller,
// whose epoll fds would show up in the list) and maps each fd to its target.
func openFDs() (map[int]string, error) {
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(dir)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
	fds := map[int]string{}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == dir {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + name)
		fds[fd] = target
	}
	return fds, nil
}
