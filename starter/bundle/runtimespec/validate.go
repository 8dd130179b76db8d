package runtimespec

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-multierror"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-tools/specerror"
	"github.com/opencontainers/runtime-tools/validate"
)

// validateSpec checks spec with runtime-tools' validator, host-specific (the bundle runs on
// the host that makes it: capabilities and mount types are checked against this kernel),
// plus what that validator leaves out. All problems are reported, joined into one line.
//
// Of the validator's checks, two are not run:
//   - CheckJSONSchema fetches the schema from GitHub at run time; the tests check the output
//     against the schema of the runtime-spec module instead.
//   - CheckRoot and the executable check in CheckProcess stat root.path, relative to the
//     bundle, which Generate does not know (the validator would stat paths relative to the
//     process's cwd and log warnings). The validator gets a copy without root; root.path is
//     checked here, and args[0] is the image's business.
func validateSpec(spec *specs.Spec) error {
	noRoot := *spec
	noRoot.Root = nil
	v, err := validate.NewValidator(&noRoot, "", true, "linux")
	if err != nil {
		return err
	}
	var errs []error
	for _, check := range []func() error{
		v.CheckPlatform,
		v.CheckMandatoryFields,
		v.CheckSemVer,
		v.CheckMounts,
		v.CheckProcess,
		v.CheckLinux,
		v.CheckAnnotations,
		v.CheckHooks,
	} {
		errs = append(errs, flatten(check())...)
	}
	errs = append(errs, checkExtra(spec)...)
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// flatten turns the validator's multierror into its errors, each reduced to one line (a
// specerror carries the spec's URL on a second line).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	var list []error
	var me *multierror.Error
	if errors.As(err, &me) {
		list = me.Errors
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var se *specerror.Error
		if errors.As(e, &se) && se.Err.Err != nil {
			e = se.Err.Err
		}
		out = append(out, e)
	}
	return out
}

// checkExtra checks what the validator does not: root.path, NUL bytes (JSON carries them, exec
// and the kernel truncate at them), and the seccomp section.
func checkExtra(spec *specs.Spec) []error {
	var errs []error
	if spec.Root == nil || spec.Root.Path == "" {
		errs = append(errs, errors.New("root.path is empty"))
	} else if p := spec.Root.Path; !filepath.IsAbs(p) && !filepath.IsLocal(p) {
		errs = append(errs, fmt.Errorf("root.path %q is outside the bundle", p))
	}
	if spec.Process != nil {
		strs := append(append([]string{spec.Process.Cwd}, spec.Process.Args...), spec.Process.Env...)
		for _, s := range strs {
			if strings.ContainsRune(s, 0) {
				errs = append(errs, fmt.Errorf("process: %q contains a NUL byte", s))
			}
		}
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil {
		if err := checkSeccomp(spec.Linux.Seccomp); err != nil {
			errs = append(errs, fmt.Errorf("seccomp: %w", err))
		}
	}
	return errs
}
