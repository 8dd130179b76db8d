package errdefs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestExitCodes(t *testing.T) {
	cases := map[error]int{
		nil:                                  ExitOK,
		errors.New("x"):                      ExitFailure,
		fmt.Errorf("a: %w", ErrUsage):        ExitUsage,
		fmt.Errorf("a: %w", ErrExists):       ExitExists,
		fmt.Errorf("a: %w", ErrNotFound):     ExitNotFound,
		fmt.Errorf("a: %w", ErrDenied):       ExitDenied,
		fmt.Errorf("a: %w", ErrUnavailable):  ExitUnavailable,
		fmt.Errorf("a: %w", ErrInvalidImage): ExitInvalidImage,
		ClassifyIO(&os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}): ExitNoSpace,
	}
	for err, want := range cases {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
	if err := ClassifyIO(syscall.EIO); errors.Is(err, ErrNoSpace) {
		t.Error("EIO classified as a full disk")
	}
}
