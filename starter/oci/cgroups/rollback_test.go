package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// wholeDisk returns the major and minor of some whole disk of this host (a loop device
// will do), or ok false.
func wholeDisk(t *testing.T) (major, minor int64, ok bool) {
	t.Helper()
	devs, _ := filepath.Glob("/sys/block/*/dev")
	for _, d := range devs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		a, c, found := strings.Cut(strings.TrimSpace(string(b)), ":")
		ma, err1 := strconv.ParseInt(a, 10, 64)
		mi, err2 := strconv.ParseInt(c, 10, 64)
		if found && err1 == nil && err2 == nil {
			return ma, mi, true
		}
	}
	return 0, 0, false
}

// TestSetRollsBack: when the kernel refuses a limit partway through an update, every file
// the update had written before is put back, and the error says so. The refusal is a
// throttle for a block device that does not exist (Validate refuses that, so the test
// calls update, Set after Validate); the library writes block I/O limits after devices,
// memory and pids, in both its v1 and v2 managers.
func TestSetRollsBack(t *testing.T) {
	needRoot(t)
	v2 := ocg.IsCgroup2UnifiedMode()
	if v2 && !hasV2Controller("io") || !v2 && !exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device") {
		t.Skip("no block I/O throttling on this host, which the test uses to make the kernel refuse a write")
	}
	memsw := !v2 && exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	res := &specs.LinuxResources{
		Pids:   &specs.LinuxPids{Limit: ptr(int64(10))},
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
	}
	if memsw {
		res.Memory.Swap = ptr(int64(128 << 20))
	}
	if !v2 {
		res.Devices = append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, DefaultDeviceRules()...)
	}
	m, err := New(DriverCgroupfs, testPath(t), res, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	type file struct{ controller, name string }
	files := []file{{"pids", "pids.max"}}
	throttle := file{"blkio", "blkio.throttle.read_bps_device"}
	if v2 {
		files = append(files, file{"memory", "memory.max"}, file{"memory", "memory.swap.max"})
		throttle = file{"io", "io.max"}
	} else {
		files = append(files, file{"memory", "memory.limit_in_bytes"}, file{"devices", "devices.list"})
		if memsw {
			files = append(files, file{"memory", "memory.memsw.limit_in_bytes"})
		}
	}
	files = append(files, throttle)
	read := func() map[file]string {
		out := map[file]string{}
		for _, f := range files {
			if m.v2 && !exists(filepath.Join(m.Paths()[unifiedKey], f.name)) {
				continue // memory.swap.max without swap accounting
			}
			v := cgFile(t, m, f.controller, f.name)
			if f.name == "devices.list" {
				l := strings.Split(v, "\n")
				sort.Strings(l)
				v = strings.Join(l, "\n")
			}
			out[f] = v
		}
		return out
	}
	before := read()

	upd := &specs.LinuxResources{
		Pids: &specs.LinuxPids{Limit: ptr(int64(20))},
		// Down to 16 MiB with swap: on v1 memory.memsw must go down after the limit and
		// come back up before it, which restore's rounds take care of.
		Memory:  &specs.LinuxMemory{Limit: ptr(int64(16 << 20)), Swap: ptr(int64(16 << 20))},
		BlockIO: &specs.LinuxBlockIO{},
	}
	if !memsw && !v2 {
		upd.Memory.Swap = nil
	}
	if !v2 {
		upd.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: ptr(int64(10)), Minor: ptr(int64(200)), Access: "rw"}}
	}
	// A real disk first, which takes the throttle (a key restore must take away again),
	// then one that cannot exist (major 4095 is the highest, and unassigned).
	if ma, mi, ok := wholeDisk(t); ok {
		upd.BlockIO.ThrottleReadBpsDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: ma, Minor: mi}, Rate: 1 << 20}}
	}
	upd.BlockIO.ThrottleWriteBpsDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 4095, Minor: 4095}, Rate: 1 << 20}}

	err = m.update(upd)
	if err == nil {
		t.Fatal("an update with a throttle for a device that does not exist succeeded")
	}
	if !strings.Contains(err.Error(), "the previous limits are back in place") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line that says the limits were put back", err)
	}
	after := read()
	for _, f := range files {
		if after[f] != before[f] {
			t.Errorf("%s after the failed update: %q, want %q as before", f.name, after[f], before[f])
		}
	}

	// Validate refuses the same update before anything is written.
	if err := m.Set(upd); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "blockIO.throttleWriteBpsDevice[0]") {
		t.Errorf("Set with a throttle for no device: %v, want it refused naming the field", err)
	}
}

// TestSetKeepsDefaultDevices: an update's device rules get the default ones after them, as
// create's do, so that allowing one more device does not take /dev/null away.
func TestSetKeepsDefaultDevices(t *testing.T) {
	needRoot(t)
	if ocg.IsCgroup2UnifiedMode() {
		t.Skip("reads the v1 devices.list")
	}
	res := &specs.LinuxResources{Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, DefaultDeviceRules()...)}
	m, err := New(DriverCgroupfs, testPath(t), res, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	upd := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: ptr(int64(10)), Minor: ptr(int64(200)), Access: "rw"}}
	if err := m.Set(&specs.LinuxResources{Devices: upd}); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(cgFile(t, m, "devices", "devices.list"), "\n")
	for _, want := range []string{"c 10:200 rw", "c 1:3 rwm", "c 136:* rwm", "c *:* m"} {
		if !slices.Contains(got, want) {
			t.Errorf("devices.list %q lacks %q", got, want)
		}
	}

	// What a failed update puts back: the saved devices.list, in any state it was left in.
	saved := m.save(&specs.LinuxResources{Devices: upd})
	for _, rules := range [][]specs.LinuxDeviceCgroup{
		{{Allow: false, Access: "rwm"}},
		{{Allow: true, Access: "rwm"}},
	} {
		if err := setDevicesV1(m.Paths()["devices"], rules); err != nil {
			t.Fatal(err)
		}
		if err := restore(saved); err != nil {
			t.Fatal(err)
		}
		now := strings.Split(cgFile(t, m, "devices", "devices.list"), "\n")
		sort.Strings(now)
		sort.Strings(got)
		if !slices.Equal(now, got) {
			t.Errorf("devices.list after restore: %q, want %q", now, got)
		}
	}
}

// TestSetMemoryAboveSwap: on v1, raising memory.limit alone above the current memory+swap
// limit is refused with an error that says what to do, and changes nothing.
func TestSetMemoryAboveSwap(t *testing.T) {
	needRoot(t)
	if ocg.IsCgroup2UnifiedMode() || !exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") {
		t.Skip("needs cgroup v1 swap accounting (memory.memsw.limit_in_bytes)")
	}
	m, err := New(DriverCgroupfs, testPath(t), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(32 << 20))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	err = m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}})
	checkFieldError(t, "limit above swap", err, "memory.limit")
	if err != nil && !strings.Contains(err.Error(), "set memory.swap too") {
		t.Errorf("error %q does not say to set memory.swap", err)
	}
	if got := cgFile(t, m, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(32<<20) {
		t.Errorf("memory.limit_in_bytes = %s after the refused update", got)
	}
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Swap: ptr(int64(64 << 20))}}); err != nil {
		t.Fatal(err)
	}
	if got := cgFile(t, m, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes = %s after raising both", got)
	}
	// -1 (no limit) without swap is fine: the library lifts swap with it.
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-1))}}); err != nil {
		t.Error(err)
	}
}

// TestRestoreKeyed checks the per-device restore on a plain directory standing in for a
// cgroup (each write replaces the file, so only the last write is seen).
func TestRestoreKeyed(t *testing.T) {
	// The library's test mode truncates on write, as a cgroup file is replaced by a write.
	ocg.TestMode = true
	defer func() { ocg.TestMode = false }()
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := savedFile{limitFile: limitFile{dir: dir, name: "f", kind: keyedFile, reset: "0"}, val: "8:0 100\n"}
	write("8:0 100\n7:0 5\n")
	if err := f.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "7:0 0" {
		t.Errorf("restore wrote %q last, want the new key reset", b)
	}
	write("8:0 200\n")
	if err := f.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "8:0 100" {
		t.Errorf("restore wrote %q, want the old line back", b)
	}
	// Nothing changed: nothing written.
	write("8:0   100\n")
	if err := f.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "8:0   100\n" {
		t.Errorf("restore of an unchanged file wrote %q", b)
	}
	// "default" lines of v1 weight_device files are left alone.
	f = savedFile{limitFile: limitFile{dir: dir, name: "f", kind: keyedFile, reset: "0", noDefault: true}, val: "default 100\n"}
	write("default 500\n")
	if err := f.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "default 500\n" {
		t.Errorf("restore wrote %q into a weight_device file's default", b)
	}
	// oom_control: only the writable key.
	o := savedFile{limitFile: limitFile{dir: dir, name: "f", kind: oomControl}, val: "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}
	write("oom_kill_disable 1\nunder_oom 0\noom_kill 4\n")
	if err := o.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "0" {
		t.Errorf("oom_control restore wrote %q, want 0", b)
	}
}
