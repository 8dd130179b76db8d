package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestExecAndReaper runs commands the way the benchmark does, with this test process as
// the subreaper. It is the only test that starts processes: once the reaper runs, os/exec
// would lose its children's statuses to it.
func TestExecAndReaper(t *testing.T) {
	timeBin, _ := exec.LookPath("time")
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, err := startReaper()
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{tmp: t.TempDir(), time: timeBin, devNull: devNull, reaper: r}
	w, err := newWorker(b.tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()

	res, err := b.exec(w, false, "/bin/sh", "-c", "echo out; echo err >&2")
	if err != nil || res.wall <= 0 || res.out != "out\nerr\n" {
		t.Errorf("exec = %+v, %v", res, err)
	}
	// The output file is emptied for each command.
	_, err = b.exec(w, false, "/bin/sh", "-c", "echo two; exit 3")
	if err == nil || err.Error() != "/bin/sh -c echo two; exit 3: exit status 3\ntwo" {
		t.Errorf("failing command: %v", err)
	}
	_, err = b.exec(w, false, "/bin/sh", "-c", "kill -9 $$")
	if err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Errorf("killed command: %v", err)
	}
	if _, err := b.exec(w, false, "/nonexistent"); err == nil {
		t.Error("exec of a missing binary: no error")
	}

	// An orphan, as a container after create, is reparented to us and its exit is kept
	// for whoever waits for it, also when it was reaped before the wait.
	for _, delay := range []string{"0.2", "0"} {
		since := r.mark()
		res, err = b.exec(w, false, "/bin/sh", "-c", "sleep "+delay+" & echo $!")
		if err != nil {
			t.Fatal(err)
		}
		pid, err := parsePidFile(res.out)
		if err != nil {
			t.Fatal(err)
		}
		if delay == "0" {
			time.Sleep(100 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := r.wait(ctx, pid, since)
		cancel()
		if err != nil || !e.status.Exited() || e.status.ExitStatus() != 0 {
			t.Errorf("orphan (sleep %s): %+v, %v", delay, e.status, err)
		}
	}
	// An exit from before the mark is not the process waited for.
	res, _ = b.exec(w, false, "/bin/sh", "-c", "true & echo $!")
	pid, _ := parsePidFile(res.out)
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = r.wait(ctx, pid, r.mark())
	cancel()
	if err == nil {
		t.Error("wait returned an exit reaped before its mark")
	}

	if timeBin == "" {
		t.Skip("no GNU time")
	}
	res, err = b.exec(w, true, "/bin/sh", "-c", "echo x")
	if err != nil || res.maxRSS <= 0 || res.out != "x\n" {
		t.Errorf("exec under time = %+v, %v", res, err)
	}
}
