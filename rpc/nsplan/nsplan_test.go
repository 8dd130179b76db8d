package nsplan

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEncodeLayout(t *testing.T) {
	p := Plan{Unshare: unix.CLONE_NEWUTS | unix.CLONE_NEWNS, Join: []Join{{Type: unix.CLONE_NEWNET, Path: "/proc/1/ns/net"}}}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), Magic) {
		t.Fatalf("no magic: %q", b)
	}
	rest := b[len(Magic):]
	if binary.NativeEndian.Uint32(rest) != p.Unshare || binary.NativeEndian.Uint32(rest[4:]) != 1 ||
		binary.NativeEndian.Uint32(rest[8:]) != unix.CLONE_NEWNET || binary.NativeEndian.Uint32(rest[12:]) != 14 ||
		string(rest[16:]) != "/proc/1/ns/net" {
		t.Fatalf("layout %q", rest)
	}
}

func TestEncodeRefuses(t *testing.T) {
	long := "/" + strings.Repeat("x", unix.PathMax)
	for name, p := range map[string]Plan{
		"unknown flag":     {Unshare: 1},
		"two types":        {Join: []Join{{Type: unix.CLONE_NEWNET | unix.CLONE_NEWUTS, Path: "/a"}}},
		"relative path":    {Join: []Join{{Type: unix.CLONE_NEWNET, Path: "a"}}},
		"NUL in path":      {Join: []Join{{Type: unix.CLONE_NEWNET, Path: "/a\x00b"}}},
		"long path":        {Join: []Join{{Type: unix.CLONE_NEWNET, Path: long}}},
		"join twice":       {Join: []Join{{Type: unix.CLONE_NEWNET, Path: "/a"}, {Type: unix.CLONE_NEWNET, Path: "/b"}}},
		"join and unshare": {Unshare: unix.CLONE_NEWNET, Join: []Join{{Type: unix.CLONE_NEWNET, Path: "/a"}}},
		"too many to join": {Join: make([]Join, MaxJoin+1)},
		"zero type":        {Join: []Join{{Type: 0, Path: "/a"}}},
	} {
		if _, err := p.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestForksChild(t *testing.T) {
	if (Plan{Unshare: unix.CLONE_NEWNS}).ForksChild() {
		t.Error("a mount namespace alone forks")
	}
	if !(Plan{Unshare: unix.CLONE_NEWPID}).ForksChild() || !(Plan{Join: []Join{{Type: unix.CLONE_NEWPID, Path: "/a"}}}).ForksChild() {
		t.Error("a pid namespace does not fork")
	}
	if !(Plan{Unshare: unix.CLONE_NEWTIME}).ForksChild() {
		t.Error("a time namespace does not fork")
	}
}

func TestConnMessagesAndFiles(t *testing.T) {
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := NewConn(a), NewConn(b)
	defer ca.Close()
	if err := ca.Send(MsgReady, []byte("x")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ca.SendFile(MsgConsole, []byte("/dev/pts/0"), f); err != nil {
		t.Fatal(err)
	}
	if typ, p, err := cb.Recv(); err != nil || typ != MsgReady || string(p) != "x" {
		t.Fatalf("recv: %d %q %v", typ, p, err)
	}
	typ, p, got, err := cb.RecvFile()
	if err != nil || typ != MsgConsole || string(p) != "/dev/pts/0" || got == nil {
		t.Fatalf("recv file: %d %q %v %v", typ, p, got, err)
	}
	var st1, st2 unix.Stat_t
	if unix.Fstat(int(got.Fd()), &st1) != nil || unix.Fstat(int(f.Fd()), &st2) != nil || st1.Rdev != st2.Rdev {
		t.Error("the fd received is not /dev/null")
	}
	got.Close()
	if err := ca.Send(MsgReady, make([]byte, MaxMessage)); err == nil {
		t.Error("an oversized message was sent")
	}
	cb.Close()
	if _, _, err := ca.Recv(); err != ErrClosed {
		t.Errorf("recv after the peer closed: %v, want ErrClosed", err)
	}
}

func TestPID(t *testing.T) {
	b := binary.NativeEndian.AppendUint32(nil, 42)
	if pid, err := PID(b); err != nil || pid != 42 {
		t.Errorf("PID: %d %v", pid, err)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, binary.NativeEndian.AppendUint32(nil, 0), binary.NativeEndian.AppendUint32(nil, 0xffffffff)} {
		if _, err := PID(bad); err == nil {
			t.Errorf("PID(%v) accepted", bad)
		}
	}
}
