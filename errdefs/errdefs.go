// Package errdefs holds kerr's sentinel errors and the exit codes they map to.
//
// Code anywhere wraps one of these with %w and its own context; only the CLI edge turns them
// into an exit status (ExitCode). docs/exit-codes.md is the user-facing copy of the table.
package errdefs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

var (
	// ErrUsage: bad flags, arguments, transport or reference syntax.
	ErrUsage = errors.New("usage error")
	// ErrExists: the output already exists and --force was not given.
	ErrExists = errors.New("already exists")
	// ErrNotFound: the image, tag, manifest, platform or local file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDenied: the registry refused the credentials (401/403), or a root-only command was
	// run without root. A local permission error (EACCES on a file) is a plain failure,
	// exit 1, with the system's message.
	ErrDenied = errors.New("access denied")
	// ErrUnavailable: the registry could not be reached or answered with a server error.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidImage: corrupt or truncated data, digest mismatch, not a SIF, no root filesystem.
	ErrInvalidImage = errors.New("invalid image")
	// ErrNoSpace: the disk filled up while writing.
	ErrNoSpace = errors.New("no space left")
	// ErrState: the container is not in a state that allows the operation (start of a
	// running container, delete of a running one without --force, exec in a stopped one).
	ErrState = errors.New("wrong container state")
)

// Exit codes; 1 is any failure without a more precise class.
const (
	ExitOK           = 0
	ExitFailure      = 1
	ExitUsage        = 2
	ExitExists       = 3
	ExitNotFound     = 4
	ExitDenied       = 5
	ExitUnavailable  = 6
	ExitInvalidImage = 7
	ExitNoSpace      = 8
	ExitState        = 9
)

// ExitCode maps an error to kerr's documented exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrExists):
		return ExitExists
	case errors.Is(err, ErrNotFound):
		return ExitNotFound
	case errors.Is(err, ErrDenied):
		return ExitDenied
	case errors.Is(err, ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, ErrInvalidImage):
		return ExitInvalidImage
	case errors.Is(err, ErrNoSpace):
		return ExitNoSpace
	case errors.Is(err, ErrState):
		return ExitState
	}
	return ExitFailure
}

// ClassifyIO marks a write error caused by a full disk or quota with ErrNoSpace, so that the
// CLI reports it with its own exit code; other errors pass unchanged.
func ClassifyIO(err error) error {
	if err != nil && !errors.Is(err, ErrNoSpace) && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return fmt.Errorf("%w: %w", err, ErrNoSpace)
	}
	return err
}

// OneLine flattens an error message so that the user always sees exactly one line, without
// the sentinel's text repeated at the end.
func OneLine(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrUsage, ErrExists, ErrNotFound, ErrDenied, ErrUnavailable,
		ErrInvalidImage, ErrNoSpace, ErrState} {
		msg = strings.TrimSuffix(msg, ": "+s.Error())
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
}

// FromCode returns the sentinel error whose exit code is code, or nil for 0, 1 and codes
// without one: a process that reports an error by its code keeps its class across the hop.
func FromCode(code int) error {
	for _, e := range []error{ErrUsage, ErrExists, ErrNotFound, ErrDenied, ErrUnavailable,
		ErrInvalidImage, ErrNoSpace, ErrState} {
		if ExitCode(e) == code {
			return e
		}
	}
	return nil
}
