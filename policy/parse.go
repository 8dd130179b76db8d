package policy

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"

	"github.com/kerr-hpc/kerr/errdefs"
)

// Error is a problem with a policy file: its name, the line (0 when unknown), the key and
// what is wrong. It wraps errdefs.ErrUsage: an invalid policy is a configuration error.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q", e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return errdefs.ErrUsage }

// Parse decodes a policy file's contents strictly: keys it does not set keep their default;
// unknown keys, wrong types and values out of range are an *Error naming the file (name),
// the line and the key. It runs with any privileges and touches nothing but data.
func Parse(name string, data []byte) (*Policy, error) {
	p := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(p)
	if err != nil {
		return nil, decodeError(name, data, err)
	}
	lines := keyLines(data)
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return nil, &Error{File: name, Line: lines.find(k), Key: k, Msg: "unknown key"}
	}
	if key, msg := p.validate(); msg != "" {
		return nil, &Error{File: name, Line: lines.find(key), Key: key, Msg: msg}
	}
	return p, nil
}

// typeErrorRE matches the library's type errors, which carry the line and key only as text.
// Compiled on first use: a regexp compiled at package init costs every kerr command.
var typeErrorRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
})

func decodeError(name string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: oneLine(pe.Message)}
	}
	msg := oneLine(err.Error())
	if m := typeErrorRE().FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if l := keyLines(data).find(m[2]); l > 0 {
			line = l
		}
		return &Error{File: name, Line: line, Key: m[2], Msg: "wrong type: " + strings.TrimPrefix(m[3], "incompatible types: ")}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(msg, "toml: ")}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var (
	formats        = []string{"sif", "sandbox"}
	kernelSquashfs = []string{"always", "root-owned", "never"}
	devModes       = []string{DevYes, DevNo, DevMinimal}
	namespaceNames = []string{"pid", "ipc", "uts", "net", "cgroup"}
	// A user or group name as useradd accepts it, or a numeric id.
	nameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10})$`)
	})
)

// Size limits of the tmpfs sizes.
const (
	minSize = 1 << 20
	maxSize = 1 << 40
)

// validate returns the first key with a bad value and what is wrong, or "", "". Keys of
// array-of-table elements carry their index: "capabilities.grant[1].users".
func (p *Policy) validate() (key, msg string) {
	type check struct {
		key string
		msg string
	}
	var first *check
	fail := func(key, format string, args ...any) {
		if first == nil {
			first = &check{key, fmt.Sprintf(format, args...)}
		}
	}
	names := func(key string, v []string) {
		for _, n := range v {
			if !nameRE().MatchString(n) {
				fail(key, "%q is not a user or group name", n)
			}
		}
	}
	oneOf := func(key, v string, set []string) {
		if !slices.Contains(set, v) {
			fail(key, "%q is not one of %s", v, quoteList(set))
		}
	}
	allOf := func(key string, v, set []string) {
		for _, s := range v {
			oneOf(key, s, set)
		}
	}
	paths := func(key string, v []string) {
		for _, s := range v {
			if !filepath.IsAbs(s) || filepath.Clean(s) != s {
				fail(key, "%q is not an absolute, clean path", s)
			}
		}
	}
	caps := func(key string, v []string) {
		for _, c := range v {
			if !slices.Contains(capabilityNames, c) {
				fail(key, "%q is not a capability name (CAP_…)", c)
			}
		}
	}
	size := func(key, v string) {
		if _, err := ParseSize(v); err != nil {
			fail(key, "%v", err)
		}
	}

	names("access.users", p.Access.Users)
	names("access.groups", p.Access.Groups)

	allOf("images.formats", p.Images.Formats, formats)
	oneOf("images.kernel_squashfs", p.Images.KernelSquashfs, kernelSquashfs)
	names("images.limit_owners", p.Images.LimitOwners)
	names("images.limit_groups", p.Images.LimitGroups)
	paths("images.limit_paths", p.Images.LimitPaths)
	if n := p.Images.MaxLoopDevices; n < 1 || n > 4096 {
		fail("images.max_loop_devices", "%d is out of range 1..4096", n)
	}

	oneOf("mounts.dev", p.Mounts.Dev, devModes)
	paths("mounts.system_binds", p.Mounts.SystemBinds)
	paths("mounts.user_bind_allow", p.Mounts.UserBindAllow)
	paths("mounts.user_bind_deny", p.Mounts.UserBindDeny)
	size("mounts.session_size", p.Mounts.SessionSize)
	size("mounts.tmp_size", p.Mounts.TmpSize)

	allOf("namespaces.allow", p.Namespaces.Allow, namespaceNames)
	for i, g := range p.Namespaces.Grant {
		k := fmt.Sprintf("namespaces.grant[%d]", i)
		names(k+".users", g.Users)
		names(k+".groups", g.Groups)
		allOf(k+".namespaces", g.Namespaces, namespaceNames)
		if len(g.Users)+len(g.Groups) == 0 {
			fail(k, "a grant needs users or groups")
		}
	}

	caps("capabilities.root_keeps", p.Capabilities.RootKeeps)
	for i, g := range p.Capabilities.Grant {
		k := fmt.Sprintf("capabilities.grant[%d]", i)
		names(k+".users", g.Users)
		names(k+".groups", g.Groups)
		caps(k+".capabilities", g.Capabilities)
		if len(g.Users)+len(g.Groups) == 0 {
			fail(k, "a grant needs users or groups")
		}
	}

	if s := p.Security.SeccompProfile; s != "default" && s != "none" && (!filepath.IsAbs(s) || filepath.Clean(s) != s) {
		fail("security.seccomp_profile", `%q is not "default", "none" or an absolute, clean path`, s)
	}
	if first == nil {
		return "", ""
	}
	return first.key, first.msg
}

func quoteList(set []string) string {
	q := make([]string, len(set))
	for i, s := range set {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// ParseSize reads a tmpfs size: a number with an optional k, m, g or t suffix (powers of
// 1024, either case), between 1 MiB and 1 TiB.
func ParseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			num = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (a number with an optional k, m, g or t suffix)", s)
	}
	if n > maxSize/uint64(mult) || int64(n)*mult < minSize {
		return 0, fmt.Errorf("%q is out of range 1m..1t", s)
	}
	return int64(n) * mult, nil
}
