package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// ReadInstance reads instance name's record from dir (as whoever calls it).
func ReadInstance(dir, name string) (*Instance, error) {
	if err := ValidInstanceName(name); err != nil {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".json"), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no instance %s (kerr instance list shows yours): %w", name, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInstanceRecord))
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	var rec Instance
	if err := json.Unmarshal(data, &rec); err != nil || rec.PID <= 1 || rec.Name != name {
		return nil, fmt.Errorf("instance %s: its record is damaged: %w", name, errdefs.ErrInvalidImage)
	}
	return &rec, nil
}

// ProcStartTime is a process's start time in clock ticks since boot (/proc/PID/stat
// field 22), which tells a process from a later one with the same pid.
func ProcStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ProcRunning says whether pid is the process that started at start and has not ended (a
// zombie has ended).
func ProcRunning(pid int, start uint64) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && st == start
}
