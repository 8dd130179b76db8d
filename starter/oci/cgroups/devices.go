package cgroups

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The cgroup v1 devices controller keeps a default (allow all or deny all) and a list of
// exceptions to it. Spec rules are applied in order, each overriding what came before for
// the devices it names; devState computes the resulting default and exceptions first, and
// setDevicesV1 then writes that state, so the kernel ends up with exactly what the rules
// mean, whatever the cgroup held before.

// devKey names a set of devices: a type ('b' or 'c') and numbers, -1 meaning all.
type devKey struct {
	typ          byte
	major, minor int64
}

func (k devKey) String() string {
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%c %s:%s", k.typ, num(k.major), num(k.minor))
}

// covers reports whether every device of o is also one of k.
func (k devKey) covers(o devKey) bool {
	return k.typ == o.typ && (k.major < 0 || k.major == o.major) && (k.minor < 0 || k.minor == o.minor)
}

// overlaps reports whether some device is both one of k and one of o.
func (k devKey) overlaps(o devKey) bool {
	return k.typ == o.typ && (k.major < 0 || o.major < 0 || k.major == o.major) &&
		(k.minor < 0 || o.minor < 0 || k.minor == o.minor)
}

// Access bits.
const (
	accR = 1 << iota
	accW
	accM
	accAll = accR | accW | accM
)

func parseAccess(s string) (uint8, bool) {
	var a uint8
	for _, c := range s {
		switch c {
		case 'r':
			a |= accR
		case 'w':
			a |= accW
		case 'm':
			a |= accM
		default:
			return 0, false
		}
	}
	return a, a != 0
}

func accessString(a uint8) string {
	var b strings.Builder
	for i, c := range "rwm" {
		if a&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// devState is a v1 device cgroup: the default and its exceptions (denied devices when the
// default is allow, allowed devices when it is deny).
type devState struct {
	allow bool
	exc   map[devKey]uint8
	order []devKey // exceptions in the order the rules first named them
}

// newDevState is what a new cgroup starts from once the rules say nothing: deny all.
func newDevState() *devState {
	return &devState{exc: make(map[devKey]uint8)}
}

// apply adds rule i to the state. Rules were checked by Validate; a rule that v1 cannot
// express after the earlier ones (denying part of an earlier wildcard allow, or the
// reverse) is an error.
func (s *devState) apply(i int, d specs.LinuxDeviceCgroup) error {
	acc, _ := parseAccess(d.Access)
	t := devType(d.Type)
	if t == 'a' {
		// Only "all devices, rwm" reaches here: it resets the cgroup to a new default.
		s.allow = d.Allow
		clear(s.exc)
		s.order = s.order[:0]
		return nil
	}
	k := devKey{typ: t, major: devNumber(d.Major), minor: devNumber(d.Minor)}
	if d.Allow != s.allow {
		if _, seen := s.exc[k]; !seen {
			s.order = append(s.order, k)
		}
		s.exc[k] |= acc
		return nil
	}
	// The rule agrees with the default: take its access away from the exceptions it
	// covers; an exception it only partly covers cannot be split in v1.
	for e, a := range s.exc {
		switch {
		case k.covers(e):
			if a &^= acc; a == 0 {
				delete(s.exc, e)
			} else {
				s.exc[e] = a
			}
		case k.overlaps(e) && a&acc != 0:
			return fmt.Errorf("linux.resources.devices[%d] (%s %s %s) takes away part of an earlier rule (%s %s), which cgroup v1 cannot express",
				i, verb(d.Allow), k, accessString(acc), e, accessString(a))
		}
	}
	return nil
}

func verb(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// lines is the state as the kernel's devices.list shows it: "a *:* rwm" for allow-all
// (the kernel lists no deny exceptions), else the allowed exceptions, sorted.
func (s *devState) lines() []string {
	if s.allow {
		return []string{"a *:* rwm"}
	}
	out := make([]string, 0, len(s.exc))
	for k, a := range s.exc {
		out = append(out, k.String()+" "+accessString(a))
	}
	sort.Strings(out)
	return out
}

// setDevicesV1 applies rules to the v1 devices cgroup dir. When the rules end in deny-all
// plus allowed exceptions (the usual container case), the cgroup is reset to deny-all
// first, so no device is ever allowed that the rules do not allow; the result is read back
// and checked.
func setDevicesV1(dir string, rules []specs.LinuxDeviceCgroup) error {
	if dir == "" {
		return errors.New("no devices cgroup")
	}
	s := newDevState()
	for i, d := range rules {
		if err := s.apply(i, d); err != nil {
			return err
		}
	}
	want := s.lines()
	if cur, err := readDevicesList(dir); err == nil && !s.allow && slices.Equal(cur, want) {
		return nil
	}
	// Writing "a" resets: the default becomes allow (to devices.allow) or deny
	// (devices.deny) and the exceptions are cleared; exceptions go to the other file.
	resetFile, excFile := "devices.deny", "devices.allow"
	if s.allow {
		resetFile, excFile = excFile, resetFile
	}
	if err := ocg.WriteFile(dir, resetFile, "a"); err != nil {
		return err
	}
	// In the rules' order: the kernel lists them as written, and the spec says the
	// runtime applies the entries in the listed order.
	for _, k := range s.order {
		a, ok := s.exc[k]
		if !ok {
			continue
		}
		if err := ocg.WriteFile(dir, excFile, k.String()+" "+accessString(a)); err != nil {
			return err
		}
	}
	got, err := readDevicesList(dir)
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("devices.list is %q after writing, want %q", got, want)
	}
	return nil
}

func readDevicesList(dir string) ([]string, error) {
	data, err := ocg.ReadFile(dir, "devices.list")
	if err != nil {
		return nil, err
	}
	var out []string
	for l := range strings.SplitSeq(data, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out, nil
}
