//go:build !linux || !cgo

package seccomp

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Filter is a compiled profile; this build cannot make one (see ErrUnavailable).
type Filter struct {
	// Skipped lists the profile's syscall names that libseccomp does not know.
	Skipped []string
}

// Compile needs libseccomp; this build has no cgo (or is not Linux), so it returns an
// error wrapping ErrUnavailable once s is valid.
//
// Privileges: any; touches nothing.
func Compile(s *specs.LinuxSeccomp) (*Filter, error) {
	if err := Validate(s); err != nil {
		return nil, err
	}
	return nil, ErrUnavailable
}

// Load returns ErrUnavailable: there is no filter to load in this build.
//
// Privileges: any; touches nothing.
func (f *Filter) Load() error { return ErrUnavailable }

// Load validates s and returns an error wrapping ErrUnavailable (see Compile).
//
// Privileges: any; touches nothing.
func Load(s *specs.LinuxSeccomp) error {
	_, err := Compile(s)
	return err
}

// CacheKey, MarshalBinary and UnmarshalFilter need libseccomp's build (see cache_linux.go).
func CacheKey(profile []byte) string { return "" }

// MarshalBinary: see cache_linux.go; this build has no program.
func (f *Filter) MarshalBinary() ([]byte, error) { return nil, ErrUnavailable }

// UnmarshalFilter: see cache_linux.go.
func UnmarshalFilter(b []byte) (*Filter, error) { return nil, ErrUnavailable }
