package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestValidateValues: values wrong on any host, so the answers do not depend on it.
func TestValidateValues(t *testing.T) {
	dev := func(d specs.LinuxDeviceCgroup) *specs.LinuxResources {
		return &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{d}}
	}
	for _, c := range []struct {
		name  string
		r     *specs.LinuxResources
		field string // "" for valid
	}{
		{"nil", nil, ""},
		{"empty", &specs.LinuxResources{}, ""},
		{"device type", dev(specs.LinuxDeviceCgroup{Type: "p", Access: "rwm"}), "devices[0].type"},
		{"device access empty", dev(specs.LinuxDeviceCgroup{Type: "c", Access: ""}), "devices[0].access"},
		{"device access letter", dev(specs.LinuxDeviceCgroup{Type: "c", Access: "rx"}), "devices[0].access"},
		{"device major", dev(specs.LinuxDeviceCgroup{Type: "c", Major: ptr(int64(-2)), Access: "r"}), "devices[0].major"},
		{"device all partial", dev(specs.LinuxDeviceCgroup{Access: "r"}), "devices[0]"},
		{"device all with major", dev(specs.LinuxDeviceCgroup{Type: "a", Major: ptr(int64(8)), Access: "rwm"}), "devices[0]"},
		{"memory limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-2))}}, "memory.limit"},
		{"swap without limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: ptr(int64(1 << 30))}}, "memory.swap"},
		{"swap below limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(2 << 30)), Swap: ptr(int64(1 << 30))}}, "memory.swap"},
		{"swappiness", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptr(uint64(101))}}, "memory.swappiness"},
		//lint:ignore SA1019 the deprecated field must be refused.
		{"kernel", &specs.LinuxResources{Memory: &specs.LinuxMemory{Kernel: ptr(int64(1 << 20))}}, "memory.kernel"},
		{"useHierarchy false", &specs.LinuxResources{Memory: &specs.LinuxMemory{UseHierarchy: ptr(false)}}, "memory.useHierarchy"},
		{"shares", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(1))}}, "cpu.shares"},
		{"quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(10))}}, "cpu.quota"},
		{"period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr(uint64(10))}}, "cpu.period"},
		{"burst", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(5000)), Burst: ptr(uint64(6000))}}, "cpu.burst"},
		{"rt", &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr(int64(2000)), RealtimePeriod: ptr(uint64(1000))}}, "cpu.realtimeRuntime"},
		{"cpus", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-x"}}, "cpu.cpus"},
		{"cpus reversed", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}, "cpu.cpus"},
		{"mems", &specs.LinuxResources{CPU: &specs.LinuxCPU{Mems: "0,,1"}}, "cpu.mems"},
		{"idle", &specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr(int64(2))}}, "cpu.idle"},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-5))}}, "pids.limit"},
		{"blkio weight", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(5000))}}, "blockIO.weight"},
		{"weight device empty", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{}}}}, "blockIO.weightDevice[0]"},
		{"throttle device", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: -1}}}}}, "blockIO.throttleReadBpsDevice[0]"},
		{"page size", &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2M"}}}, "hugepageLimits[0].pageSize"},
		{"interface", &specs.LinuxResources{Network: &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: "a b"}}}}, "network.priorities[0].name"},
		{"rdma empty", &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx4_0": {}}}, "rdma.mlx4_0"},
		{"unified key", &specs.LinuxResources{Unified: map[string]string{"memory": "1"}}, "unified.memory"},
		{"unified slash", &specs.LinuxResources{Unified: map[string]string{"../memory.max": "1"}}, "unified.../memory.max"},
		{"unified procs", &specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}, "unified.cgroup.procs"},
	} {
		err := checkValues(orEmpty(c.r))
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		checkFieldError(t, c.name, err, c.field)
		// Validate gives the same answer whatever the host.
		if err2 := Validate(c.r); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%s: Validate says %v, checkValues %v", c.name, err2, err)
		}
	}
}

func orEmpty(r *specs.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return &specs.LinuxResources{}
	}
	return r
}

// checkFieldError wants err to be one line naming linux.resources.field.
func checkFieldError(t *testing.T, name string, err error, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one about %s", name, field)
		return
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "cgroups: linux.resources."+field+": ") || strings.Contains(msg, "\n") {
		t.Errorf("%s: error %q does not name linux.resources.%s in one line", name, msg, field)
	}
}

// TestValidateHost: what this host supports. Each case says when it should be refused,
// from the host's cgroup files, read here independently of the code under test.
func TestValidateHost(t *testing.T) {
	v2 := ocg.IsCgroup2UnifiedMode()
	v1has := func(controller, file string) bool {
		return !v2 && exists("/sys/fs/cgroup/"+controller+"/"+file)
	}
	v2has := func(c string) bool { return v2 && hasV2Controller(c) }
	for _, c := range []struct {
		name      string
		r         *specs.LinuxResources
		field     string
		supported bool
	}{
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}}, "pids.limit",
			v1has("pids", "cgroup.procs") || v2has("pids")},
		//lint:ignore SA1019 -1, the spec's own example, must be accepted.
		{"memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30)), Kernel: ptr(int64(-1))}}, "memory.limit",
			v1has("memory", "memory.limit_in_bytes") || v2has("memory")},
		{"swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30)), Swap: ptr(int64(2 << 30))}}, "memory.swap",
			v1has("memory", "memory.memsw.limit_in_bytes") || v2has("memory")},
		{"swappiness", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptr(uint64(10))}}, "memory.swappiness",
			v1has("memory", "memory.swappiness")},
		{"oom killer", &specs.LinuxResources{Memory: &specs.LinuxMemory{DisableOOMKiller: ptr(true)}}, "memory.disableOOMKiller",
			v1has("memory", "memory.oom_control")},
		{"rt", &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr(int64(1000))}}, "cpu.realtimeRuntime",
			v1has("cpu", "cpu.rt_runtime_us")},
		{"cpus 0", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}, "cpu.cpus",
			v1has("cpuset", "cpuset.cpus") || v2has("cpuset")},
		{"cpus 65535", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "65535"}}, "cpu.cpus", false},
		{"leaf weight", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: ptr(uint16(500))}}, "blockIO.leafWeight",
			v1has("blkio", "blkio.leaf_weight")},
		{"blkio weight", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(500))}}, "blockIO.weight",
			v1has("blkio", "blkio.weight") || v1has("blkio", "blkio.bfq.io_service_bytes") || v2has("io")},
		{"3MB pages", &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1 << 30}}}, "hugepageLimits[0]", false},
		{"class id", &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: ptr(uint32(0x100001))}}, "network.classID",
			v1has("net_cls", "net_cls.classid")},
		{"rdma", &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx4_0": {HcaHandles: ptr(uint32(2))}}}, "rdma",
			v1has("rdma", "cgroup.procs") || v2has("rdma")},
		{"unified", &specs.LinuxResources{Unified: map[string]string{"nosuch.max": "1"}}, "unified", false},
	} {
		err := Validate(c.r)
		if c.supported {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		// Where the field's own name is more precise than the case's (an index, a key),
		// the error still starts with the case's.
		if err == nil || !strings.HasPrefix(err.Error(), "cgroups: linux.resources."+c.field) ||
			!errors.Is(err, errors.ErrUnsupported) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v; want a one-line unsupported error about %s", c.name, err, c.field)
		}
	}
}

func TestValidateUnifiedOnV2(t *testing.T) {
	if !ocg.IsCgroup2UnifiedMode() {
		// The error names the first key, sorted, so that the user sees what is refused.
		err := Validate(&specs.LinuxResources{Unified: map[string]string{"pids.max": "5", "memory.high": "1G"}})
		checkFieldError(t, "unified on v1", err, "unified.memory.high")
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("unified on v1: %v is not ErrUnsupported", err)
		}
		return
	}
	for _, k := range []string{"memory.high", "pids.max", "cgroup.max.depth"} {
		c, _, _ := strings.Cut(k, ".")
		err := Validate(&specs.LinuxResources{Unified: map[string]string{k: "max"}})
		if (c == "cgroup" || hasV2Controller(c)) != (err == nil) {
			t.Errorf("unified %s: %v", k, err)
		}
	}
}

func TestParseList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"0", []int{0}, true},
		{"0-3,7", []int{0, 1, 2, 3, 7}, true},
		{"2,1", []int{2, 1}, true},
		{"-1", nil, false},
		{"1-", nil, false},
		{"a", nil, false},
		{"0-100000", nil, false},
	} {
		got, err := parseList(c.in)
		if (err == nil) != c.ok || (c.ok && !slices.Equal(got, c.want)) {
			t.Errorf("parseList(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestDevState(t *testing.T) {
	all := func(allow bool) specs.LinuxDeviceCgroup { return specs.LinuxDeviceCgroup{Allow: allow, Access: "rwm"} }
	c := func(allow bool, major, minor *int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: "c", Major: major, Minor: minor, Access: access}
	}
	n := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		want  []string
		err   string
	}{
		{"deny all", []specs.LinuxDeviceCgroup{all(false)}, []string{}, ""},
		{"allow all", []specs.LinuxDeviceCgroup{all(true)}, []string{"a *:* rwm"}, ""},
		{"no leading rule starts from deny", []specs.LinuxDeviceCgroup{c(true, n(1), n(3), "rwm")}, []string{"c 1:3 rwm"}, ""},
		{"merge", []specs.LinuxDeviceCgroup{all(false), c(true, n(1), n(3), "rw"), c(true, n(1), n(3), "m")}, []string{"c 1:3 rwm"}, ""},
		{"take away", []specs.LinuxDeviceCgroup{all(false), c(true, n(1), n(3), "rwm"), c(false, n(1), n(3), "w")}, []string{"c 1:3 rm"}, ""},
		{"wildcard deny covers", []specs.LinuxDeviceCgroup{all(false), c(true, n(1), n(3), "rwm"), c(false, nil, nil, "rwm")}, []string{}, ""},
		{"reset", []specs.LinuxDeviceCgroup{all(false), c(true, n(1), n(3), "rwm"), all(false), c(true, n(1), n(5), "r")}, []string{"c 1:5 r"}, ""},
		{"allow then deny one", []specs.LinuxDeviceCgroup{all(true), c(false, n(1), n(3), "rwm")}, []string{"a *:* rwm"}, ""},
		{"hole in a wildcard", []specs.LinuxDeviceCgroup{all(false), c(true, n(136), nil, "rwm"), c(false, n(136), n(3), "rw")}, nil, "devices[2]"},
		{"disjoint access is fine", []specs.LinuxDeviceCgroup{all(false), c(true, n(136), nil, "rw"), c(false, n(136), n(3), "m")}, []string{"c 136:* rw"}, ""},
	} {
		s := newDevState()
		var err error
		for i, d := range tc.rules {
			if err = s.apply(i, d); err != nil {
				break
			}
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one about %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := s.lines(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// In allow mode, the deny exceptions are kept even though the kernel does not list them.
	s := newDevState()
	_ = s.apply(0, all(true))
	_ = s.apply(1, c(false, n(1), n(3), "rwm"))
	if s.exc[devKey{'c', 1, 3}] != accAll {
		t.Errorf("allow mode exceptions %v", s.exc)
	}
}

// TestValidateBlockDevices: per-device block I/O settings for a device the kernel would
// refuse them for are refused before anything is written, naming the field. A fake
// /sys/dev/block: 8:0 a disk with BFQ, 8:1 its partition, 9:0 a disk with mq-deadline.
func TestValidateBlockDevices(t *testing.T) {
	v2 := ocg.IsCgroup2UnifiedMode()
	if v2 && !hasV2Controller("io") || !v2 && !exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device") {
		t.Skip("no block I/O throttling on this host")
	}
	fake := t.TempDir()
	for dev, sched := range map[string]string{"8:0": "mq-deadline [bfq] none", "8:1": "", "9:0": "[mq-deadline] bfq none"} {
		if err := os.MkdirAll(filepath.Join(fake, dev, "queue"), 0o755); err != nil {
			t.Fatal(err)
		}
		if sched != "" {
			if err := os.WriteFile(filepath.Join(fake, dev, "queue", "scheduler"), []byte(sched+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(fake, dev, "partition"), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := sysBlock
	sysBlock = fake
	defer func() { sysBlock = old }()
	thr := func(major, minor int64) *specs.LinuxResources {
		return &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadIOPSDevice: []specs.LinuxThrottleDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Rate: 100}}}}
	}
	if err := Validate(thr(8, 0)); err != nil {
		t.Errorf("throttle of a disk: %v", err)
	}
	for _, c := range []struct {
		name         string
		major, minor int64
		want         string
	}{{"no such device", 4095, 4095, "no block device 4095:4095"}, {"partition", 8, 1, "is a partition"}} {
		err := Validate(thr(c.major, c.minor))
		checkFieldError(t, c.name, err, "blockIO.throttleReadIOPSDevice[0]")
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("%s: %v, want an unsupported error with %q", c.name, err, c.want)
		}
	}

	// Per-device weights: BFQ's, unless the host has CFQ's blkio.weight_device.
	bfqOnly := v2 || !exists("/sys/fs/cgroup/blkio/blkio.weight_device") && exists("/sys/fs/cgroup/blkio/blkio.bfq.io_service_bytes")
	if !bfqOnly {
		return
	}
	wd := func(major, minor int64) *specs.LinuxResources {
		return &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Weight: ptr(uint16(200))}}}}
	}
	if err := Validate(wd(8, 0)); err != nil {
		t.Errorf("weight of a BFQ disk: %v", err)
	}
	err := Validate(wd(9, 0))
	checkFieldError(t, "weight of a non-BFQ disk", err, "blockIO.weightDevice[0].weight")
	if !strings.Contains(fmt.Sprint(err), "uses the mq-deadline I/O scheduler") {
		t.Errorf("weight of a non-BFQ disk: %v, want the scheduler named", err)
	}
	checkFieldError(t, "weight of no device", Validate(wd(4095, 4095)), "blockIO.weightDevice[0]")
}

// TestValidateHugetlbOnHybrid: a hybrid host whose hugetlb controller is in the cgroup2
// hierarchy says so, rather than that there is no hugetlb controller.
func TestValidateHugetlbOnHybrid(t *testing.T) {
	sizes := ocg.HugePageSizes()
	if ocg.IsCgroup2UnifiedMode() || exists("/sys/fs/cgroup/hugetlb") || !hybridHas("hugetlb") || len(sizes) == 0 {
		t.Skip("not a hybrid host with hugetlb in its cgroup2 hierarchy only, and huge pages")
	}
	err := Validate(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: sizes[0], Limit: 1 << 21}}})
	checkFieldError(t, "hugetlb on hybrid", err, "hugepageLimits[0]")
	if !strings.Contains(fmt.Sprint(err), "cgroup2 hierarchy") {
		t.Errorf("error %v does not say where the controller is", err)
	}
}
