package bundle

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// Umount of anything but a bundle refuses and changes nothing, with or without --force.
func TestUmountRefusesWhatIsNotABundle(t *testing.T) {
	e := newEnv(t)
	if err := Umount(filepath.Join(e.dir, "absent"), UmountOptions{Force: true}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("absent: %v", err)
	}
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(e.dir, "empty")
	full := filepath.Join(e.dir, "full")
	for _, d := range []string{empty, full, full + "/rootfs", full + "/overlay"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(full+"/config.json", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory with a mount of its own at a name that is not kerr's.
	foreign := filepath.Join(e.dir, "foreign")
	if err := os.MkdirAll(foreign+"/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", foreign+"/data", "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Unmount(foreign+"/data", 0); err != nil {
			t.Error(err)
		}
	}()
	for _, p := range []string{file, empty, full, foreign} {
		want := stateOf(t, p)
		for _, force := range []bool{false, true} {
			err := Umount(p, UmountOptions{Force: force})
			if !errors.Is(err, errdefs.ErrUsage) || !strings.Contains(err.Error(), p+" is not a kerr bundle") {
				t.Errorf("umount %s (force %v): %v", p, force, err)
			}
			if got := stateOf(t, p); got != want {
				t.Errorf("umount %s (force %v) changed it: %+v", p, force, got)
			}
		}
	}
	if len(mountsBelow(t, foreign)) != 1 {
		t.Error("umount --force took a foreign mount")
	}
}

// A busy bundle: without --force nothing changes and the error names the busy mount and
// its user; with --force the mounts are detached and everything is removed, and the loop
// device goes when the last user does.
func TestUmountBusyRefusesWithoutForceAndDetachesWithIt(t *testing.T) {
	for _, where := range []string{"rootfs", "overlay/lower"} {
		t.Run(strings.ReplaceAll(where, "/", "-"), func(t *testing.T) {
			e := newEnv(t)
			bundle := filepath.Join(e.dir, "b")
			e.mustMount(bundle, false)
			sleeper := exec.Command("sleep", "60")
			sleeper.Dir = filepath.Join(bundle, where)
			if err := sleeper.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = sleeper.Process.Kill()
				_ = sleeper.Wait()
			}()
			want := stateOf(t, bundle)
			mounts := mountsBelow(t, bundle)

			err := Umount(bundle, UmountOptions{})
			busy := filepath.Join(bundle, where)
			if err == nil || !strings.Contains(err.Error(), busy+" is busy") ||
				!strings.Contains(err.Error(), fmt.Sprintf("pid %d (sleep)", sleeper.Process.Pid)) {
				t.Fatalf("busy umount: %v", err)
			}
			if got := mountsBelow(t, bundle); len(got) != len(mounts) {
				t.Errorf("busy umount changed the mounts: %+v", got)
			}
			if got := stateOf(t, bundle); got != want {
				t.Errorf("busy umount changed the bundle: %+v", got)
			}

			if err := Umount(bundle, UmountOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if got := mountsBelow(t, bundle); len(got) > 0 {
				t.Errorf("still mounted after --force: %+v", got)
			}
			if got := stateOf(t, bundle); got.Exists {
				t.Errorf("bundle left after --force: %+v", got)
			}
			if len(e.loops()) != 1 {
				t.Error("the loop device went while the detached mount is still in use")
			}
			if err := sleeper.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = sleeper.Wait()
			e.checkLeftAsFound(bundle, dirState{})
		})
	}
}

// TestUmountForceCleansUpAfterAKillAtEveryStep runs mount's steps up to step k and stops as
// kill -9 would (fds closed, nothing undone), then checks that umount --force leaves no
// mount, no loop device of the SIF and the directory as it was. Before the marker (k < 3)
// there is nothing kerr's to clean but the directory mount created at step 2, which its
// mode marks. Without --force, umount refuses a half-made bundle.
func TestUmountForceCleansUpAfterAKillAtEveryStep(t *testing.T) {
	e := newEnv(t)
	steps := len(newMounter(e.sif, "/x", false).steps())
	for _, readOnly := range []bool{false, true} {
		for _, existing := range []bool{false, true} {
			for k := 0; k <= steps; k++ {
				name := fmt.Sprintf("ro=%v,existing=%v,k=%d", readOnly, existing, k)
				bundle := filepath.Join(e.dir, strings.NewReplacer("=", "", ",", "-").Replace(name))
				if existing {
					if err := os.Mkdir(bundle, 0o750); err != nil {
						t.Fatal(err)
					}
					if err := os.Chown(bundle, 1000, 1000); err != nil {
						t.Fatal(err)
					}
				}
				want := stateOf(t, bundle)

				m := newMounter(e.sif, bundle, readOnly)
				m.seccomp = ""
				if err := m.prepare(); err != nil {
					t.Fatalf("%s: prepare: %v", name, err)
				}
				for i, step := range m.steps()[:k] {
					if err := step(); err != nil {
						t.Fatalf("%s: step %d: %v", name, i+1, err)
					}
				}
				m.release() // the kill: fds close, the lock goes, nothing is undone

				if k >= 3 && k < steps {
					err := Umount(bundle, UmountOptions{})
					if err == nil || !strings.Contains(err.Error(), "half made") {
						t.Errorf("%s: umount without --force: %v", name, err)
					}
				}
				force := k < steps
				err := Umount(bundle, UmountOptions{Force: force})
				switch {
				case k >= 3 || !existing && k == 2:
					if err != nil {
						t.Errorf("%s: umount: %v", name, err)
					}
				case !existing:
					if !errors.Is(err, errdefs.ErrNotFound) {
						t.Errorf("%s: umount: %v", name, err)
					}
				default:
					if !errors.Is(err, errdefs.ErrUsage) {
						t.Errorf("%s: umount: %v", name, err)
					}
				}
				e.checkLeftAsFound(bundle, want)
			}
		}
	}
}

// A umount killed after it unmounted and removed part of the bundle is finished by running
// it again: the marker, removed last, is still there.
func TestUmountAgainFinishesAKilledUmount(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	for _, p := range []string{"rootfs", "overlay/lower"} {
		if err := unix.Unmount(filepath.Join(bundle, p), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"config.json", "overlay/work"} {
		if err := os.RemoveAll(filepath.Join(bundle, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Umount(bundle, UmountOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// A marker that is not kerr's refuses umount without --force; --force still unmounts and
// removes the layout, and leaves the directory (whose original state the marker held).
func TestUmountCorruptMarker(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	if err := os.WriteFile(filepath.Join(bundle, "overlay/kerr-bundle.json"), []byte(`{"version":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Umount(bundle, UmountOptions{}); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("umount: %v", err)
	}
	if len(mountsBelow(t, bundle)) != 2 {
		t.Error("umount refused but unmounted")
	}
	if err := Umount(bundle, UmountOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{Exists: true, Mode: unix.S_IFDIR | 0o700})
}

// The bundle path may run through a symlinked parent: the mount table names the real path,
// and umount finds the mounts there.
func TestBundleBehindASymlinkedParent(t *testing.T) {
	e := newEnv(t)
	real := filepath.Join(e.dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	e.mustMount(filepath.Join(link, "b"), false)
	if got := mountsBelow(t, filepath.Join(real, "b")); len(got) != 2 {
		t.Fatalf("mounts at the real path: %+v", got)
	}
	if err := Umount(filepath.Join(link, "b"), UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(filepath.Join(real, "b"), dirState{})
}

// The moments around the marker: a mount killed after creating the directory (or overlay/,
// or the marker's temp file) but before the marker, and a umount killed after removing the
// marker. umount --force recognises each and leaves the directory as it was before mount;
// what merely looks similar is not touched.
func TestUmountForceCleansAroundTheMarker(t *testing.T) {
	e := newEnv(t)
	type layout struct {
		name       string
		mode, uid  uint32
		overlay    bool   // overlay/ exists
		tmp        string // a file in overlay/
		want       dirState
		recognised bool
	}
	for _, l := range []layout{
		{name: "created", mode: creatingMode, recognised: true},
		{name: "created-overlay", mode: creatingMode, overlay: true, recognised: true},
		{name: "created-tmp-marker", mode: creatingMode, overlay: true, tmp: tmpPrefix + markerName + ".0123", recognised: true},
		{name: "existing-overlay", mode: 0o755, uid: 1000, overlay: true, recognised: true,
			want: dirState{Exists: true, Mode: unix.S_IFDIR | 0o755, UID: 1000}},
		{name: "existing-tmp-marker", mode: 0o755, uid: 1000, overlay: true, tmp: tmpPrefix + markerName + ".4567", recognised: true,
			want: dirState{Exists: true, Mode: unix.S_IFDIR | 0o755, UID: 1000}},
		{name: "users-sticky-dir", mode: creatingMode, uid: 1000},
		{name: "overlay-with-data", mode: 0o755, overlay: true, tmp: "data"},
	} {
		dir := filepath.Join(e.dir, l.name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if l.overlay {
			if err := os.Mkdir(filepath.Join(dir, overlayName), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if l.tmp != "" {
			if err := os.WriteFile(filepath.Join(dir, overlayName, l.tmp), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(dir, int(l.uid), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(dir, l.mode); err != nil {
			t.Fatal(err)
		}
		before := stateOf(t, dir)
		if err := Umount(dir, UmountOptions{}); !errors.Is(err, errdefs.ErrUsage) {
			t.Errorf("%s: umount without --force: %v", l.name, err)
		}
		if got := stateOf(t, dir); got != before {
			t.Errorf("%s: umount without --force changed it: %+v", l.name, got)
		}
		err := Umount(dir, UmountOptions{Force: true})
		if !l.recognised {
			if !errors.Is(err, errdefs.ErrUsage) {
				t.Errorf("%s: umount --force: %v", l.name, err)
			}
			l.want = before
		} else if err != nil {
			t.Errorf("%s: umount --force: %v", l.name, err)
		}
		if got := stateOf(t, dir); got != l.want {
			t.Errorf("%s: left as %+v, want %+v", l.name, got, l.want)
		}
	}
}
