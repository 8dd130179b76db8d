package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Mount is one mount of this process's mount namespace, as /proc/self/mountinfo shows it.
type Mount struct {
	Point  string
	FSType string
	Source string
	// Options are the per-mount options (ro, nosuid, …), SuperOptions the file system's
	// (lowerdir=…, upperdir=… for an overlay).
	Options, SuperOptions []string
}

// ReadOnly reports whether the mount is read-only.
func (m Mount) ReadOnly() bool { return slices.Contains(m.Options, "ro") }

// SuperOption returns the value of the superblock option key (e.g. "upperdir").
func (m Mount) SuperOption(key string) (string, bool) {
	for _, o := range m.SuperOptions {
		if k, v, _ := strings.Cut(o, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func (m Mount) String() string {
	return fmt.Sprintf("%s (%s from %s, %s)", m.Point, m.FSType, m.Source, strings.Join(m.Options, ","))
}

func exported(m mount) Mount {
	return Mount{
		Point: m.point, FSType: m.fstype, Source: m.source,
		Options: strings.Split(m.opts, ","), SuperOptions: strings.Split(m.super, ","),
	}
}

// MountsUnder lists the mounts on dir or below it, innermost (newest) first. A test calls it
// on a bundle or a session directory to see what a command left mounted there.
func MountsUnder(dir string) []Mount {
	var out []Mount
	for _, m := range mountinfo() {
		if under(m.point, dir) {
			out = append(out, exported(m))
		}
	}
	slices.Reverse(out)
	return out
}

// MountAt returns the top mount on point (the one a path lookup sees), if point is a mount
// point.
func MountAt(point string) (Mount, bool) {
	ms := MountsUnder(point)
	for _, m := range ms { // innermost first: the last mount stacked on point comes first
		if m.Point == point {
			return m, true
		}
	}
	return Mount{}, false
}

// LoopDevice is an attached loop device as sysfs describes it.
type LoopDevice struct {
	Dev       string // /dev/loopN
	Backing   string // backing file, as the kernel recorded its path
	Offset    int64
	SizeLimit int64
	ReadOnly  bool
	Autoclear bool
}

// LoopDevicesFor lists the loop devices attached to file (the path as given, and as it
// resolves through symlinks), sorted by device.
func LoopDevicesFor(file string) []LoopDevice {
	want := map[string]bool{file: true}
	if abs, err := filepath.Abs(file); err == nil {
		want[abs] = true
	}
	if real, err := filepath.EvalSymlinks(file); err == nil {
		want[real] = true
	}
	var out []LoopDevice
	for dev, backing := range loopDevices() {
		if !want[strings.TrimSuffix(backing, " (deleted)")] {
			continue
		}
		sys := filepath.Join("/sys/block", filepath.Base(dev))
		out = append(out, LoopDevice{
			Dev:       dev,
			Backing:   backing,
			Offset:    sysInt(filepath.Join(sys, "loop", "offset")),
			SizeLimit: sysInt(filepath.Join(sys, "loop", "sizelimit")),
			ReadOnly:  sysInt(filepath.Join(sys, "ro")) == 1,
			Autoclear: sysInt(filepath.Join(sys, "loop", "autoclear")) == 1,
		})
	}
	slices.SortFunc(out, func(a, b LoopDevice) int { return strings.Compare(a.Dev, b.Dev) })
	return out
}

func sysInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// DirState is what a test remembers of a directory to check that a failed or undone command
// left it as it was: whether it exists, its type, mode and owner, and the names in it.
type DirState struct {
	Path     string
	Exists   bool
	Mode     os.FileMode
	UID, GID uint32
	Names    []string // sorted; nil for a file
	Content  string   // a regular file's content
}

// StatDir records the state of path (a directory, a file or nothing).
func StatDir(path string) DirState {
	d := DirState{Path: path}
	info, err := os.Lstat(path)
	if err != nil {
		return d
	}
	d.Exists, d.Mode = true, info.Mode()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		d.UID, d.GID = st.Uid, st.Gid
	}
	switch {
	case info.IsDir():
		ents, _ := os.ReadDir(path)
		d.Names = []string{}
		for _, e := range ents {
			d.Names = append(d.Names, e.Name())
		}
	case info.Mode().IsRegular():
		b, _ := os.ReadFile(path)
		d.Content = string(b)
	}
	return d
}

// Diff describes how the state of the same path now differs from d ("" when it does not).
func (d DirState) Diff() string {
	now := StatDir(d.Path)
	switch {
	case d.Exists != now.Exists:
		return fmt.Sprintf("%s: existed %v, now %v (holding %q)", d.Path, d.Exists, now.Exists, now.Names)
	case !d.Exists:
		return ""
	case d.Mode != now.Mode || d.UID != now.UID || d.GID != now.GID:
		return fmt.Sprintf("%s: was %v %d:%d, now %v %d:%d", d.Path, d.Mode, d.UID, d.GID, now.Mode, now.UID, now.GID)
	case !slices.Equal(d.Names, now.Names):
		return fmt.Sprintf("%s: held %q, now %q", d.Path, d.Names, now.Names)
	case d.Content != now.Content:
		return fmt.Sprintf("%s: content changed from %q to %q", d.Path, short(d.Content), short(now.Content))
	}
	return ""
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
