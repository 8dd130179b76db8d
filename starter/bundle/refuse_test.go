package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	bundlerpc "github.com/kerr-hpc/kerr/rpc/bundle"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/starter/loopdev"
)

// TestMountRefusesBadInputAndLeavesNothing runs mount on each bad input: it fails with the
// right sentinel (the starter's exit code) and one clear message, and leaves no mount, no
// loop device of the SIF and the bundle path as it was, even where it failed late (a
// squashfs the kernel rejects, an overlay the filesystem cannot hold, config.json failing).
func TestMountRefusesBadInputAndLeavesNothing(t *testing.T) {
	type tc struct {
		name string
		// setup prepares the env and returns the image and bundle to mount, and a teardown.
		setup    func(e *env) (image, bundle string, teardown func())
		tweak    func(m *mounter)
		sentinel error
		msg      string
	}
	existingDir := func(e *env) string {
		d := filepath.Join(e.dir, "existing")
		if err := os.Mkdir(d, 0o751); err != nil {
			e.t.Fatal(err)
		}
		if err := os.Chown(d, 1000, 1000); err != nil {
			e.t.Fatal(err)
		}
		return d
	}
	cases := []tc{{
		name: "image missing",
		setup: func(e *env) (string, string, func()) {
			return filepath.Join(e.dir, "nope.sif"), filepath.Join(e.dir, "b"), nil
		},
		sentinel: errdefs.ErrNotFound, msg: "no such file",
	}, {
		name: "not a SIF",
		setup: func(e *env) (string, string, func()) {
			return writeFile(e, "junk.sif", bytes.Repeat([]byte("not a sif "), 1000)), filepath.Join(e.dir, "b"), nil
		},
		sentinel: errdefs.ErrInvalidImage, msg: "is not a SIF file",
	}, {
		name: "truncated SIF",
		setup: func(e *env) (string, string, func()) {
			b, err := os.ReadFile(e.sif)
			if err != nil {
				e.t.Fatal(err)
			}
			return writeFile(e, "short.sif", b[:len(b)/2]), filepath.Join(e.dir, "b"), nil
		},
		sentinel: errdefs.ErrInvalidImage, msg: "truncated",
	}, {
		name: "no squashfs root partition",
		setup: func(e *env) (string, string, func()) {
			p := filepath.Join(e.dir, "ext3.sif")
			di, err := sif.NewDescriptorInput(sif.DataPartition, bytes.NewReader(make([]byte, 4096)),
				sif.OptPartitionMetadata(sif.FsExt3, sif.PartPrimSys, "amd64"))
			if err != nil {
				e.t.Fatal(err)
			}
			f, err := sif.CreateContainerAtPath(p, sif.OptCreateWithDescriptors(di))
			if err != nil {
				e.t.Fatal(err)
			}
			if err := f.UnloadContainer(); err != nil {
				e.t.Fatal(err)
			}
			return p, filepath.Join(e.dir, "b"), nil
		},
		sentinel: errdefs.ErrInvalidImage, msg: "kerr supports squashfs",
	}, {
		// Fails at the squashfs mount, after the loop device, the directory and the marker.
		name: "squashfs the kernel rejects",
		setup: func(e *env) (string, string, func()) {
			d := filepath.Join(e.dir, "garbage")
			if err := os.Mkdir(d, 0o755); err != nil {
				e.t.Fatal(err)
			}
			e.sif = writeSIF(e.t, d, bytes.Repeat([]byte{0x5a}, 64<<10), nil)
			return e.sif, existingDir(e), nil
		},
		sentinel: errdefs.ErrInvalidImage, msg: "not a squashfs the kernel can read",
	}, {
		// Fails making config.json, with everything mounted.
		name: "USER unknown to the image",
		setup: func(e *env) (string, string, func()) {
			d := filepath.Join(e.dir, "user")
			if err := os.Mkdir(d, 0o755); err != nil {
				e.t.Fatal(err)
			}
			e.sif = writeSIF(e.t, d, e.sqfs, []byte(`{"os":"linux","config":{"User":"nosuchuser","Cmd":["/bin/sh"]}}`))
			return e.sif, existingDir(e), nil
		},
		sentinel: errdefs.ErrInvalidImage, msg: "nosuchuser",
	}, {
		name: "bundle is a file",
		setup: func(e *env) (string, string, func()) {
			return e.sif, writeFile(e, "file", []byte("x")), nil
		},
		sentinel: errdefs.ErrExists, msg: "exists and is not a directory",
	}, {
		name: "bundle not empty",
		setup: func(e *env) (string, string, func()) {
			d := existingDir(e)
			if err := os.WriteFile(d+"/keep", []byte("x"), 0o644); err != nil {
				e.t.Fatal(err)
			}
			return e.sif, d, nil
		},
		sentinel: errdefs.ErrExists, msg: "is not empty",
	}, {
		name: "bundle already a kerr bundle",
		setup: func(e *env) (string, string, func()) {
			d := filepath.Join(e.dir, "b")
			e.mustMount(d, false)
			return e.sif, d, func() {
				if err := Umount(d, UmountOptions{}); err != nil {
					e.t.Error(err)
				}
			}
		},
		sentinel: errdefs.ErrExists, msg: "is already a kerr bundle (of ",
	}, {
		name: "bundle is a symlink",
		setup: func(e *env) (string, string, func()) {
			l := filepath.Join(e.dir, "link")
			if err := os.Symlink(existingDir(e), l); err != nil {
				e.t.Fatal(err)
			}
			return e.sif, l, nil
		},
		sentinel: errdefs.ErrUsage, msg: "is a symbolic link",
	}, {
		name: "bundle's parent missing",
		setup: func(e *env) (string, string, func()) {
			return e.sif, filepath.Join(e.dir, "no/such/b"), nil
		},
		sentinel: errdefs.ErrNotFound, msg: "bundle directory's parent",
	}, {
		// Fails at the overlay mount, with the squashfs already mounted.
		name: "bundle on overlayfs",
		setup: func(e *env) (string, string, func()) {
			o := filepath.Join(e.dir, "ovl")
			for _, d := range []string{"l", "u", "w", "m"} {
				if err := os.MkdirAll(filepath.Join(o, d), 0o755); err != nil {
					e.t.Fatal(err)
				}
			}
			opts := fmt.Sprintf("lowerdir=%s/l,upperdir=%s/u,workdir=%s/w", o, o, o)
			if err := unix.Mount("overlay", o+"/m", "overlay", 0, opts); err != nil {
				e.t.Fatal(err)
			}
			return e.sif, filepath.Join(o, "m/b"), func() {
				if err := unix.Unmount(o+"/m", 0); err != nil {
					e.t.Error(err)
				}
			}
		},
		sentinel: nil, msg: "(overlayfs) cannot hold the overlay's upper directory: mount overlay: ",
	}, {
		name: "loop devices exhausted",
		setup: func(e *env) (string, string, func()) {
			return e.sif, existingDir(e), nil
		},
		tweak: func(m *mounter) {
			m.attach = func(*os.File, loopdev.Span) (*loopdev.Device, error) {
				return nil, fmt.Errorf("%w: /dev/loop-control: LOOP_CTL_GET_FREE: %w", loopdev.ErrNoFreeDevice, unix.ENOSPC)
			}
		},
		sentinel: loopdev.ErrNoFreeDevice, msg: "no free loop device",
	}, {
		// Fails writing config.json, with everything mounted.
		name: "config.json cannot be made",
		setup: func(e *env) (string, string, func()) {
			return e.sif, existingDir(e), nil
		},
		tweak:    func(m *mounter) { m.seccomp = "/nonexistent/kerr/seccomp.json" },
		sentinel: nil, msg: "config.json for ",
	}}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			image, bundle, teardown := c.setup(e)
			if teardown != nil {
				defer teardown()
			}
			want := stateOf(t, bundle)
			mountsBefore := len(mountsBelow(t, bundle))
			m := newMounter(image, bundle, false)
			m.seccomp = ""
			if c.tweak != nil {
				c.tweak(m)
			}
			err := m.mount()
			t.Logf("error: %v", err)
			if err == nil {
				t.Fatal("mount succeeded")
			}
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Errorf("error does not wrap %v", c.sentinel)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error does not say %q", c.msg)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "undoing it failed") {
				t.Errorf("error is not one clean line")
			}
			if got := len(mountsBelow(t, bundle)); got != mountsBefore {
				t.Errorf("%d mounts below the bundle, %d before", got, mountsBefore)
			}
			if mountsBefore == 0 {
				e.waitNoLoop()
			}
			if got := stateOf(t, bundle); got != want {
				t.Errorf("bundle path left as %+v, want %+v", got, want)
			}
		})
	}
}

func writeFile(e *env, name string, data []byte) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// Mount and Umount check the effective uid before anything else; the starter test runs
// them as another user, here the paths are checked.
func TestMountAndUmountRefuseRelativePaths(t *testing.T) {
	needRoot(t)
	if err := Mount("rel.sif", "/tmp/b", false); !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("relative image: %v", err)
	}
	if err := Mount("/tmp/x.sif", "b/../c", false); !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("relative bundle: %v", err)
	}
	if err := Umount("/tmp/../b", UmountOptions{}); !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("unclean bundle: %v", err)
	}
}

// The engine refuses a config that does not validate before doing anything; the starter
// exits 253 for these.
func TestEngineRejectsInvalidConfigs(t *testing.T) {
	for name, cfg := range map[string]string{
		"relative bundle":   `{"action":"umount","bundle":"b"}`,
		"unknown action":    `{"action":"remount","bundle":"/b"}`,
		"mount with force":  `{"action":"mount","image":"/i.sif","bundle":"/b","force":true}`,
		"umount with image": `{"action":"umount","image":"/i.sif","bundle":"/b"}`,
		"duplicate key":     `{"action":"umount","bundle":"/b","bundle":"/c"}`,
	} {
		env := &envelope.Envelope{Version: 1, Engine: "bundle", ID: bundlerpc.ID("/b"), Config: []byte(cfg)}
		if err := (Engine{}).Run(env); !errors.Is(err, envelope.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
