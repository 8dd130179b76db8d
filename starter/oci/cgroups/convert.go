package cgroups

import (
	ocg "github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// toLibResources converts validated spec resources to the library's form. Zero values mean
// "not set" there, as in runc, except pids (a pointer). Device rules go to the library on
// cgroup v2 (its eBPF program) and with the systemd driver (unit properties, which systemd
// keeps applying); with cgroupfs on v1 this package writes them (setDevicesV1). Either way
// no rules at all means the library leaves the device rules alone (an update without
// devices), rather than allowing no device.
func toLibResources(r *specs.LinuxResources, v2, systemd bool) *ocg.Resources {
	out := &ocg.Resources{SkipDevices: true}
	if r == nil {
		return out
	}
	if (v2 || systemd) && len(r.Devices) > 0 {
		out.SkipDevices = false
		for _, d := range r.Devices {
			out.Devices = append(out.Devices, &devconfig.Rule{
				Type:        devconfig.Type(devType(d.Type)),
				Major:       devNumber(d.Major),
				Minor:       devNumber(d.Minor),
				Permissions: devconfig.Permissions(d.Access),
				Allow:       d.Allow,
			})
		}
	}
	if mem := r.Memory; mem != nil {
		out.Memory = deref(mem.Limit)
		out.MemoryReservation = deref(mem.Reservation)
		out.MemorySwap = deref(mem.Swap)
		out.MemorySwappiness = mem.Swappiness
		out.OomKillDisable = mem.DisableOOMKiller != nil && *mem.DisableOOMKiller
		out.MemoryCheckBeforeUpdate = mem.CheckBeforeUpdate != nil && *mem.CheckBeforeUpdate
	}
	if cpu := r.CPU; cpu != nil {
		out.CpuShares = deref(cpu.Shares)
		if v2 {
			// fs2 reads only the weight.
			out.CpuWeight = ocg.ConvertCPUSharesToCgroupV2Value(out.CpuShares)
		}
		out.CpuQuota = deref(cpu.Quota)
		out.CpuBurst = cpu.Burst
		out.CpuPeriod = deref(cpu.Period)
		out.CpuRtRuntime = deref(cpu.RealtimeRuntime)
		out.CpuRtPeriod = deref(cpu.RealtimePeriod)
		out.CpusetCpus = cpu.Cpus
		out.CpusetMems = cpu.Mems
		out.CPUIdle = cpu.Idle
	}
	if r.Pids != nil {
		out.PidsLimit = r.Pids.Limit
	}
	if b := r.BlockIO; b != nil {
		out.BlkioWeight = deref(b.Weight)
		out.BlkioLeafWeight = deref(b.LeafWeight)
		for _, wd := range b.WeightDevice {
			out.BlkioWeightDevice = append(out.BlkioWeightDevice,
				ocg.NewWeightDevice(wd.Major, wd.Minor, deref(wd.Weight), deref(wd.LeafWeight)))
		}
		out.BlkioThrottleReadBpsDevice = throttle(b.ThrottleReadBpsDevice)
		out.BlkioThrottleWriteBpsDevice = throttle(b.ThrottleWriteBpsDevice)
		out.BlkioThrottleReadIOPSDevice = throttle(b.ThrottleReadIOPSDevice)
		out.BlkioThrottleWriteIOPSDevice = throttle(b.ThrottleWriteIOPSDevice)
	}
	for _, h := range r.HugepageLimits {
		out.HugetlbLimit = append(out.HugetlbLimit, &ocg.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	if n := r.Network; n != nil {
		out.NetClsClassid = deref(n.ClassID)
		for _, p := range n.Priorities {
			out.NetPrioIfpriomap = append(out.NetPrioIfpriomap, &ocg.IfPrioMap{Interface: p.Name, Priority: int64(p.Priority)})
		}
	}
	if len(r.Rdma) > 0 {
		out.Rdma = make(map[string]ocg.LinuxRdma, len(r.Rdma))
		for dev, l := range r.Rdma {
			out.Rdma[dev] = ocg.LinuxRdma{HcaHandles: l.HcaHandles, HcaObjects: l.HcaObjects}
		}
	}
	if len(r.Unified) > 0 {
		out.Unified = make(map[string]string, len(r.Unified))
		for k, v := range r.Unified {
			out.Unified[k] = v
		}
	}
	return out
}

func throttle(in []specs.LinuxThrottleDevice) []*ocg.ThrottleDevice {
	var out []*ocg.ThrottleDevice
	for _, td := range in {
		out = append(out, ocg.NewThrottleDevice(td.Major, td.Minor, td.Rate))
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// devType is a rule's device type with "" (unset) meaning all.
func devType(t string) byte {
	if t == "" {
		return 'a'
	}
	return t[0]
}

// devNumber is a rule's major or minor with nil meaning all (-1, the wildcard).
func devNumber(n *int64) int64 {
	if n == nil {
		return devconfig.Wildcard
	}
	return *n
}

// DefaultDeviceRules returns the device rules runc adds to every container's allow list:
// mknod of any character or block device, and read/write/mknod of /dev/null (1:3),
// /dev/random (1:8), /dev/full (1:7), /dev/tty (5:0), /dev/zero (1:5), /dev/urandom (1:9),
// every pseudo-terminal /dev/pts/* (136:*) and /dev/ptmx (5:2). There is no separate
// /dev/console rule: a container's console is a pseudo-terminal, which 136:* covers. The
// engine appends these after the spec's own rules, which usually start by denying all.
// A new slice every call.
//
// Privileges: root, like the package; this one touches nothing.
func DefaultDeviceRules() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	rule := func(typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: major, Minor: minor, Access: access}
	}
	return []specs.LinuxDeviceCgroup{
		rule("c", nil, nil, "m"),
		rule("b", nil, nil, "m"),
		rule("c", n(1), n(3), "rwm"),
		rule("c", n(1), n(8), "rwm"),
		rule("c", n(1), n(7), "rwm"),
		rule("c", n(5), n(0), "rwm"),
		rule("c", n(1), n(5), "rwm"),
		rule("c", n(1), n(9), "rwm"),
		rule("c", n(136), nil, "rwm"),
		rule("c", n(5), n(2), "rwm"),
	}
}
