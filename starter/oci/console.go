package oci

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/kerr-hpc/kerr/rpc/nsplan"
)

// newConsole gives the container's process a terminal (process.terminal), from the
// container's own devpts, as runc does: it opens the container's /dev/ptmx, binds the new
// pty's slave at /dev/console, makes the slave its stdio and controlling terminal, and
// returns the master for the runtime (the console socket, the monitor or exec's proxy).
// It runs after pivot_root, in a session of its own. Privileges: root of the container's
// namespaces.
func newConsole(size *specs.Box, bindConsole bool) (*os.File, error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("terminal: open /dev/ptmx (needs a devpts at /dev/pts and /dev/ptmx): %w", err)
	}
	name, err := setupSlave(mfd, size, bindConsole)
	if err != nil {
		unix.Close(mfd)
		return nil, fmt.Errorf("terminal: %w", err)
	}
	// The runtime learns the slave's name (in the container) with the master.
	return os.NewFile(uintptr(mfd), name), nil
}

// setupSlave unlocks and opens the slave of master mfd, sizes it, binds it at /dev/console
// and makes it this process's stdio and controlling terminal. It returns its name.
func setupSlave(mfd int, size *specs.Box, bindConsole bool) (string, error) {
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return "", fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return "", fmt.Errorf("ptsname: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	// The slave is opened from the master itself (TIOCGPTPEER): no path to redirect.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return "", fmt.Errorf("open the pty's slave: %w", errno)
	}
	sfd := int(r)
	defer unix.Close(sfd)
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(sfd, unix.TIOCSWINSZ, ws); err != nil {
			return "", fmt.Errorf("set size: %w", err)
		}
	}
	if bindConsole {
		if err := bindDevConsole(sfd); err != nil {
			return "", err
		}
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(sfd, fd, 0); err != nil {
			return "", fmt.Errorf("dup2 slave to %d: %w", fd, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return "", fmt.Errorf("make it the controlling terminal: %w", err)
	}
	return name, nil
}

// bindDevConsole bind-mounts the pty slave (fd) at /dev/console: the mount is cloned from
// the fd and moved onto an fd of /dev/console opened without following symlinks, so an
// image's /dev/console cannot redirect it (CVE-2025-52565). A missing /dev/console is
// created as an empty file; anything but a regular file or a character device is refused.
func bindDevConsole(slave int) error {
	dev, err := unix.Open("/dev", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev: %w", err)
	}
	defer unix.Close(dev)
	fd, err := unix.Openat(dev, "console", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Close(fd)
	} else if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create /dev/console: %w", err)
	}
	target, err := unix.Openat(dev, "console", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	defer unix.Close(target)
	var st unix.Stat_t
	if err := unix.Fstat(target, &st); err != nil {
		return fmt.Errorf("stat /dev/console: %w", err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFCHR {
		return fmt.Errorf("/dev/console is not a file or a device (mode %o)", st.Mode)
	}
	tree, err := unix.OpenTree(slave, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone the pty slave: %w", err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind the pty at /dev/console: %w", err)
	}
	return nil
}

// sendConsole passes the pty master to the runtime on the sync socket, the slave's name
// (in the container) as the payload.
func sendConsole(conn *nsplan.Conn, master *os.File) error {
	err := conn.SendFile(nsplan.MsgConsole, []byte(master.Name()), master)
	// The process keeps no copy of the master: its terminal is the slave.
	master.Close()
	return err
}

// sendToConsoleSocket hands the pty master to whoever listens on path (containerd's shim,
// conmon): one message, the pty's name as its data and the master as its only fd, as runc
// sends it. Privileges: root; the socket is the caller's.
func sendToConsoleSocket(path string, master *os.File, name string) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("console socket %s: %w", path, err)
	}
	defer conn.Close()
	_, _, err = conn.WriteMsgUnix([]byte(name), unix.UnixRights(int(master.Fd())), nil)
	if err != nil {
		return fmt.Errorf("console socket %s: %w", path, err)
	}
	return nil
}

// proxyTerminal connects our stdio to the pty master of an exec'd process (`kerr oci exec
// --tty` without a console socket): our terminal goes raw, input goes to the process, its
// output comes back. The returned func restores the terminal once the process has exited
// and its last output is shown. Privileges: root in the runtime's namespaces.
func proxyTerminal(master *os.File) func() {
	var restore func()
	if st, err := term.MakeRaw(0); err == nil {
		restore = func() { _ = term.Restore(0, st) }
	}
	copyWinsize(master)
	go func() { _, _ = io.Copy(master, os.Stdin) }()
	out := make(chan struct{})
	go func() {
		// EIO once the slave is closed everywhere: the process and its children are gone.
		_, _ = io.Copy(os.Stdout, master)
		close(out)
	}()
	return func() {
		select {
		case <-out:
		case <-time.After(time.Second):
		}
		if restore != nil {
			restore()
		}
	}
}

// copyWinsize gives the pty our terminal's size, if stdin is a terminal.
func copyWinsize(master *os.File) {
	ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
}
