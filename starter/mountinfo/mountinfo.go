// Package mountinfo reads the kernel's table of mounts, /proc/self/mountinfo, so that the
// starter can tell exactly what is mounted where before it unmounts or removes anything.
//
// Privileges: none needed; every process may read its own mountinfo. The table is the calling
// process's mount namespace seen from its root, so paths compare with paths the same process
// resolves (for example from /proc/self/fd).
package mountinfo

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo (see proc(5)). Paths are unescaped.
type Mount struct {
	ID, Parent   int
	Major, Minor uint32
	// Root is the path inside the filesystem that is mounted (a bind mount's source).
	Root string
	// Mountpoint is where the mount sits, relative to the process's root.
	Mountpoint string
	// Options are the per-mount options ("ro,nodev,relatime").
	Options string
	FSType  string
	Source  string
	// SuperOptions are the filesystem's own options ("lowerdir=…" for overlay).
	SuperOptions string
}

// Read parses /proc/self/mountinfo.
func Read() ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return Parse(b)
}

// Parse parses the text of a mountinfo file.
func Parse(b []byte) ([]Mount, error) {
	var out []Mount
	for n, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		m, err := parseLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseLine parses "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue":
// six fixed fields, optional fields up to "-", then type, source and super options.
func parseLine(line string) (Mount, error) {
	var m Mount
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 10 || sep < 0 || len(f) < sep+4 {
		return m, fmt.Errorf("malformed: %q", line)
	}
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return m, fmt.Errorf("mount id %q: %w", f[0], err)
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return m, fmt.Errorf("parent id %q: %w", f[1], err)
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q: want major:minor", f[2])
	}
	ma, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device %q: %w", f[2], err)
	}
	mi, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device %q: %w", f[2], err)
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	m.Root = unescape(f[3])
	m.Mountpoint = unescape(f[4])
	m.Options = f[5]
	m.FSType = unescape(f[sep+1])
	m.Source = unescape(f[sep+2])
	m.SuperOptions = unescape(f[sep+3])
	return m, nil
}

// unescape undoes the kernel's octal escapes (\040 for a space, \011, \012, \134 for '\').
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// At returns the mounts whose mount point is exactly path, in table order (a later one is
// stacked on an earlier one).
func At(mounts []Mount, path string) []Mount {
	var out []Mount
	for _, m := range mounts {
		if m.Mountpoint == path {
			out = append(out, m)
		}
	}
	return out
}

// Under returns the mounts at dir or anywhere below it. dir is an absolute, clean path.
func Under(mounts []Mount, dir string) []Mount {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []Mount
	for _, m := range mounts {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// Visible drops the mounts that later ones hide from ms (a mount table in the kernel's
// order, where a mount comes after those it was mounted over): a mount is hidden when a
// later one sits on the same mountpoint or on a directory above it. A container's init
// that mounted its own /sys/fs/cgroup over the one it inherited (systemd does) leaves the
// old entries in the table, with roots that no longer mean anything to this process.
func Visible(ms []Mount) []Mount {
	var out []Mount
	for i, m := range ms {
		hidden := false
		for _, later := range ms[i+1:] {
			if later.Mountpoint == m.Mountpoint || isBelow(m.Mountpoint, later.Mountpoint) {
				hidden = true
				break
			}
		}
		if !hidden {
			out = append(out, m)
		}
	}
	return out
}

// isBelow reports whether path p lies strictly below directory dir.
func isBelow(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}
