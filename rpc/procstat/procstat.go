// Package procstat tells a process from a later one with the same pid: by its start time
// in /proc/PID/stat. The records of HPC instances and the state of OCI containers keep
// (pid, start time) pairs, which the frontend and the starter check against /proc before
// they signal or join a process.
//
// Privileges: none (it reads /proc as whoever calls it).
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// StartTime returns pid's start time in clock ticks since boot (field 22 of
// /proc/PID/stat). A process that has ended (a zombie) is unix.ESRCH: it is no longer the
// process a record names.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields count from the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (the state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, unix.ESRCH
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Running says whether pid is the process that started at start and has not ended.
func Running(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := StartTime(pid)
	return err == nil && st == start
}
