// Package loopdev binds part of a file to a loop device, read-only and with autoclear, and
// finds a device already bound to the same part of the same file so that several mounts of
// one image share one device.
//
// Autoclear is what keeps loop devices from leaking: the kernel unbinds the device when its
// last user goes, whether that is the fd held here (closed on any exit, kill -9 included) or
// a mount of it. A caller therefore opens a Device, mounts it, and closes it; it never
// detaches a device itself.
//
// One exception, on kernels before 5.8 only: they lack LOOP_CONFIGURE, and binding takes
// two calls, LOOP_SET_FD and then LOOP_SET_STATUS64 (which sets autoclear). A process
// killed between the two leaves the device bound, without autoclear, until someone detaches
// it (losetup -d). On 5.8 and later binding is one call and this cannot happen.
//
// Privileges: binding a device (Attach) needs root (CAP_SYS_ADMIN and access to
// /dev/loop-control and /dev/loopN); Find and BoundTo need read access to /dev/loopN, which
// in practice is root too. Nothing here changes ids or capabilities.
package loopdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoFreeDevice is wrapped when the kernel has no loop device left to give
// (LOOP_CTL_GET_FREE failed, or every device it offered was taken by others first).
var ErrNoFreeDevice = errors.New("no free loop device")

// Paths of the kernel's loop interfaces; tests leave them alone.
const (
	controlPath = "/dev/loop-control"
	sysBlock    = "/sys/block"
)

// getFreeTries bounds how often Attach asks for a free device when another process binds
// the one it was offered first (EBUSY).
const getFreeTries = 10

// loopConfigure is LOOP_CONFIGURE; a test replaces it to exercise the fallback of kernels
// before 5.8.
var loopConfigure = unix.IoctlLoopConfigure

// wantFlags are the flags of every device this package binds or shares.
const wantFlags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR

// Device is an open, bound loop device. While it is open the kernel keeps the binding; after
// Close, autoclear unbinds it as soon as nothing else (a mount) uses it.
type Device struct {
	// Path is the device node, /dev/loopN.
	Path string
	// Number is N.
	Number int
	// Shared is true when the device was already bound (by another mount of the same image)
	// and Attach reused it.
	Shared bool
	f      *os.File
}

// Close releases this process's hold on the device. Privileges: none.
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", d.Path, err)
	}
	return nil
}

// Status is what the kernel says about a bound loop device.
type Status struct {
	Number int
	// Dev and Inode identify the backing file (st_dev and st_ino of stat(2)).
	Dev, Inode uint64
	// Offset and SizeLimit are the bound part of the file, in bytes; SizeLimit 0 means to
	// the end of the file.
	Offset, SizeLimit uint64
	// Flags are LO_FLAGS_*.
	Flags uint32
}

// Span is the part of a backing file that a device shows.
type Span struct {
	Offset, Size int64
}

// Attach returns a loop device showing span of backing, read-only with autoclear: an
// already bound device with the same backing file (device and inode), offset, size and
// flags if there is one, else a free device bound now (LOOP_CONFIGURE, or LOOP_SET_FD and
// LOOP_SET_STATUS64 on kernels without it). backing must be open read-only.
//
// Attach holds an exclusive flock on /dev/loop-control from the search to the binding, so
// that two kerr processes mounting one image agree on one device; tools that do not take
// the lock (losetup) may still race, which costs a second device, never a wrong one.
//
// Privileges: root (see the package comment).
func Attach(backing *os.File, span Span) (*Device, error) {
	return attach(backing, span, true)
}

// AttachOwn is Attach without sharing: it always binds a device of its own (the policy's
// shared_loop_devices off).
func AttachOwn(backing *os.File, span Span) (*Device, error) {
	return attach(backing, span, false)
}

func attach(backing *os.File, span Span, share bool) (*Device, error) {
	if span.Offset < 0 || span.Size <= 0 {
		return nil, fmt.Errorf("loop device for %s: bad span offset %d size %d", backing.Name(), span.Offset, span.Size)
	}
	st, err := backing.Stat()
	if err != nil {
		return nil, fmt.Errorf("loop device for %s: %w", backing.Name(), err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("loop device for %s: not a regular file", backing.Name())
	}
	ctl, err := os.OpenFile(controlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", controlPath, err)
	}
	defer func() { _ = ctl.Close() }() // also drops the lock
	ctlFD := int(ctl.Fd())
	if err := flock(ctlFD); err != nil {
		return nil, fmt.Errorf("lock %s: %w", controlPath, err)
	}
	if share {
		d, err := find(uint64(sys.Dev), sys.Ino, span)
		if err != nil || d != nil {
			return d, err
		}
	}
	return attachFree(ctlFD, backing, span)
}

// flock takes an exclusive lock on fd, waiting for it; the lock goes with the fd.
func flock(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// find returns an open device bound to span of the file (dev, ino) with wantFlags, or nil.
// The device is opened before its status is read, so autoclear cannot unbind it between
// the check and the caller's mount.
func find(dev, ino uint64, span Span) (*Device, error) {
	nums, err := boundNumbers()
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		path := devPath(n)
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // unbound or removed since the listing
		}
		s, err := status(f)
		if err == nil && s.Dev == dev && s.Inode == ino && s.Offset == uint64(span.Offset) &&
			s.SizeLimit == uint64(span.Size) && s.Flags&wantFlags == wantFlags {
			return &Device{Path: path, Number: n, Shared: true, f: f}, nil
		}
		_ = f.Close()
	}
	return nil, nil
}

// attachFree binds a free device to span of backing.
func attachFree(ctlFD int, backing *os.File, span Span) (*Device, error) {
	var lastErr error
	for range getFreeTries {
		n, err := unix.IoctlRetInt(ctlFD, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: LOOP_CTL_GET_FREE: %w (every loop device is in use, or the loop module's max_loop is reached)",
				ErrNoFreeDevice, controlPath, err)
		}
		path := devPath(n)
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		err = bind(f, backing, span)
		if err == nil {
			return &Device{Path: path, Number: n, f: f}, nil
		}
		_ = f.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("bind %s to %s: %w", path, backing.Name(), err)
		}
		lastErr = err // another process took it first; ask again
	}
	return nil, fmt.Errorf("%w: %d free loop devices were taken by other processes first: %w", ErrNoFreeDevice, getFreeTries, lastErr)
}

// bind binds the unbound device dev to span of backing and checks what the kernel did.
func bind(dev, backing *os.File, span Span) error {
	devFD, backFD := int(dev.Fd()), int(backing.Fd())
	info := unix.LoopInfo64{Offset: uint64(span.Offset), Sizelimit: uint64(span.Size), Flags: wantFlags}
	copy(info.File_name[:len(info.File_name)-1], backing.Name())
	err := loopConfigure(devFD, &unix.LoopConfig{Fd: uint32(backFD), Info: info})
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		// Kernels before 5.8 lack LOOP_CONFIGURE: bind, then set the span and flags. The
		// device is read-only because backing is. Not atomic: a kill -9 between the two
		// calls leaves the device bound without autoclear (see the package comment).
		if err = unix.IoctlSetInt(devFD, unix.LOOP_SET_FD, backFD); err != nil {
			return fmt.Errorf("LOOP_SET_FD: %w", err)
		}
		info.Flags = unix.LO_FLAGS_AUTOCLEAR
		if err = unix.IoctlLoopSetStatus64(devFD, &info); err != nil {
			_ = unix.IoctlSetInt(devFD, unix.LOOP_CLR_FD, 0)
			return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("LOOP_CONFIGURE: %w", err)
	}
	s, err := status(dev)
	if err != nil {
		return err
	}
	if s.Offset != uint64(span.Offset) || s.SizeLimit != uint64(span.Size) || s.Flags&wantFlags != wantFlags {
		// The fd closes on return and autoclear (if it took) unbinds the device; clear it
		// explicitly in case it did not.
		_ = unix.IoctlSetInt(devFD, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("the kernel bound offset %d size %d flags %#x, asked for offset %d size %d flags %#x",
			s.Offset, s.SizeLimit, s.Flags, span.Offset, span.Size, wantFlags)
	}
	return nil
}

// status reads LOOP_GET_STATUS64 from an open loop device.
func status(f *os.File) (Status, error) {
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return Status{}, fmt.Errorf("%s: LOOP_GET_STATUS64: %w", f.Name(), err)
	}
	return Status{Number: int(info.Number), Dev: info.Device, Inode: info.Inode,
		Offset: info.Offset, SizeLimit: info.Sizelimit, Flags: info.Flags}, nil
}

// BoundTo lists the loop devices bound to the file with device dev and inode ino, whatever
// their span and flags. Tests and cleanup checks use it to prove nothing leaked.
// Privileges: read access to /dev/loopN (root).
func BoundTo(dev, ino uint64) ([]Status, error) {
	nums, err := boundNumbers()
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, n := range nums {
		f, err := os.OpenFile(devPath(n), os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		s, err := status(f)
		_ = f.Close()
		if err == nil && s.Dev == dev && s.Inode == ino {
			out = append(out, s)
		}
	}
	return out, nil
}

// boundNumbers lists N for each /sys/block/loopN that has a backing file, i.e. is bound.
// Reading sysfs first avoids opening every device node.
func boundNumbers() ([]int, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list loop devices: %w", err)
	}
	var nums []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "loop")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(sysBlock, e.Name(), "loop", "backing_file")); err != nil {
			continue
		}
		nums = append(nums, n)
	}
	return nums, nil
}

func devPath(n int) string { return "/dev/loop" + strconv.Itoa(n) }
