package bundle

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

// killEnv, when set in a re-exec of the test binary, is "k,readOnly,image,bundle": the child
// runs mount's first k steps and then kills itself with SIGKILL.
const killEnv = "KERR_BUNDLE_TEST_KILL_AFTER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(killEnv); spec != "" {
		os.Exit(mountAndDie(spec))
	}
	os.Exit(m.Run())
}

// mountAndDie is the child's side of TestKill9DuringMountIsCleanedByForce.
func mountAndDie(spec string) int {
	f := strings.SplitN(spec, ",", 4)
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bad", killEnv)
		return 2
	}
	k, err := strconv.Atoi(f[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m := newMounter(f[2], f[3], f[1] == "true")
	m.seccomp = ""
	if err := m.prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, step := range m.steps()[:k] {
		if err := step(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return 3
}

// TestKill9DuringMountIsCleanedByForce kills a real mount process with SIGKILL after each
// step (the kernel, not the test, closes its fds and so drops its hold on the loop
// device), then checks that umount --force leaves no mount, no loop device of the SIF and
// the directory as it was.
func TestKill9DuringMountIsCleanedByForce(t *testing.T) {
	e := newEnv(t)
	steps := len(newMounter(e.sif, "/x", false).steps())
	for _, c := range []struct{ readOnly, existing bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		readOnly := c.readOnly
		for k := 1; k <= steps; k++ {
			bundle := filepath.Join(e.dir, fmt.Sprintf("ro%v-existing%v-k%d", readOnly, c.existing, k))
			if c.existing {
				if err := os.Mkdir(bundle, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			want := stateOf(t, bundle)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%v,%s,%s", killEnv, k, readOnly, e.sif, bundle))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("k=%d: child did not die of SIGKILL: %v %s", k, err, out)
			}
			// Before the marker (k < 3) there was the loop device, which autoclear took, and
			// the directory if mount created it (k = 2), which its mode marks.
			err = Umount(bundle, UmountOptions{Force: true})
			var wantErr error
			switch {
			case k == 1 && !c.existing:
				wantErr = errdefs.ErrNotFound
			case k < 3 && c.existing:
				wantErr = errdefs.ErrUsage
			}
			if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
				t.Errorf("%+v k=%d: umount --force: %v, want %v", c, k, err, wantErr)
			}
			e.checkLeftAsFound(bundle, want)
		}
	}
}
