package cgroups

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A failed update must leave the container as it was. The library writes one file after
// another and stops at the first one the kernel refuses (a memory limit below the current
// usage, a realtime runtime the parent cannot give, ...): without care, the files written
// before it would keep their new values while `update` reports failure and the stored
// config still says the old ones. Set therefore saves every limit file the update may
// write, and when it fails writes back those that changed.

// fileKind says how a saved limit file is put back.
type fileKind int

const (
	// plainFile holds one value, written back whole.
	plainFile fileKind = iota
	// keyedFile holds one line per device (or interface), "KEY VALUE...": the saved lines
	// that differ are written back one by one, and keys the update added are reset.
	keyedFile
	// oomControl is v1 memory.oom_control: only oom_kill_disable can be written.
	oomControl
	// devicesList is v1 devices.list, put back through devices.deny and devices.allow.
	devicesList
)

// limitFile is one file Set may write.
type limitFile struct {
	dir, name string
	kind      fileKind
	// reset, for a keyedFile, follows a key to remove the setting the update added for it
	// ("0" for v1 throttles; "" when there is nothing to undo, e.g. net_prio.ifpriomap,
	// which lists every interface).
	reset string
	// noDefault, for a keyedFile, skips its "default N" line: v1 blkio.bfq.weight_device
	// shows blkio.bfq.weight there, but does not take it back.
	noDefault bool
}

// savedFile is a limitFile with what it held before the update.
type savedFile struct {
	limitFile
	val string
}

// limitFiles lists the files that Set(r) may write in m's cgroup, by section of r: the
// whole section, whether or not each field is set, since the library derives some writes
// from others (swap from memory, period from quota).
func (m *Manager) limitFiles(r *specs.LinuxResources) []limitFile {
	var out []limitFile
	add := func(ctrl string, kind fileKind, reset string, names ...string) {
		dir := m.dir(ctrl)
		if dir == "" {
			return
		}
		for _, n := range names {
			out = append(out, limitFile{dir: dir, name: n, kind: kind, reset: reset})
		}
	}
	if m.v2 {
		if r.Memory != nil {
			add("memory", plainFile, "", "memory.max", "memory.swap.max", "memory.low")
		}
		if r.CPU != nil {
			add("cpu", plainFile, "", "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems")
		}
		if r.Pids != nil {
			add("pids", plainFile, "", "pids.max")
		}
		if r.BlockIO != nil {
			add("io", keyedFile, "default", "io.weight", "io.bfq.weight")
			add("io", keyedFile, "rbps=max wbps=max riops=max wiops=max", "io.max")
		}
		for _, l := range r.HugepageLimits {
			add("hugetlb", plainFile, "", "hugetlb."+l.Pagesize+".max", "hugetlb."+l.Pagesize+".rsvd.max")
		}
		if len(r.Rdma) > 0 {
			add("rdma", keyedFile, "hca_handle=max hca_object=max", "rdma.max")
		}
		for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
			switch k {
			case "io.max":
				add("", keyedFile, "rbps=max wbps=max riops=max wiops=max", k)
			case "io.weight", "io.bfq.weight":
				add("", keyedFile, "default", k)
			case "rdma.max":
				add("", keyedFile, "hca_handle=max hca_object=max", k)
			default:
				add("", plainFile, "", k)
			}
		}
		// Device rules on v2 are an eBPF program, which the library replaces whole; there
		// is no file to save.
		return out
	}
	if len(r.Devices) > 0 {
		add("devices", devicesList, "", "devices.list")
	}
	if r.Memory != nil {
		add("memory", plainFile, "", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
			"memory.soft_limit_in_bytes", "memory.swappiness")
		add("memory", oomControl, "", "memory.oom_control")
	}
	if r.CPU != nil {
		add("cpu", plainFile, "", "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us",
			"cpu.rt_period_us", "cpu.rt_runtime_us", "cpu.idle")
		// "cpus" and "mems" for a cpuset hierarchy mounted with noprefix.
		add("cpuset", plainFile, "", "cpuset.cpus", "cpuset.mems", "cpus", "mems")
	}
	if r.Pids != nil {
		add("pids", plainFile, "", "pids.max")
	}
	if r.BlockIO != nil {
		add("blkio", plainFile, "", "blkio.weight", "blkio.bfq.weight", "blkio.leaf_weight")
		n := len(out)
		add("blkio", keyedFile, "0", "blkio.weight_device", "blkio.bfq.weight_device", "blkio.leaf_weight_device")
		for i := n; i < len(out); i++ {
			out[i].noDefault = true
		}
		add("blkio", keyedFile, "0", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
			"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device")
	}
	for _, l := range r.HugepageLimits {
		add("hugetlb", plainFile, "", "hugetlb."+l.Pagesize+".limit_in_bytes", "hugetlb."+l.Pagesize+".rsvd.limit_in_bytes")
	}
	if n := r.Network; n != nil {
		add("net_cls", plainFile, "", "net_cls.classid")
		add("net_prio", keyedFile, "", "net_prio.ifpriomap")
	}
	if len(r.Rdma) > 0 {
		add("rdma", keyedFile, "hca_handle=max hca_object=max", "rdma.max")
	}
	return out
}

// save reads the files Set(r) may write; those that do not exist (or cannot be read) are
// left out: the update cannot have written them either.
func (m *Manager) save(r *specs.LinuxResources) []savedFile {
	var out []savedFile
	for _, f := range m.limitFiles(r) {
		val, err := ocg.ReadFile(f.dir, f.name)
		if err != nil {
			continue
		}
		out = append(out, savedFile{limitFile: f, val: val})
	}
	return out
}

// restore writes back the saved files that changed. Some limits depend on each other
// (v1: memory.limit_in_bytes may not exceed memory.memsw.limit_in_bytes; cfs period and
// quota against the parent's), so a write the kernel refuses is tried again after the
// others, for as long as each round puts back at least one more file.
func restore(saved []savedFile) error {
	pending := saved
	for len(pending) > 0 {
		var next []savedFile
		var errs []error
		for _, f := range pending {
			if err := f.restore(); err != nil {
				next = append(next, f)
				errs = append(errs, err)
			}
		}
		if len(next) == len(pending) {
			return errors.Join(errs...)
		}
		pending = next
	}
	return nil
}

func (f savedFile) restore() error {
	cur, err := ocg.ReadFile(f.dir, f.name)
	if err != nil {
		return err
	}
	switch f.kind {
	case oomControl:
		want, have := keyValue(f.val, "oom_kill_disable"), keyValue(cur, "oom_kill_disable")
		if want == "" || want == have {
			return nil
		}
		return ocg.WriteFile(f.dir, f.name, want)
	case devicesList:
		return restoreDevices(f.dir, f.val, cur)
	case keyedFile:
		return f.restoreKeyed(cur)
	}
	if strings.TrimSpace(cur) == strings.TrimSpace(f.val) {
		return nil
	}
	return ocg.WriteFile(f.dir, f.name, strings.TrimSpace(f.val))
}

// restoreKeyed resets the keys that appeared since the save, then writes back each saved
// line that is not there as it was.
func (f savedFile) restoreKeyed(cur string) error {
	old, now := keyedLines(f.val, f.noDefault), keyedLines(cur, f.noDefault)
	if f.reset != "" {
		for _, k := range now.keys {
			if _, ok := old.line[k]; !ok {
				if err := ocg.WriteFile(f.dir, f.name, k+" "+f.reset); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range old.keys {
		if now.line[k] == old.line[k] {
			continue
		}
		if err := ocg.WriteFile(f.dir, f.name, old.line[k]); err != nil {
			return err
		}
	}
	return nil
}

type keyed struct {
	keys []string          // in the file's order
	line map[string]string // key -> its whole line, spaces normalised
}

func keyedLines(s string, noDefault bool) keyed {
	k := keyed{line: map[string]string{}}
	for l := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || noDefault && f[0] == "default" {
			continue
		}
		if _, dup := k.line[f[0]]; !dup {
			k.keys = append(k.keys, f[0])
		}
		k.line[f[0]] = strings.Join(f, " ")
	}
	return k
}

// keyValue returns the value of "key VALUE" in a flat-keyed file ("" if absent).
func keyValue(s, key string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// restoreDevices puts a v1 devices cgroup back to the devices.list it had: allow-all, or
// deny-all and the allowed exceptions. (An allow-all cgroup with denied exceptions lists
// as allow-all, so those exceptions are not saved; kerr never makes one: its rules always
// end in deny-all plus exceptions, see setDevicesV1.)
func restoreDevices(dir, saved, cur string) error {
	want, got := listLines(saved), listLines(cur)
	if slices.Equal(sorted(want), sorted(got)) {
		return nil
	}
	if slices.Equal(want, []string{"a *:* rwm"}) {
		return ocg.WriteFile(dir, "devices.allow", "a")
	}
	if err := ocg.WriteFile(dir, "devices.deny", "a"); err != nil {
		return err
	}
	for _, l := range want {
		if err := ocg.WriteFile(dir, "devices.allow", l); err != nil {
			return err
		}
	}
	if now, err := readDevicesList(dir); err != nil {
		return err
	} else if !slices.Equal(now, sorted(want)) {
		return fmt.Errorf("devices.list is %q after restoring it, want %q", now, sorted(want))
	}
	return nil
}

func listLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func sorted(l []string) []string {
	return slices.Sorted(slices.Values(l))
}
