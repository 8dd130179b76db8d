package cgroups

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fieldError is one problem with one field of linux.resources. It wraps
// errors.ErrUnsupported when the value is fine but this host cannot honour it.
type fieldError struct {
	field       string // below linux.resources, e.g. "blockIO.weight"
	msg         string
	unsupported bool
}

func (e *fieldError) Error() string {
	return "cgroups: linux.resources." + e.field + ": " + e.msg
}

func (e *fieldError) Unwrap() error {
	if e.unsupported {
		return errors.ErrUnsupported
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return &fieldError{field: field, msg: "invalid value: " + fmt.Sprintf(format, args...)}
}

func unsupported(field, why string) error {
	return &fieldError{field: field, msg: "not supported on this host (" + why + ")", unsupported: true}
}

// Validate checks that r (nil: no limits) can be honoured on this host, without creating
// anything: values first (the same answer on every host), then whether this host has the
// controllers and files each set field needs. The error names the first offending field
// in one line, e.g. "cgroups: linux.resources.blockIO.weight: not supported on this host
// (no blkio.weight or blkio.bfq.weight)"; it wraps errors.ErrUnsupported when the value is
// valid but the host lacks what it needs. Zero values of numeric limits mean "not set", as
// in runc, except pids.limit where 0 is a limit and -1 none. The kernel memory limits are
// obsolete and only -1 is accepted for them; rdma needs the rdma controller, the network
// fields net_cls and net_prio (cgroup v1 only), unified keys a unified cgroup v2 host (not
// a hybrid one, as with runc); per-device block I/O settings need the device to be a whole
// disk of this host, and BFQ per-device weights a device that uses BFQ.
//
// Privileges: root, like the rest of the package; Validate only reads cgroupfs, sysfs and
// mountinfo.
func Validate(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if err := checkValues(r); err != nil {
		return err
	}
	h, err := probeHost()
	if err != nil {
		return err
	}
	return h.check(r)
}

// named is a field name and its value, to check several alike in a fixed order.
type named struct {
	name string
	v    *int64
}

// pageSizeRE is compiled on first use: a regexp compiled at package init costs every
// starter's start.
var pageSizeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[1-9][0-9]*[KMG]B$`) })

// checkValues refuses values that are wrong on any host.
func checkValues(r *specs.LinuxResources) error {
	for i, d := range r.Devices {
		f := fmt.Sprintf("devices[%d]", i)
		if !slices.Contains([]string{"", "a", "b", "c"}, d.Type) {
			return invalid(f+".type", "%q (want a, b or c)", d.Type)
		}
		for _, n := range []named{{"major", d.Major}, {"minor", d.Minor}} {
			if n.v != nil && *n.v < -1 {
				return invalid(f+"."+n.name, "%d (want a device number, or -1 or unset for all)", *n.v)
			}
		}
		acc, ok := parseAccess(d.Access)
		if !ok {
			return invalid(f+".access", "%q (want a combination of r, w and m)", d.Access)
		}
		if devType(d.Type) == 'a' && (devNumber(d.Major) != -1 || devNumber(d.Minor) != -1 || acc != accAll) {
			return invalid(f, "a rule for all device types must leave major and minor unset and have access rwm (it sets the default)")
		}
	}
	if m := r.Memory; m != nil {
		for _, n := range []named{{"limit", m.Limit}, {"reservation", m.Reservation}, {"swap", m.Swap}} {
			if n.v != nil && *n.v < -1 {
				return invalid("memory."+n.name, "%d (want bytes, or -1 for unlimited)", *n.v)
			}
		}
		if swap := deref(m.Swap); swap > 0 {
			limit := deref(m.Limit)
			if limit <= 0 {
				return invalid("memory.swap", "%d needs memory.limit set too (swap limits memory+swap)", swap)
			}
			if swap < limit {
				return invalid("memory.swap", "%d is less than memory.limit %d (swap limits memory+swap)", swap, limit)
			}
		}
		if m.Swappiness != nil && *m.Swappiness > 100 {
			return invalid("memory.swappiness", "%d (want 0 to 100)", *m.Swappiness)
		}
		//lint:ignore SA1019 the field is deprecated, and so refused unless it asks for nothing.
		for _, n := range []named{{"kernel", m.Kernel}, {"kernelTCP", m.KernelTCP}} {
			if n.v != nil && *n.v != -1 {
				return unsupported("memory."+n.name, "kernel memory limits are obsolete; only -1 is accepted")
			}
		}
		if m.UseHierarchy != nil && !*m.UseHierarchy {
			return unsupported("memory.useHierarchy", "memory accounting is always hierarchical on current kernels")
		}
	}
	if c := r.CPU; c != nil {
		if s := deref(c.Shares); s != 0 && (s < 2 || s > 262144) {
			return invalid("cpu.shares", "%d (want 2 to 262144)", s)
		}
		if q := deref(c.Quota); q < -1 || (q > 0 && q < 1000) {
			return invalid("cpu.quota", "%d (want at least 1000 µs, or -1 for none)", q)
		}
		if p := deref(c.Period); p != 0 && (p < 1000 || p > 1000000) {
			return invalid("cpu.period", "%d (want 1000 to 1000000 µs)", p)
		}
		if b, q := deref(c.Burst), deref(c.Quota); q > 0 && b > uint64(q) {
			return invalid("cpu.burst", "%d is more than cpu.quota %d", b, q)
		}
		rt, rp := deref(c.RealtimeRuntime), deref(c.RealtimePeriod)
		if rt < -1 {
			return invalid("cpu.realtimeRuntime", "%d (want µs, or -1 for no limit)", rt)
		}
		if rp > 0 && rt > 0 && uint64(rt) > rp {
			return invalid("cpu.realtimeRuntime", "%d is more than cpu.realtimePeriod %d", rt, rp)
		}
		if _, err := parseList(c.Cpus); err != nil {
			return invalid("cpu.cpus", "%q: %v", c.Cpus, err)
		}
		if _, err := parseList(c.Mems); err != nil {
			return invalid("cpu.mems", "%q: %v", c.Mems, err)
		}
		if c.Idle != nil && *c.Idle != 0 && *c.Idle != 1 {
			return invalid("cpu.idle", "%d (want 0 or 1)", *c.Idle)
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit < -1 {
		return invalid("pids.limit", "%d (want a number of tasks, or -1 for none)", *p.Limit)
	}
	if b := r.BlockIO; b != nil {
		weight := func(f string, w *uint16, zeroOK bool) error {
			if w != nil && !(zeroOK && *w == 0) && (*w < 10 || *w > 1000) {
				return invalid(f, "%d (want 10 to 1000)", *w)
			}
			return nil
		}
		if err := weight("blockIO.weight", b.Weight, true); err != nil {
			return err
		}
		if err := weight("blockIO.leafWeight", b.LeafWeight, true); err != nil {
			return err
		}
		for i, wd := range b.WeightDevice {
			f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
			if wd.Major < 0 || wd.Minor < 0 {
				return invalid(f, "device %d:%d", wd.Major, wd.Minor)
			}
			if wd.Weight == nil && wd.LeafWeight == nil {
				return invalid(f, "neither weight nor leafWeight is set")
			}
			if err := weight(f+".weight", wd.Weight, false); err != nil {
				return err
			}
			if err := weight(f+".leafWeight", wd.LeafWeight, false); err != nil {
				return err
			}
		}
		for _, tl := range throttleLists(b) {
			for i, td := range tl.list {
				if td.Major < 0 || td.Minor < 0 {
					return invalid(fmt.Sprintf("blockIO.%s[%d]", tl.name, i), "device %d:%d", td.Major, td.Minor)
				}
			}
		}
	}
	for i, h := range r.HugepageLimits {
		if !pageSizeRE().MatchString(h.Pagesize) {
			return invalid(fmt.Sprintf("hugepageLimits[%d].pageSize", i), "%q (want a size such as 2MB or 1GB)", h.Pagesize)
		}
	}
	if n := r.Network; n != nil {
		for i, p := range n.Priorities {
			if p.Name == "" || strings.ContainsAny(p.Name, " \t\n/\x00") {
				return invalid(fmt.Sprintf("network.priorities[%d].name", i), "%q (want an interface name)", p.Name)
			}
		}
	}
	for _, dev := range slices.Sorted(maps.Keys(r.Rdma)) {
		l := r.Rdma[dev]
		if dev == "" || strings.ContainsAny(dev, " \t\n/\x00") {
			return invalid("rdma", "device name %q", dev)
		}
		if l.HcaHandles == nil && l.HcaObjects == nil {
			return invalid("rdma."+dev, "neither hcaHandles nor hcaObjects is set")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
		v := r.Unified[k]
		f := "unified." + k
		c, param, ok := strings.Cut(k, ".")
		if !ok || c == "" || param == "" || strings.ContainsAny(k, "/\x00\n ") {
			return invalid(f, "the key must be a cgroup v2 file name, controller.parameter")
		}
		if slices.Contains([]string{"cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.freeze", "cgroup.subtree_control", "cgroup.type"}, k) {
			return invalid(f, "this file is managed by kerr, not by limits")
		}
		if strings.ContainsRune(v, 0) {
			return invalid(f, "the value contains a NUL")
		}
	}
	return nil
}

// throttleList is one of blockIO's throttle lists, with its field name and v1 file.
type throttleList struct {
	name, v1file string
	list         []specs.LinuxThrottleDevice
}

func throttleLists(b *specs.LinuxBlockIO) []throttleList {
	return []throttleList{
		{"throttleReadBpsDevice", "blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"throttleWriteBpsDevice", "blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"throttleReadIOPSDevice", "blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	}
}

// parseList reads a cpuset list ("0-3,7"; "" is none) into its members.
func parseList(s string) ([]int, error) {
	var out []int
	if s == "" {
		return nil, nil
	}
	const limit = 1 << 16
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a >= limit {
			return nil, fmt.Errorf("bad number %q", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b >= limit {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// hostInfo is what this host's cgroups offer.
type hostInfo struct {
	v2    bool
	v1    map[string]string // v1 controller -> mountpoint
	v2ctl map[string]bool   // controllers of the v2 root cgroup
}

// v2Root is where a unified cgroup v2 host mounts cgroupfs (as the library assumes).
const v2Root = "/sys/fs/cgroup"

// hybridRoot is where a hybrid host mounts its cgroup2 hierarchy (as the library assumes).
const hybridRoot = "/sys/fs/cgroup/unified"

// hybridHas reports whether this is a hybrid host whose cgroup2 hierarchy has controller c.
func hybridHas(c string) bool {
	if !ocg.IsCgroup2HybridMode() {
		return false
	}
	data, err := os.ReadFile(filepath.Join(hybridRoot, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(data)), c)
}

func probeHost() (*hostInfo, error) {
	h := &hostInfo{v2: ocg.IsCgroup2UnifiedMode(), v1: map[string]string{}, v2ctl: map[string]bool{}}
	if h.v2 {
		data, err := os.ReadFile(filepath.Join(v2Root, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("cgroups: reading the cgroup v2 controllers: %w", err)
		}
		for _, c := range strings.Fields(string(data)) {
			h.v2ctl[c] = true
		}
		return h, nil
	}
	mounts, err := ocg.GetCgroupMounts(false)
	if err != nil {
		return nil, fmt.Errorf("cgroups: finding the cgroup v1 mounts: %w", err)
	}
	for _, mnt := range mounts {
		for _, c := range mnt.Subsystems {
			h.v1[c] = mnt.Mountpoint
		}
	}
	return h, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// need says whether the host has controller ctrl and, on v1, file in its root cgroup (""
// for any). Files that only exist below the root are checked by the callers.
func (h *hostInfo) need(field, ctrl, file string) error {
	if h.v2 {
		if !h.v2ctl[ctrl] {
			return unsupported(field, "no "+ctrl+" controller in cgroup v2")
		}
		return nil
	}
	mp, ok := h.v1[ctrl]
	if !ok {
		return unsupported(field, "no "+ctrl+" controller")
	}
	if file != "" && !exists(filepath.Join(mp, file)) {
		return unsupported(field, "no "+file)
	}
	return nil
}

// v1Only refuses field on cgroup v2 hosts.
func (h *hostInfo) v1Only(field, why string) error {
	if h.v2 {
		return unsupported(field, why)
	}
	return nil
}

// check refuses set fields this host cannot honour. Values were checked already.
func (h *hostInfo) check(r *specs.LinuxResources) error {
	// On cgroup v2 device rules are an eBPF program, which the library loads.
	if len(r.Devices) > 0 && !h.v2 {
		if err := h.need("devices", "devices", "devices.allow"); err != nil {
			return err
		}
	}
	if err := h.checkMemory(r.Memory); err != nil {
		return err
	}
	if err := h.checkCPU(r.CPU); err != nil {
		return err
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		if err := h.need("pids.limit", "pids", ""); err != nil {
			return err
		}
	}
	if err := h.checkBlockIO(r.BlockIO); err != nil {
		return err
	}
	for i, l := range r.HugepageLimits {
		f := fmt.Sprintf("hugepageLimits[%d]", i)
		if err := h.need(f, "hugetlb", ""); err != nil {
			if !h.v2 && hybridHas("hugetlb") {
				// The kernel has the controller, bound to the cgroup2 hierarchy of a hybrid
				// host, where kerr does not set limits (see unified below).
				return unsupported(f, "no hugetlb controller in cgroup v1: this hybrid host has it in its cgroup2 hierarchy only, where kerr sets no limits")
			}
			return err
		}
		if sizes := ocg.HugePageSizes(); !slices.Contains(sizes, l.Pagesize) {
			return unsupported(f+".pageSize", fmt.Sprintf("no %s huge pages; the host has %s", l.Pagesize, listOrNone(sizes)))
		}
	}
	if n := r.Network; n != nil {
		if n.ClassID != nil {
			if err := h.v1Only("network.classID", "net_cls is a cgroup v1 controller"); err != nil {
				return err
			}
			if err := h.need("network.classID", "net_cls", "net_cls.classid"); err != nil {
				return err
			}
		}
		if len(n.Priorities) > 0 {
			if err := h.v1Only("network.priorities", "net_prio is a cgroup v1 controller"); err != nil {
				return err
			}
			if err := h.need("network.priorities", "net_prio", "net_prio.ifpriomap"); err != nil {
				return err
			}
		}
	}
	if len(r.Rdma) > 0 {
		if err := h.need("rdma", "rdma", ""); err != nil {
			return err
		}
	}
	if len(r.Unified) > 0 {
		if !h.v2 {
			// As runc ("cannot use unified on cgroup v1"), also on a hybrid host: its
			// limits are set in the v1 hierarchies, and a key of the cgroup2 one would go
			// unenforced or fight them. The error names the first key, in sorted order.
			why := "cgroup v2 keys need a unified cgroup v2 host; this one is cgroup v1"
			if ocg.IsCgroup2HybridMode() {
				why = "cgroup v2 keys need a unified cgroup v2 host; this one is hybrid, and kerr sets limits in its cgroup v1 hierarchies only, as runc does"
			}
			return unsupported("unified."+slices.Sorted(maps.Keys(r.Unified))[0], why)
		}
		for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
			if c, _, _ := strings.Cut(k, "."); c != "cgroup" {
				if err := h.need("unified."+k, c, ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (h *hostInfo) checkMemory(m *specs.LinuxMemory) error {
	if m == nil {
		return nil
	}
	type req struct {
		set   bool
		field string
		file  string // v1
	}
	for _, q := range []req{
		{deref(m.Limit) != 0, "memory.limit", "memory.limit_in_bytes"},
		{deref(m.Reservation) != 0, "memory.reservation", "memory.soft_limit_in_bytes"},
		{deref(m.Swap) != 0, "memory.swap", "memory.memsw.limit_in_bytes"},
		{m.Swappiness != nil, "memory.swappiness", "memory.swappiness"},
		{deref(m.DisableOOMKiller), "memory.disableOOMKiller", "memory.oom_control"},
		{deref(m.CheckBeforeUpdate), "memory.checkBeforeUpdate", ""},
	} {
		if !q.set {
			continue
		}
		if err := h.need(q.field, "memory", q.file); err != nil {
			if q.field == "memory.swap" && !h.v2 {
				return unsupported(q.field, "no memory.memsw.limit_in_bytes: swap accounting is off")
			}
			return err
		}
	}
	if m.Swappiness != nil {
		if err := h.v1Only("memory.swappiness", "cgroup v2 has no per-cgroup swappiness"); err != nil {
			return err
		}
	}
	if deref(m.DisableOOMKiller) {
		if err := h.v1Only("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer"); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostInfo) checkCPU(c *specs.LinuxCPU) error {
	if c == nil {
		return nil
	}
	type req struct {
		set   bool
		field string
		file  string // v1
	}
	for _, q := range []req{
		{deref(c.Shares) != 0, "cpu.shares", "cpu.shares"},
		{deref(c.Quota) != 0, "cpu.quota", "cpu.cfs_quota_us"},
		{deref(c.Period) != 0, "cpu.period", "cpu.cfs_period_us"},
		{c.Burst != nil, "cpu.burst", "cpu.cfs_burst_us"},
		{deref(c.RealtimeRuntime) != 0, "cpu.realtimeRuntime", "cpu.rt_runtime_us"},
		{deref(c.RealtimePeriod) != 0, "cpu.realtimePeriod", "cpu.rt_period_us"},
		{c.Idle != nil, "cpu.idle", "cpu.idle"},
	} {
		if !q.set {
			continue
		}
		if strings.HasPrefix(q.field, "cpu.realtime") {
			if err := h.v1Only(q.field, "cgroup v2 has no realtime CPU limits"); err != nil {
				return err
			}
		}
		if err := h.need(q.field, "cpu", q.file); err != nil {
			return err
		}
	}
	for _, q := range []struct{ field, list, v1file, v2file string }{
		{"cpu.cpus", c.Cpus, "cpuset.effective_cpus", "cpuset.cpus.effective"},
		{"cpu.mems", c.Mems, "cpuset.effective_mems", "cpuset.mems.effective"},
	} {
		if q.list == "" {
			continue
		}
		if err := h.need(q.field, "cpuset", ""); err != nil {
			return err
		}
		file := filepath.Join(v2Root, q.v2file)
		if !h.v2 {
			file = filepath.Join(h.v1["cpuset"], q.v1file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			continue // the kernel will judge when Apply writes it
		}
		have, err := parseList(strings.TrimSpace(string(data)))
		if err != nil {
			continue
		}
		want, _ := parseList(q.list)
		for _, n := range want {
			if !slices.Contains(have, n) {
				return unsupported(q.field, fmt.Sprintf("%d is not available; the host has %s", n, listOrNone([]string{strings.TrimSpace(string(data))})))
			}
		}
	}
	return nil
}

func (h *hostInfo) checkBlockIO(b *specs.LinuxBlockIO) error {
	if b == nil {
		return nil
	}
	ctrl := "blkio"
	if h.v2 {
		ctrl = "io"
	}
	// v1 with BFQ has blkio.bfq.weight(_device) only below the root; its statistics files
	// are in the root too.
	bfq := !h.v2 && exists(filepath.Join(h.v1[ctrl], "blkio.bfq.io_service_bytes"))
	weightV1 := func(field, file string) error {
		if err := h.need(field, ctrl, ""); err != nil {
			return err
		}
		if !h.v2 && !bfq && !exists(filepath.Join(h.v1[ctrl], file)) {
			return unsupported(field, "no "+file+" or "+strings.Replace(file, "blkio.", "blkio.bfq.", 1))
		}
		return nil
	}
	leaf := func(field, file string) error {
		if err := h.v1Only(field, "cgroup v2 has no leaf weights"); err != nil {
			return err
		}
		return h.need(field, ctrl, file)
	}
	if deref(b.Weight) != 0 {
		if err := weightV1("blockIO.weight", "blkio.weight"); err != nil {
			return err
		}
	}
	if deref(b.LeafWeight) != 0 {
		if err := leaf("blockIO.leafWeight", "blkio.leaf_weight"); err != nil {
			return err
		}
	}
	// CFQ (v1 blkio.weight_device in the root) weighs any device; otherwise per-device
	// weights are BFQ's (v1 blkio.bfq.weight_device, v2 io.bfq.weight), which the kernel
	// takes only for a device that uses BFQ (EOPNOTSUPP), and which the library leaves
	// out without a word on v2 when there is no BFQ.
	cfq := !h.v2 && exists(filepath.Join(h.v1[ctrl], "blkio.weight_device"))
	for i, wd := range b.WeightDevice {
		f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
		if err := checkBlockDevice(f, wd.Major, wd.Minor); err != nil {
			return err
		}
		if wd.Weight != nil {
			if err := weightV1(f+".weight", "blkio.weight_device"); err != nil {
				return err
			}
			if !cfq {
				if err := checkBFQ(f+".weight", wd.Major, wd.Minor); err != nil {
					return err
				}
			}
		}
		if wd.LeafWeight != nil {
			if err := leaf(f+".leafWeight", "blkio.leaf_weight_device"); err != nil {
				return err
			}
		}
	}
	for _, tl := range throttleLists(b) {
		if len(tl.list) == 0 {
			continue
		}
		if err := h.need("blockIO."+tl.name, ctrl, tl.v1file); err != nil {
			return err
		}
		for i, td := range tl.list {
			if err := checkBlockDevice(fmt.Sprintf("blockIO.%s[%d]", tl.name, i), td.Major, td.Minor); err != nil {
				return err
			}
		}
	}
	return nil
}

// sysBlock is where sysfs lists block devices by number.
var sysBlock = "/sys/dev/block"

// checkBlockDevice refuses a per-device blockIO setting for a device the kernel would
// refuse it for (ENODEV, after the settings before it were written): one this host does
// not have, or a partition (the kernel's block cgroup settings are per whole disk).
func checkBlockDevice(field string, major, minor int64) error {
	dev := fmt.Sprintf("%d:%d", major, minor)
	p := filepath.Join(sysBlock, dev)
	if !exists(p) {
		return unsupported(field, "no block device "+dev+" on this host")
	}
	if exists(filepath.Join(p, "partition")) {
		return unsupported(field, "block device "+dev+" is a partition; block I/O limits apply to whole disks")
	}
	return nil
}

// checkBFQ refuses a BFQ per-device weight for a device that does not use BFQ.
func checkBFQ(field string, major, minor int64) error {
	dev := fmt.Sprintf("%d:%d", major, minor)
	data, err := os.ReadFile(filepath.Join(sysBlock, dev, "queue", "scheduler"))
	if err != nil {
		return unsupported(field, "block device "+dev+" has no I/O scheduler; per-device weights need BFQ")
	}
	sched := strings.TrimSpace(string(data))
	if strings.Contains(sched, "[bfq]") {
		return nil
	}
	cur := sched
	if i, j := strings.IndexByte(sched, '['), strings.IndexByte(sched, ']'); i >= 0 && j > i {
		cur = sched[i+1 : j]
	}
	return unsupported(field, "block device "+dev+" uses the "+cur+" I/O scheduler; per-device weights need BFQ here")
}

func listOrNone(l []string) string {
	if len(l) == 0 || len(l) == 1 && l[0] == "" {
		return "none"
	}
	return strings.Join(l, ", ")
}
