// Package nsplan is the Go side of two small protocols of the C stage of the starter
// (starter-c/starter.h): the namespace plan, a binary preamble before the envelope on the
// config fd that tells a root-only starter which namespaces to join and create before Go
// starts; and the messages on the sync fd, a SOCK_SEQPACKET socket between the runtime and
// the process that becomes a container's.
//
// The constants here must equal starter.h's; cmd/starter checks that at every start, as
// this package cannot link the C stage.
package nsplan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Magic starts a plan (KERR_PLAN_MAGIC).
const Magic = "KERRNS1\n"

// MaxJoin is the most namespaces a plan may join (KERR_PLAN_MAX_JOIN).
const MaxJoin = 8

// Message types on the sync fd. 1-4 are the C stage's (enum kerr_sync_type); the Go stages
// use 16 and up.
const (
	MsgUsermap     = 1 // child -> parent: write my uid_map and gid_map now
	MsgUsermapDone = 2 // parent -> child: the maps are written
	MsgPID         = 3 // child -> parent: int32, the pid of the process that went on
	MsgError       = 4 // child -> parent: one line of error text

	MsgHooks     = 16 // child -> parent: the mounts are done, run the runtime's hooks
	MsgHooksDone = 17 // parent -> child: the hooks ran
	MsgReady     = 18 // child -> parent: set up; waiting for start (or about to exec)
	MsgGo        = 19 // parent -> child: the pid is recorded and in its cgroup; go on (may carry the exec fifo)
	MsgCommit    = 20 // parent -> child: the runtime recorded the process; it may wait for start
	MsgConsole   = 21 // child -> parent: the pty master of the process's terminal (fd), payload its name
)

// Namespaces a plan may name (KERR_NS_ALL).
const allNS = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWNET | unix.CLONE_NEWPID | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Join is a namespace to enter: its CLONE_NEW* type and the path of its nsfs file.
type Join struct {
	Type uint32
	Path string
}

// Plan is what the C stage does before Go starts in the container's process.
type Plan struct {
	Unshare uint32 // CLONE_NEW* flags of the namespaces to create
	Join    []Join // namespaces to join, user namespace first whatever the order here
}

// Encode returns the plan's bytes, to be written before the envelope on the config fd.
func (p Plan) Encode() ([]byte, error) {
	if p.Unshare&^allNS != 0 {
		return nil, fmt.Errorf("namespace plan: unknown flags %#x", p.Unshare&^allNS)
	}
	if len(p.Join) > MaxJoin {
		return nil, fmt.Errorf("namespace plan: %d namespaces to join, at most %d", len(p.Join), MaxJoin)
	}
	b := []byte(Magic)
	b = binary.NativeEndian.AppendUint32(b, p.Unshare)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(p.Join)))
	var seen uint32
	for _, j := range p.Join {
		if j.Type == 0 || j.Type&(j.Type-1) != 0 || j.Type&^allNS != 0 {
			return nil, fmt.Errorf("namespace plan: bad type %#x for %s", j.Type, j.Path)
		}
		if seen&j.Type != 0 || p.Unshare&j.Type != 0 {
			return nil, fmt.Errorf("namespace plan: namespace %#x given twice", j.Type)
		}
		seen |= j.Type
		if len(j.Path) == 0 || j.Path[0] != '/' || len(j.Path) >= unix.PathMax || containsNUL(j.Path) {
			return nil, fmt.Errorf("namespace plan: bad path %q", j.Path)
		}
		b = binary.NativeEndian.AppendUint32(b, j.Type)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(j.Path)))
		b = append(b, j.Path...)
	}
	return b, nil
}

// ForksChild reports whether the C stage forks: a new or joined pid or time namespace only
// takes effect in children.
func (p Plan) ForksChild() bool {
	all := p.Unshare
	for _, j := range p.Join {
		all |= j.Type
	}
	return all&(unix.CLONE_NEWPID|unix.CLONE_NEWTIME) != 0
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// MaxMessage bounds one message on the sync fd.
const MaxMessage = 64 << 10

// ErrClosed is returned by Recv when the other side closed the socket or exited.
var ErrClosed = errors.New("sync socket closed")

// Conn is one end of the sync socket. Each Send is one message; Recv returns one.
type Conn struct{ f *os.File }

// NewConn wraps f, a SOCK_SEQPACKET socket. Conn owns it from here.
func NewConn(f *os.File) *Conn { return &Conn{f: f} }

// Pair returns the two ends of a new sync socket, close-on-exec.
func Pair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sync socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sync-parent"), os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// File returns the socket.
func (c *Conn) File() *os.File { return c.f }

// Close closes the socket.
func (c *Conn) Close() error { return c.f.Close() }

// Send sends a message of type t with payload p.
func (c *Conn) Send(t uint32, p []byte) error {
	if len(p) > MaxMessage-4 {
		return fmt.Errorf("sync: message of %d bytes is too large", len(p))
	}
	b := binary.NativeEndian.AppendUint32(make([]byte, 0, 4+len(p)), t)
	b = append(b, p...)
	if _, err := c.f.Write(b); err != nil {
		return fmt.Errorf("sync: send message %d: %w", t, err)
	}
	return nil
}

// SendFile sends a message of type t with payload p and the fd of f (SCM_RIGHTS).
func (c *Conn) SendFile(t uint32, p []byte, f *os.File) error {
	b := binary.NativeEndian.AppendUint32(make([]byte, 0, 4+len(p)), t)
	b = append(b, p...)
	raw, err := c.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), b, unix.UnixRights(int(f.Fd())), nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sync: send message %d with fd: %w", t, err)
	}
	return nil
}

// Recv reads one message; an fd sent with it is closed. A closed peer gives ErrClosed.
func (c *Conn) Recv() (uint32, []byte, error) {
	t, p, f, err := c.RecvFile()
	if f != nil {
		f.Close()
	}
	return t, p, err
}

// RecvFile reads one message and the fd that came with it, if any (close-on-exec).
func (c *Conn) RecvFile() (uint32, []byte, *os.File, error) {
	b := make([]byte, MaxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	raw, err := c.f.SyscallConn()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("sync: %w", err)
	}
	var n, oobn int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	var f *os.File
	if err == nil && oobn > 0 {
		f, err = parseRights(oob[:oobn])
	}
	switch {
	case errors.Is(err, unix.ECONNRESET):
		return 0, nil, nil, ErrClosed
	case err != nil:
		return 0, nil, nil, fmt.Errorf("sync: receive: %w", err)
	case n == 0:
		if f != nil {
			f.Close()
		}
		return 0, nil, nil, ErrClosed
	case n < 4:
		if f != nil {
			f.Close()
		}
		return 0, nil, nil, fmt.Errorf("sync: short message of %d bytes", n)
	}
	return binary.NativeEndian.Uint32(b[:4]), b[4:n], f, nil
}

// parseRights takes the fds of an SCM_RIGHTS message: the first is kept, any more closed.
func parseRights(oob []byte) (*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var f *os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if f == nil {
				f = os.NewFile(uintptr(fd), "sync-fd")
			} else {
				_ = unix.Close(fd)
			}
		}
	}
	return f, nil
}

// PID decodes the payload of a MsgPID message.
func PID(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("sync: pid message of %d bytes", len(p))
	}
	pid := int(int32(binary.NativeEndian.Uint32(p)))
	if pid <= 0 {
		return 0, fmt.Errorf("sync: bad pid %d", pid)
	}
	return pid, nil
}
