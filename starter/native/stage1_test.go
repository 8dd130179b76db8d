package native

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/policy"
	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
)

// mountsFor runs standardMounts for req with the default policy and a caller whose home is
// home. It opens real paths (as whoever runs the test), as stage 1 does as the caller.
func mountsFor(t *testing.T, req rpcnative.Config, home string) *Plan {
	t.Helper()
	b := &planBuilder{req: &req, pol: policy.Default(), plan: &Plan{Caller: Caller{Home: home}, TmpSize: 1 << 20}}
	t.Cleanup(b.closeAll)
	if err := b.standardMounts(); err != nil {
		t.Fatalf("standardMounts: %v", err)
	}
	if len(b.files) != len(b.plan.Binds) {
		t.Errorf("%d files for %d binds", len(b.files), len(b.plan.Binds))
	}
	for i, pb := range b.plan.Binds {
		if pb.FD != i {
			t.Errorf("bind %d names fd %d", i, pb.FD)
		}
	}
	return b.plan
}

// binds lists a plan's binds as "what src:dest".
func binds(p *Plan) []string {
	var out []string
	for _, b := range p.Binds {
		out = append(out, b.What+" "+b.Source+":"+b.Dest)
	}
	return out
}

// Where the payload starts and what is bound for it, as Singularity decides: the cwd is
// entered where it is visible (under the bound home or /tmp, or an image's own system
// directory), bound when it is elsewhere, and given up for $HOME when it cannot be bound.
func TestStandardMountsCwd(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "home")
	inHome := filepath.Join(home, "project")
	other := filepath.Join(base, "scratch", "job")
	altHome := filepath.Join(base, "althome")
	for _, d := range []string{inHome, other, altHome} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	noTmp := []string{"tmp"} // so that a cwd under the test's TMPDIR is not under a bound /tmp
	tmpBinds := []string{"tmp /tmp:/tmp", "tmp /var/tmp:/var/tmp"}
	cases := []struct {
		name    string
		req     rpcnative.Config
		cwd     string
		binds   []string
		tmpfs   []string
		home    string // want p.Home; default home
		warning string
	}{
		{name: "cwd under the home", req: rpcnative.Config{Cwd: inHome, NoMount: noTmp},
			cwd: inHome, binds: []string{"home " + home + ":" + home}},
		{name: "cwd elsewhere is bound", req: rpcnative.Config{Cwd: other, NoMount: noTmp},
			cwd: other, binds: []string{"home " + home + ":" + home, "cwd " + other + ":" + other}},
		{name: "cwd that cannot be bound", req: rpcnative.Config{Cwd: filepath.Join(base, "gone"), NoMount: noTmp},
			cwd: home, binds: []string{"home " + home + ":" + home}, warning: "not binding the current directory"},
		{name: "cwd in a system directory", req: rpcnative.Config{Cwd: "/usr/bin", NoMount: noTmp},
			cwd: "/usr/bin", binds: []string{"home " + home + ":" + home}},
		{name: "cwd /", req: rpcnative.Config{Cwd: "/", NoMount: noTmp},
			cwd: "/", binds: []string{"home " + home + ":" + home}},
		{name: "cwd /etc/ssh is the image's, never the host's", req: rpcnative.Config{Cwd: "/etc/ssh", NoMount: noTmp},
			cwd: "/etc/ssh", binds: []string{"home " + home + ":" + home}},
		{name: "/var/tmp is not a system directory", req: rpcnative.Config{Cwd: "/var/tmp", NoMount: noTmp},
			cwd: "/var/tmp", binds: []string{"home " + home + ":" + home, "cwd /var/tmp:/var/tmp"}},
		{name: "cwd under the bound /tmp", req: rpcnative.Config{Cwd: "/tmp"},
			cwd: "/tmp", binds: append(slices.Clone(tmpBinds), "home "+home+":"+home)},
		{name: "--pwd wins, the cwd is not bound", req: rpcnative.Config{Cwd: other, Pwd: "/opt/app", NoMount: noTmp},
			cwd: "/opt/app", binds: []string{"home " + home + ":" + home}},
		{name: "--no-mount cwd", req: rpcnative.Config{Cwd: other, NoMount: []string{"tmp", "cwd"}},
			cwd: other, binds: []string{"home " + home + ":" + home}},
		{name: "--no-home: a cwd in the home is bound alone", req: rpcnative.Config{Cwd: inHome, NoHome: true, NoMount: noTmp},
			cwd: inHome, binds: []string{"cwd " + inHome + ":" + inHome}},
		{name: "--no-mount home", req: rpcnative.Config{Cwd: other, NoMount: []string{"tmp", "home"}},
			cwd: other, binds: []string{"cwd " + other + ":" + other}},
		{name: "--home SRC:DST", req: rpcnative.Config{Cwd: inHome, HomeSource: altHome, HomeDest: "/home/alice", NoMount: noTmp},
			cwd: inHome, home: "/home/alice", binds: []string{"home " + altHome + ":/home/alice", "cwd " + inHome + ":" + inHome}},
		{name: "-c: nothing of the host, start in the home", req: rpcnative.Config{Cwd: other, Contain: true},
			cwd: home, tmpfs: []string{"/tmp", "/var/tmp", home}},
		{name: "-C is -c", req: rpcnative.Config{Cwd: inHome, ContainAll: true},
			cwd: home, tmpfs: []string{"/tmp", "/var/tmp", home}},
		{name: "-c with --home binds that home", req: rpcnative.Config{Cwd: other, Contain: true, HomeSource: altHome, HomeDest: altHome},
			cwd: altHome, home: altHome, binds: []string{"home " + altHome + ":" + altHome}, tmpfs: []string{"/tmp", "/var/tmp"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mountsFor(t, tc.req, home)
			if p.Cwd != tc.cwd {
				t.Errorf("cwd %q, want %q", p.Cwd, tc.cwd)
			}
			wantHome := tc.home
			if wantHome == "" {
				wantHome = home
			}
			if p.Home != wantHome {
				t.Errorf("home %q, want %q", p.Home, wantHome)
			}
			if got := binds(p); !slices.Equal(got, tc.binds) {
				t.Errorf("binds %q, want %q", got, tc.binds)
			}
			var gotTmpfs []string
			for _, m := range p.Tmpfs {
				gotTmpfs = append(gotTmpfs, m.Dest)
				if want := uint32(0o1777); m.Dest == wantHome && (m.Mode != 0o700 || !m.Owned) || m.Dest != wantHome && m.Mode != want {
					t.Errorf("tmpfs %s: mode %o owned %v", m.Dest, m.Mode, m.Owned)
				}
			}
			if !slices.Equal(gotTmpfs, tc.tmpfs) {
				t.Errorf("tmpfs %q, want %q", gotTmpfs, tc.tmpfs)
			}
			gotWarning := strings.Join(p.Warnings, "\n")
			if (tc.warning == "") != (gotWarning == "") || !strings.Contains(gotWarning, tc.warning) {
				t.Errorf("warnings %q, want %q", p.Warnings, tc.warning)
			}
		})
	}
}

// The namespaces C creates: the mount namespace always, and only the four a request may name;
// anything else (which Validate refuses first) adds nothing, a user namespace least of all.
func TestNSFlags(t *testing.T) {
	const ns = unix.CLONE_NEWNS
	cases := []struct {
		names []string
		want  uint32
	}{
		{nil, ns},
		{[]string{"pid"}, ns | unix.CLONE_NEWPID},
		{[]string{"ipc", "uts"}, ns | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS},
		{[]string{"net", "pid", "pid"}, ns | unix.CLONE_NEWNET | unix.CLONE_NEWPID},
		{[]string{"user", "cgroup", "mnt", "time", "PID", ""}, ns},
	}
	for _, c := range cases {
		if got := nsFlags(c.names); got != c.want {
			t.Errorf("nsFlags(%q) = %#x, want %#x", c.names, got, c.want)
		}
		if nsFlags(c.names)&(unix.CLONE_NEWUSER|unix.CLONE_NEWCGROUP|unix.CLONE_NEWTIME) != 0 {
			t.Errorf("nsFlags(%q) asks for a user, cgroup or time namespace", c.names)
		}
	}
}

// The preamble C reads before stage 2 (starter.h): magic, mode, unshare flags, the pid,
// start time and namespaces of an instance to join.
func TestHPCPreamble(t *testing.T) {
	type fields struct {
		mode, unshare, pid uint32
		start              uint64
		join               uint32
	}
	parse := func(b []byte) fields {
		t.Helper()
		if len(b) != len(hpcPlanMagic)+24 || string(b[:len(hpcPlanMagic)]) != hpcPlanMagic {
			t.Fatalf("preamble %q: want the magic and 24 bytes", b)
		}
		b = b[len(hpcPlanMagic):]
		e := binary.NativeEndian
		return fields{e.Uint32(b), e.Uint32(b[4:]), e.Uint32(b[8:]), e.Uint64(b[12:]), e.Uint32(b[20:])}
	}
	run := parse(hpcPreamble(&Plan{Namespaces: []string{"pid", "uts"}}))
	if run != (fields{hpcRun, unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS, 0, 0, 0}) {
		t.Errorf("a run: %+v", run)
	}
	inst := parse(hpcPreamble(&Plan{Instance: "web", Namespaces: []string{"pid"}}))
	if inst != (fields{hpcInstance, unix.CLONE_NEWNS | unix.CLONE_NEWPID, 0, 0, 0}) {
		t.Errorf("an instance: %+v", inst)
	}
	// A join creates nothing: it names the process and the namespaces to enter.
	join := parse(hpcPreamble(&Plan{Namespaces: []string{"net"}, Join: &PlanJoin{PID: 4242, StartTime: 1 << 40, Namespaces: []string{"pid", "ipc"}}}))
	if join != (fields{hpcRun, 0, 4242, 1 << 40, unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC}) {
		t.Errorf("a join: %+v", join)
	}
}
