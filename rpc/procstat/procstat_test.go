package procstat

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// This process runs; a child that has exited but is not reaped has ended (ESRCH); a
// start time that is not the process's own, or a pid that is none, is not running.
func TestStartTimeAndRunning(t *testing.T) {
	st, err := StartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("StartTime(self) = %d, %v", st, err)
	}
	if !Running(os.Getpid(), st) || Running(os.Getpid(), st+1) || Running(0, st) || Running(-1, 0) {
		t.Error("Running does not tell this process by its start time")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = StartTime(cmd.Process.Pid)
		if errors.Is(err, unix.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("StartTime of an exited, unreaped child: %v, want ESRCH", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Error("StartTime of a pid that is none succeeded")
	}
}
