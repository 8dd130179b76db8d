package loopdev

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: binds loop devices")
	}
}

// backingFile makes a 16 KiB file and returns it open read-only, with its device and inode.
func backingFile(t *testing.T) (*os.File, uint64, uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(p, make([]byte, 16<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, st.Dev, st.Ino
}

// waitUnbound waits for autoclear to unbind every device of the file (dev, ino); the kernel
// may finish that just after the last close returns.
func waitUnbound(t *testing.T, dev, ino uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, err := BoundTo(dev, ino)
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices still bound to the file: %+v", ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAttachBindsReadOnlyAutoclearSpan(t *testing.T) {
	needRoot(t)
	f, dev, ino := backingFile(t)
	d, err := Attach(f, Span{Offset: 4096, Size: 8192})
	if err != nil {
		t.Fatal(err)
	}
	if d.Shared {
		t.Error("a fresh binding says Shared")
	}
	ss, err := BoundTo(dev, ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].Number != d.Number || ss[0].Offset != 4096 || ss[0].SizeLimit != 8192 ||
		ss[0].Flags&wantFlags != wantFlags {
		t.Fatalf("bound %+v, attached %s", ss, d.Path)
	}
	// The device is read-only: writing to it fails (the open itself may succeed).
	if w, err := os.OpenFile(d.Path, os.O_WRONLY, 0); err == nil {
		_, werr := w.Write(make([]byte, 512))
		_ = w.Close()
		if werr == nil {
			t.Error("wrote to the read-only loop device")
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	waitUnbound(t, dev, ino)
}

func TestAttachSharesADeviceWithTheSameSpan(t *testing.T) {
	needRoot(t)
	f, dev, ino := backingFile(t)
	a, err := Attach(f, Span{Offset: 0, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// A second open of the same file (another fd, same inode) finds the first device.
	f2, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f2.Close() }()
	b, err := Attach(f2, Span{Offset: 0, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Shared || b.Number != a.Number {
		t.Errorf("second attach got %s shared=%v, want %s shared", b.Path, b.Shared, a.Path)
	}
	// Another span of the same file is another device.
	c, err := Attach(f, Span{Offset: 4096, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if c.Shared || c.Number == a.Number {
		t.Errorf("other span got %s shared=%v", c.Path, c.Shared)
	}
	for _, d := range []*Device{a, b, c} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitUnbound(t, dev, ino)
}

// Autoclear with nothing mounted: closing the last fd unbinds the device, which is what
// cleans up after a mount killed between binding and mounting.
func TestAutoclearReleasesTheDeviceWhenTheFDCloses(t *testing.T) {
	needRoot(t)
	f, dev, ino := backingFile(t)
	a, err := Attach(f, Span{Offset: 0, Size: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attach(f, Span{Offset: 0, Size: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b still holds it.
	if ss, err := BoundTo(dev, ino); err != nil || len(ss) != 1 {
		t.Fatalf("after the first close: %+v %v", ss, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitUnbound(t, dev, ino)
}

// Kernels before 5.8 answer LOOP_CONFIGURE with ENOTTY or EINVAL; Attach then binds with
// LOOP_SET_FD and LOOP_SET_STATUS64 and gets the same device.
func TestAttachFallsBackWithoutLoopConfigure(t *testing.T) {
	needRoot(t)
	for _, errno := range []syscall.Errno{syscall.ENOTTY, syscall.EINVAL} {
		loopConfigure = func(int, *unix.LoopConfig) error { return errno }
		f, dev, ino := backingFile(t)
		d, err := Attach(f, Span{Offset: 4096, Size: 4096})
		loopConfigure = unix.IoctlLoopConfigure
		if err != nil {
			t.Fatalf("%v: %v", errno, err)
		}
		ss, err := BoundTo(dev, ino)
		if err != nil || len(ss) != 1 || ss[0].Offset != 4096 || ss[0].SizeLimit != 4096 || ss[0].Flags&wantFlags != wantFlags {
			t.Errorf("%v: bound %+v %v", errno, ss, err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		waitUnbound(t, dev, ino)
	}
}

func TestAttachRefusesABadSpan(t *testing.T) {
	f, _, _ := backingFile(t)
	for _, s := range []Span{{Offset: -1, Size: 1}, {Offset: 0, Size: 0}} {
		if d, err := Attach(f, s); err == nil {
			_ = d.Close()
			t.Errorf("Attach(%+v) succeeded", s)
		}
	}
}
