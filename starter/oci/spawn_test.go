package oci

import (
	"testing"

	"golang.org/x/sys/unix"
)

// A process that dies before it is set up is described with its signal's name (the OOM
// killer's SIGKILL, say), or its exit status.
func TestDescribeWait(t *testing.T) {
	for ws, want := range map[unix.WaitStatus]string{
		unix.WaitStatus(unix.SIGKILL):        "killed by SIGKILL",
		unix.WaitStatus(unix.SIGSEGV) | 0x80: "killed by SIGSEGV", // with a core dump
		unix.WaitStatus(40):                  "killed by signal 40",
		unix.WaitStatus(3 << 8):              "exit status 3",
		unix.WaitStatus(0):                   "exit status 0",
	} {
		if got := describeWait(ws); got != want {
			t.Errorf("describeWait(%#x) = %q, want %q", uint32(ws), got, want)
		}
	}
}
