package oci

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// oomKills reads how many processes the kernel's OOM killer has killed in the container's
// memory cgroup: memory.oom_control on cgroup v1 (the memory controller may be v1 on a
// hybrid host), memory.events on v2. ok is false when the count cannot be read.
// Privileges: root.
func oomKills(s *State) (n uint64, ok bool) {
	m, err := loadCgroup(s)
	if err != nil {
		return 0, false
	}
	paths := m.Paths()
	if dir, found := paths["memory"]; found {
		return readKeyed(filepath.Join(dir, "memory.oom_control"), "oom_kill")
	}
	if dir, found := paths["unified"]; found {
		return readKeyed(filepath.Join(dir, "memory.events"), "oom_kill")
	}
	return 0, false
}

// readKeyed reads the value of key from a cgroup file of "key value" lines.
func readKeyed(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), " ")
		if found && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
