package starter_test

// Tests of the namespace plan and the sync fd (starter-c, rpc/nsplan): the C stage joins
// and creates namespaces before Go starts, forks into a new pid namespace, and refuses
// plans it should not take.

import (
	"encoding/binary"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/rpc/nsplan"
)

// planRun runs the probe with plan before its envelope on fd 3 and a sync socket on fd 4,
// answering the C stage's messages as the runtime does. It returns the probe's report and
// the pid messages seen.
func planRun(t *testing.T, plan nsplan.Plan) (probeReport, []int) {
	t.Helper()
	b, err := plan.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	parent, child, err := nsplan.Pair()
	if err != nil {
		t.Fatal(err)
	}
	conn := nsplan.NewConn(parent)
	defer conn.Close()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.starter, "--config-fd", "3", "--sync-fd", "4")
	cmd.Env = []string{}
	cmd.Stdout = out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{cfgR, child}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cfgR.Close()
	child.Close()
	go func() {
		cfgW.Write(append(b, probeConfig("c1")...))
		cfgW.Close()
	}()
	var pids []int
	for {
		typ, p, err := conn.Recv()
		if err != nil {
			break
		}
		switch typ {
		case nsplan.MsgPID:
			pid, err := nsplan.PID(p)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		case nsplan.MsgUsermap:
			m := []byte("0 0 4294967295\n")
			if err := os.WriteFile("/proc/"+itoa(cmd.Process.Pid)+"/uid_map", m, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile("/proc/"+itoa(cmd.Process.Pid)+"/gid_map", m, 0); err != nil {
				t.Fatal(err)
			}
			if err := conn.Send(nsplan.MsgUsermapDone, nil); err != nil {
				t.Fatal(err)
			}
		case nsplan.MsgError:
			t.Fatalf("starter error: %s", p)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("starter: %v, stderr %q", err, stderr.String())
	}
	// After a fork the probe is our child too (CLONE_PARENT): reap it.
	for _, pid := range pids {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatalf("wait for %d: %v", pid, err)
		}
		if ws.ExitStatus() != 0 {
			t.Fatalf("probe exited %v, stderr %q", ws, stderr.String())
		}
	}
	got, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return result{stdout: string(got), stderr: stderr.String()}.report(t), pids
}

func itoa(n int) string { return strconv.Itoa(n) }

func ownNS(t *testing.T, name string) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPlanCreatesNamespaces(t *testing.T) {
	needBins(t)
	needRoot(t)
	r, pids := planRun(t, nsplan.Plan{Unshare: unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNS})
	if len(pids) != 0 {
		t.Errorf("no pid namespace, yet pid messages %v", pids)
	}
	for _, n := range []string{"uts", "ipc", "mnt"} {
		if r.NS[n] == ownNS(t, n) {
			t.Errorf("%s namespace is the test's own: %s", n, r.NS[n])
		}
	}
	if r.NS["net"] != ownNS(t, "net") {
		t.Errorf("net namespace changed: %s", r.NS["net"])
	}
	// The sync fd is the runtime's channel: it stays open for the engine, nothing else.
	if _, ok := r.FDs[4]; !ok || len(r.FDs) != 4 {
		t.Errorf("fds after a plan: %v, want 0-2 and the sync fd 4", r.FDs)
	}
}

func TestPlanForksIntoNewPidNamespace(t *testing.T) {
	needBins(t)
	needRoot(t)
	r, pids := planRun(t, nsplan.Plan{Unshare: unix.CLONE_NEWPID | unix.CLONE_NEWNS})
	if len(pids) != 1 {
		t.Fatalf("want one pid message, got %v", pids)
	}
	if r.Pid != 1 {
		t.Errorf("the process that went on has pid %d in its namespace, want 1", r.Pid)
	}
	if r.NS["pid"] == ownNS(t, "pid") {
		t.Errorf("pid namespace is the test's own")
	}
}

func TestPlanJoinsNamespaceByPath(t *testing.T) {
	needBins(t)
	needRoot(t)
	// A process in a new uts and net namespace to join.
	holder := exec.Command("/bin/sleep", "30")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	base := "/proc/" + itoa(holder.Process.Pid) + "/ns/"
	want := map[string]string{}
	for _, n := range []string{"uts", "net"} {
		l, err := os.Readlink(base + n)
		if err != nil {
			t.Fatal(err)
		}
		want[n] = l
	}
	r, _ := planRun(t, nsplan.Plan{Join: []nsplan.Join{
		{Type: unix.CLONE_NEWNET, Path: base + "net"},
		{Type: unix.CLONE_NEWUTS, Path: base + "uts"},
	}})
	for n, l := range want {
		if r.NS[n] != l {
			t.Errorf("%s namespace %s, want the holder's %s", n, r.NS[n], l)
		}
	}
}

func TestPlanNewUserNamespaceGetsMaps(t *testing.T) {
	needBins(t)
	needRoot(t)
	r, _ := planRun(t, nsplan.Plan{Unshare: unix.CLONE_NEWUSER | unix.CLONE_NEWUTS})
	if r.NS["user"] == ownNS(t, "user") {
		t.Errorf("user namespace is the test's own")
	}
	if r.ResUID != [3]int{0, 0, 0} {
		t.Errorf("ids in the new user namespace %v, want root", r.ResUID)
	}
}

// planBytes is a raw plan, for the malformed ones Encode refuses to write.
func planBytes(unshare uint32, joins ...any) []byte {
	b := []byte(nsplan.Magic)
	b = binary.NativeEndian.AppendUint32(b, unshare)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(joins)/2))
	for i := 0; i+1 < len(joins); i += 2 {
		b = binary.NativeEndian.AppendUint32(b, joins[i].(uint32))
		p := joins[i+1].(string)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func TestPlanRejectsMalformedPlans(t *testing.T) {
	needBins(t)
	needRoot(t)
	for _, c := range []struct {
		name string
		plan []byte
		want string
	}{
		{"truncated", []byte(nsplan.Magic + "\x00\x00"), "truncated"},
		{"truncated join", planBytes(0, uint32(unix.CLONE_NEWNET), "/proc/self/ns/net")[:len(nsplan.Magic)+12], "truncated"},
		{"unknown flag", planBytes(0x1), "unknown flags"},
		{"two types in one join", planBytes(0, uint32(unix.CLONE_NEWNET|unix.CLONE_NEWUTS), "/proc/self/ns/net"), "bad type"},
		{"relative path", planBytes(0, uint32(unix.CLONE_NEWNET), "proc/1/ns/net"), "bad path"},
		{"path with NUL", planBytes(0, uint32(unix.CLONE_NEWNET), "/proc/self/ns/net\x00x"), "bad path"},
		{"length past the end", nil, "bad path length"},
		{"join and create one type", planBytes(unix.CLONE_NEWNET, uint32(unix.CLONE_NEWNET), "/proc/self/ns/net"), "both joins and creates"},
		{"join twice", planBytes(0, uint32(unix.CLONE_NEWNET), "/proc/self/ns/net", uint32(unix.CLONE_NEWNET), "/proc/self/ns/net"), "joined twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A truncated plan is the whole config: what follows it would be read as plan.
			cfg := c.plan
			if !strings.HasPrefix(c.name, "truncated") {
				cfg = append(cfg, probeConfig("c1")...)
			}
			if c.name == "length past the end" {
				cfg = planBytes(0, uint32(unix.CLONE_NEWNET), "/proc/self/ns/net")
				binary.NativeEndian.PutUint32(cfg[len(nsplan.Magic)+12:], 1<<20)
			}
			run{bin: bins.starter, config: cfg}.do(t).wantFailure(t, exitConfig, c.want)
		})
	}
}

func TestPlanNewPidNamespaceNeedsSyncFd(t *testing.T) {
	needBins(t)
	needRoot(t)
	b, _ := nsplan.Plan{Unshare: unix.CLONE_NEWPID}.Encode()
	run{bin: bins.starter, config: append(b, probeConfig("c1")...)}.do(t).wantFailure(t, exitUsage, "needs --sync-fd")
}

func TestSetuidStarterRefusesPlanAndSyncFd(t *testing.T) {
	needBins(t)
	needRoot(t)
	dir := publicDir(t)
	suid := installSetuid(t, bins.starterSuid, dir)
	b, _ := nsplan.Plan{Unshare: unix.CLONE_NEWUTS}.Encode()
	run{bin: suid, config: append(b, probeConfig("c1")...), cred: testUser(t)}.do(t).
		wantFailure(t, exitConfig, "needs root's starter")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.Write(probeConfig("c1"))
	pw.Close()
	s, _, err := nsplan.Pair()
	if err != nil {
		t.Fatal(err)
	}
	run{bin: suid, args: []string{"--config-fd", "3", "--sync-fd", "4"}, extra: []*os.File{pr, s}, cred: testUser(t)}.do(t).
		wantFailure(t, exitUsage, "refused in setuid mode")
}
