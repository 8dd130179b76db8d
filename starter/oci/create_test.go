package oci

import (
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/starter/oci/cgroups"
)

// The devices of linux.devices are allowed after the config's rules and the defaults (as
// runc allows them): a fifo is left out, an unbuffered device is a character device.
func TestCgroupResourcesAllowSpecDevices(t *testing.T) {
	deny := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	spec := &specs.Spec{Linux: &specs.Linux{
		Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{deny}},
		Devices: []specs.LinuxDevice{
			{Path: "/dev/tun", Type: "c", Major: 10, Minor: 200},
			{Path: "/dev/fifo", Type: "p"},
			{Path: "/dev/raw", Type: "u", Major: 162, Minor: 1},
			{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0},
		},
	}}
	want := []string{"c 10:200 rwm", "c 162:1 rwm", "b 8:0 rwm"}
	rules := specDeviceRules(spec)
	if len(rules) != len(want) {
		t.Fatalf("specDeviceRules: %d rules, want %d: %+v", len(rules), len(want), rules)
	}
	for i, r := range rules {
		if got := ruleString(r); !r.Allow || got != want[i] {
			t.Errorf("rule %d: allow=%v %s, want allow %s", i, r.Allow, got, want[i])
		}
	}
	all := cgroupResources(spec).Devices
	defaults := len(cgroups.DefaultDeviceRules())
	if len(all) != 1+defaults+len(want) || all[0].Allow || ruleString(all[len(all)-1]) != want[len(want)-1] {
		t.Errorf("cgroupResources: %d rules, want the config's, %d defaults, then linux.devices", len(all), defaults)
	}
	if len(spec.Linux.Resources.Devices) != 1 {
		t.Errorf("cgroupResources changed the spec's own rules: %+v", spec.Linux.Resources.Devices)
	}
}

func ruleString(r specs.LinuxDeviceCgroup) string {
	num := func(p *int64) string {
		if p == nil {
			return "*"
		}
		return strconv.FormatInt(*p, 10)
	}
	return r.Type + " " + num(r.Major) + ":" + num(r.Minor) + " " + r.Access
}
