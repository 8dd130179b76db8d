package oci

import (
	"encoding/json"
	"os"
	"sort"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/kerr-hpc/kerr/starter/oci/rootfs"
	"github.com/kerr-hpc/kerr/starter/oci/seccomp"
)

// Features prints what this runtime implements as the runtime spec's features document
// (`runc features`), from the same tables that validate configs. Privileges: none needed.
func Features() error {
	yes, no := true, false
	actions, ops, archs, flags := seccomp.Supported()
	ns := make([]string, 0, len(nsTypes))
	for t := range nsTypes {
		ns = append(ns, string(t))
	}
	sort.Strings(ns)
	var caps []string
	if last, err := capability.LastCap(); err == nil {
		for _, c := range capability.ListKnown() {
			if c <= last {
				caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
			}
		}
	}
	f := features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  rootfs.KnownOptions(),
		Linux: &features.Linux{
			Namespaces:   ns,
			Capabilities: caps,
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no, Rdma: &no},
			Seccomp: &features.Seccomp{Enabled: &yes, Actions: actions, Operators: ops, Archs: archs,
				KnownFlags: flags, SupportedFlags: flags},
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}
