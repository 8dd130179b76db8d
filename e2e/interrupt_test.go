//go:build e2e

package e2e

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// A pull interrupted in the middle of a download (Ctrl-C, or a scheduler's SIGTERM) exits
// promptly with a failure and leaves no partial output, no temp file in the cache or TMPDIR
// and no process behind (Done checks the last three).
func TestPullInterruptedLeavesNothing(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM} {
		t.Run(name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			p := pushUnique(t, fixture.Spec{Padding: 4 << 20})
			proxy, err := harness.StartStallingProxy(h.Registry.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()

			outDir := s.Mkdir(h.Root, "out")
			ref := "docker://" + proxy.Addr + "/" + p.Repo + ":" + p.Tag
			run := s.Start(h.Root, harness.Opts{}, "pull", "--insecure", filepath.Join(outDir, "out.sif"), ref)
			select {
			case <-proxy.Stalled():
			case <-time.After(60 * time.Second):
				proxy.Release()
				t.Fatalf("the pull never reached a layer download:\n%s", run.Wait())
			}
			time.Sleep(300 * time.Millisecond) // let kerr write what it has
			if err := run.Signal(sig); err != nil {
				t.Fatal(err)
			}
			signalled := time.Now()
			res := run.Wait()
			if res.Code == 0 {
				t.Errorf("an interrupted pull reported success:\n%s", res)
			}
			if d := time.Since(signalled); d > 10*time.Second {
				t.Errorf("kerr took %s to stop after %v", d, sig)
			}
			wantDir(t, outDir)
		})
	}
}
