package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
	"github.com/kerr-hpc/kerr/starter/oci/cgroups"
)

// status reads a container's status from its process: the state file says what was
// recorded, the process says whether it still runs, the fifo whether it waits for start,
// the cgroup whether it is frozen.
func status(d *dir, s *State) string {
	if s.Creating {
		if s.Pid == 0 || alive(s.Pid, s.StartTime) {
			return StatusCreating
		}
		return StatusStopped
	}
	if !alive(s.Pid, s.StartTime) {
		return StatusStopped
	}
	var st unix.Stat_t
	if unix.Fstatat(d.fd, execFifo, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return StatusCreated
	}
	if m, err := loadCgroup(s); err == nil {
		if frozen, err := m.Frozen(); err == nil && frozen {
			return StatusPaused
		}
	}
	return StatusRunning
}

// render is the state as `kerr oci state` prints it, with status st.
func render(s *State, st string) specState {
	out := specState{
		State: specs.State{Version: specs.Version, ID: s.ID, Status: specs.ContainerState(st),
			Bundle: s.Bundle, Annotations: s.Annotations},
		Rootfs: s.Rootfs, Owner: s.Owner, CreatedAt: s.Created.UnixNano(),
		ControlSocket: s.ControlSocket, AttachSocket: s.AttachSocket,
	}
	created := s.Created
	out.Created = &created
	if st != StatusStopped {
		out.Pid = s.Pid
	}
	if st == StatusStopped && s.ExitStatus != nil {
		out.ExitStatus, out.OOMKilled = s.ExitStatus, s.OOMKilled
		if s.Finished != nil {
			out.FinishedAt = s.Finished.UnixNano()
		}
	}
	if st == StatusStopped && s.MonitorPid != 0 && !alive(s.MonitorPid, s.MonitorStartTime) {
		out.ControlSocket, out.AttachSocket = "", ""
	}
	return out
}

// state prints the container's state JSON on stdout. It takes no lock: state.json is
// replaced atomically, and state must answer while a create holds the lock.
func (e Engine) state(id string, cfg *ocicfg.Config) error {
	st := store{root: cfg.Root}
	p, err := st.containerPath(id)
	if err != nil {
		return err
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
		}
		return fmt.Errorf("state dir %s: %w", p, err)
	}
	d := &dir{path: p, fd: fd}
	defer d.close()
	s, err := d.readState()
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
		}
		return err
	}
	// The process has exited but the monitor has not written its status yet: it is about
	// to, so give it a moment rather than report a stopped container without one.
	// The status is read once, and shown with what was read with it.
	cur := status(d, s)
	deadline := time.Now().Add(3 * time.Second)
	for s.ExitStatus == nil && s.MonitorPid != 0 && cur == StatusStopped && time.Now().Before(deadline) {
		// Read once more after seeing the monitor gone: it may have written just before.
		monitorAlive := alive(s.MonitorPid, s.MonitorStartTime)
		if monitorAlive {
			time.Sleep(2 * time.Millisecond)
		}
		if ns, err := d.readState(); err == nil {
			s = ns
		}
		if !monitorAlive {
			break
		}
	}
	b, err := json.MarshalIndent(render(s, cur), "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// start lets a created container's process exec its payload: it writes one byte into the
// exec fifo, which the process reads, and removes the fifo (from then on the container is
// running). Then the poststart hooks run.
func (e Engine) start(id string, cfg *ocicfg.Config) error {
	d, s, err := openState(cfg.Root, id, lockExclusive)
	if err != nil {
		return err
	}
	defer d.close()
	if cur := status(d, s); cur != StatusCreated {
		return fmt.Errorf("container %q is %s, not created: %w", id, cur, errdefs.ErrState)
	}
	if err := sendStart(d, s); err != nil {
		return fmt.Errorf("start %q: %w", id, err)
	}
	if err := unix.Unlinkat(d.fd, execFifo, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("start %q: remove fifo: %w", id, err)
	}
	notifySync(s, StatusRunning, s.Pid)
	// The spec: a failed poststart hook is a warning; the container runs on.
	if spec, err := readSpec(d); err == nil && spec.Hooks != nil {
		runHooksWarn("poststart", spec.Hooks.Poststart, hookState(s, StatusRunning, s.Pid))
	}
	return nil
}

// sendStart gives the container's process its go-ahead and waits until it has exec'd its
// payload (or died). The process holds the fifo open read-write and waits to read a byte.
// We open the read end first, then a write end, write the byte and close it: when the
// process's fd closes at execve the fifo has no writer left, and our read end (opened
// before a writer came, which the kernel requires for it) reports POLLHUP. A byte still in
// the fifo then means the process died before it read it.
func sendStart(d *dir, s *State) error {
	rfd, err := unix.Openat(d.fd, execFifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("the container is not waiting for start: %w", err)
	}
	defer unix.Close(rfd)
	wfd, err := unix.Openat(d.fd, execFifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("the container is not waiting for start: %w", err)
	}
	_, err = unix.Write(wfd, []byte{'1'})
	unix.Close(wfd)
	if err != nil {
		return err
	}
	for {
		// No events asked: POLLHUP is always reported, and the unread byte must not wake us.
		pfd := []unix.PollFd{{Fd: int32(rfd), Events: 0}}
		n, err := unix.Poll(pfd, 100)
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 && pfd[0].Revents&unix.POLLHUP != 0 {
			break
		}
		if !alive(s.Pid, s.StartTime) {
			break
		}
	}
	if left, err := unix.IoctlGetInt(rfd, unix.TIOCINQ); err == nil && left > 0 {
		return fmt.Errorf("the container's process exited before it was started")
	}
	return nil
}

// loadCgroup opens the existing cgroup of a container through the driver it was created
// with (recorded in its state). A container whose create has not made the cgroup its own
// (CgroupPending) has none, wrapping fs.ErrNotExist: the cgroup at its path may be another
// container's, which no command of this one may signal, freeze, join or change.
func loadCgroup(s *State) (*cgroups.Manager, error) {
	if err := cgroups.CheckDriver(s.CgroupDriver); err != nil {
		return nil, err
	}
	if s.CgroupPending {
		return nil, fmt.Errorf("cgroups: %s is not the container's yet: %w", s.CgroupPath, fs.ErrNotExist)
	}
	return cgroups.Load(s.CgroupDriver, s.CgroupPath)
}

// openState opens, locks and reads the state of container id under root.
func openState(root, id string, how int) (*dir, *State, error) {
	d, err := store{root: root}.open(id, how)
	if err != nil {
		return nil, nil, err
	}
	s, err := d.readState()
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, s, nil
}

// readSpec reads the spec create stored.
func readSpec(d *dir) (*specs.Spec, error) {
	b, err := readFileAt(d.fd, configFile, maxConfig*2)
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("stored config: %w", err)
	}
	return &s, nil
}

// kill sends a signal to the container's process, or with All to every process in its
// cgroup. The process is addressed by pidfd after checking its start time, so a pid reused
// by another process is never signalled.
func (e Engine) kill(id string, cfg *ocicfg.Config) error {
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		return err
	}
	defer d.close()
	sig := unix.Signal(cfg.Signal)
	cur := status(d, s)
	if cfg.All && cur != StatusCreating {
		return killAllOf(id, s, cur, sig)
	}
	if cur == StatusStopped || cur == StatusCreating {
		if cfg.All {
			return nil
		}
		return fmt.Errorf("container %q is %s: %w", id, cur, errdefs.ErrState)
	}
	return signalProcess(s.Pid, s.StartTime, sig)
}

// killAllOf signals every process of the container's cgroup, whatever became of the
// container's own process: once it has exited (stopped) others may be left, such as the
// processes of a container that shares a pod's pid namespace (the kernel kills them with
// the namespace's init, not with the container's), which containerd's shim then kills with
// `kill --all ID 9`, as runc signals a stopped container's cgroup too. A stopped container
// whose cgroup is gone or empty is no error.
func killAllOf(id string, s *State, cur string, sig unix.Signal) error {
	m, err := loadCgroup(s)
	if err != nil {
		if cur == StatusStopped {
			return nil
		}
		return fmt.Errorf("kill --all %q: %w", id, err)
	}
	if cur == StatusStopped {
		if pids, err := m.Pids(); err == nil && len(pids) == 0 {
			return nil
		}
	}
	return m.Signal(sig)
}

// signalProcess signals pid if it is still the process that started at start.
func signalProcess(pid int, start uint64, sig unix.Signal) error {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process %d has exited: %w", pid, errdefs.ErrState)
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	if !alive(pid, start) {
		return fmt.Errorf("process %d has exited: %w", pid, errdefs.ErrState)
	}
	if err := unix.PidfdSendSignal(pfd, sig, nil, 0); err != nil {
		return fmt.Errorf("signal %d to process %d: %w", sig, pid, err)
	}
	return nil
}

// delete removes a stopped container: the poststop hooks run, the cgroup and
// the state go. With Force a running one is killed first; an unknown id is then no error.
func (e Engine) delete(id string, cfg *ocicfg.Config) error {
	st := store{root: cfg.Root}
	d, err := st.open(id, lockExclusive)
	if err != nil {
		if cfg.Force && errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		return err
	}
	defer d.close()
	s, err := d.readState()
	if err != nil {
		if !cfg.Force {
			return fmt.Errorf("%v (a create was interrupted: use delete --force): %w", err, errdefs.ErrState)
		}
		// A create killed before it wrote anything: nothing but the directory.
		return d.remove()
	}
	cur := status(d, s)
	switch cur {
	case StatusStopped:
	default:
		// The spec: deleting a container that is not stopped (created included) fails.
		if !cfg.Force {
			return fmt.Errorf("container %q is %s: stop it first or use --force: %w", id, cur, errdefs.ErrState)
		}
	}
	// A cgroup this kerr cannot manage would be left behind: keep the state that finds it.
	if err := cgroups.CheckDriver(s.CgroupDriver); err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	if err := killAll(s); err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	stopMonitor(s)
	spec, serr := readSpec(d)
	if serr == nil && spec.Hooks != nil && !s.Creating {
		runHooksWarn("poststop", spec.Hooks.Poststop, hookState(s, StatusStopped, 0))
	}
	if s.CgroupPending {
		removePendingCgroup(s)
	} else if m, err := loadCgroup(s); err == nil {
		if err := m.Destroy(); err != nil {
			return fmt.Errorf("delete %q: %w", id, err)
		}
	}
	return d.remove()
}

// killAll kills the container's process and everything in its cgroup, and waits until
// they are gone.
func killAll(s *State) error {
	m, merr := loadCgroup(s)
	if merr == nil {
		// A stopped container's cgroup is usually empty: then there is nothing to freeze
		// and kill, which costs a delete more than anything else it does.
		if pids, err := m.Pids(); err != nil || len(pids) > 0 {
			_ = m.Thaw()
			_ = m.Signal(unix.SIGKILL)
		}
	}
	if alive(s.Pid, s.StartTime) {
		_ = signalProcess(s.Pid, s.StartTime, unix.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := alive(s.Pid, s.StartTime)
		if !busy && merr == nil {
			pids, err := m.Pids()
			busy = err == nil && len(pids) > 0
			if busy {
				_ = m.Signal(unix.SIGKILL)
			}
		}
		if !busy {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of the container survive SIGKILL")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopMonitor ends the monitor, if it still runs (its container is dead by now), and waits
// for it, so that it writes nothing into the state directory that is about to go.
func stopMonitor(s *State) {
	if s.MonitorPid == 0 || !alive(s.MonitorPid, s.MonitorStartTime) {
		return
	}
	_ = signalProcess(s.MonitorPid, s.MonitorStartTime, unix.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for alive(s.MonitorPid, s.MonitorStartTime) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// pause freezes every process of a running container (its cgroup's freezer); resume thaws
// a paused one. Privileges: root.
func (e Engine) pause(id string, cfg *ocicfg.Config, freeze bool) error {
	d, s, err := openState(cfg.Root, id, lockExclusive)
	if err != nil {
		return err
	}
	defer d.close()
	cur, want := status(d, s), StatusRunning
	if !freeze {
		want = StatusPaused
	}
	if cur != want {
		return fmt.Errorf("container %q is %s, not %s: %w", id, cur, want, errdefs.ErrState)
	}
	m, err := loadCgroup(s)
	if err != nil {
		return fmt.Errorf("container %q: %w", id, err)
	}
	if freeze {
		return m.Freeze()
	}
	return m.Thaw()
}

// update sets new limits on a created, running or paused container's cgroup, and records
// them in the stored config. Privileges: root.
func (e Engine) update(id string, cfg *ocicfg.Config) error {
	if err := cgroups.Validate(cfg.Resources); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	d, s, err := openState(cfg.Root, id, lockExclusive)
	if err != nil {
		return err
	}
	defer d.close()
	if cur := status(d, s); cur == StatusStopped || cur == StatusCreating {
		return fmt.Errorf("container %q is %s: %w", id, cur, errdefs.ErrState)
	}
	spec, serr := readSpec(d)
	apply := cfg.Resources
	if len(cfg.Resources.Devices) > 0 {
		// New device rules replace the cgroup's: the devices of linux.devices must stay
		// allowed, as create allowed them (the defaults the cgroups package adds itself).
		if serr != nil {
			return fmt.Errorf("update %q: the devices the container holds are unknown: %w", id, serr)
		}
		withSpec := *cfg.Resources
		withSpec.Devices = append(slices.Clone(cfg.Resources.Devices), specDeviceRules(spec)...)
		apply = &withSpec
	}
	m, err := loadCgroup(s)
	if err != nil {
		return fmt.Errorf("container %q: %w", id, err)
	}
	if err := m.Set(apply); err != nil {
		return fmt.Errorf("update %q: %w", id, err)
	}
	// The config records the rules given, not the ones added: create adds them again.
	if serr == nil {
		spec.Linux.Resources = mergeResources(spec.Linux.Resources, cfg.Resources)
		if b, err := json.Marshal(spec); err == nil {
			_ = writeFileAt(d.fd, configFile, b)
		}
	}
	return nil
}

// mergeResources lays the sections update gives over the stored ones.
func mergeResources(old, upd *specs.LinuxResources) *specs.LinuxResources {
	if old == nil {
		return upd
	}
	r := *old
	if upd.Memory != nil {
		r.Memory = upd.Memory
	}
	if upd.CPU != nil {
		r.CPU = upd.CPU
	}
	if upd.Pids != nil {
		r.Pids = upd.Pids
	}
	if upd.BlockIO != nil {
		r.BlockIO = upd.BlockIO
	}
	if len(upd.HugepageLimits) > 0 {
		r.HugepageLimits = upd.HugepageLimits
	}
	if upd.Network != nil {
		r.Network = upd.Network
	}
	if len(upd.Unified) > 0 {
		r.Unified = upd.Unified
	}
	if len(upd.Devices) > 0 {
		r.Devices = upd.Devices
	}
	return &r
}

// logs prints what the monitor logged of the container's output; with Follow it goes on
// printing what comes until the container has stopped. With Reopen it has the monitor
// reopen the log file instead (log rotation). Privileges: root.
func (e Engine) logs(id string, cfg *ocicfg.Config) error {
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		return err
	}
	d.close()
	if s.LogPath == "" {
		return fmt.Errorf("container %q has no log (created with --no-monitor: its output went to create's stdio): %w", id, errdefs.ErrNotFound)
	}
	if cfg.Reopen {
		if s.ControlSocket == "" || !alive(s.MonitorPid, s.MonitorStartTime) {
			return fmt.Errorf("container %q: its monitor has exited, no log is open: %w", id, errdefs.ErrState)
		}
		if _, err := controlCall(s.ControlSocket, controlRequest{Op: "reopen-log"}); err != nil {
			return fmt.Errorf("reopen the log of %q: %w", id, err)
		}
		return nil
	}
	f, err := os.Open(s.LogPath)
	if err != nil {
		return fmt.Errorf("log of %q: %w", id, err)
	}
	defer f.Close()
	for {
		if _, err := io.Copy(os.Stdout, f); err != nil {
			return err
		}
		if !cfg.Follow {
			return nil
		}
		// Stopped and drained: done. The state file is gone after delete, also done.
		d, s, err := openState(cfg.Root, id, lockShared)
		if err != nil {
			return nil
		}
		stopped := status(d, s) == StatusStopped && (s.MonitorPid == 0 || !alive(s.MonitorPid, s.MonitorStartTime))
		d.close()
		if stopped {
			_, err := io.Copy(os.Stdout, f)
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ps prints the host pids of the container's processes (its cgroup's): one per line, or a
// JSON array. Privileges: root.
func (e Engine) ps(id string, cfg *ocicfg.Config) error {
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		return err
	}
	d.close()
	pids := []int{}
	if err := cgroups.CheckDriver(s.CgroupDriver); err != nil {
		return fmt.Errorf("ps %q: %w", id, err)
	}
	if m, err := loadCgroup(s); err == nil {
		if pids, err = m.Pids(); err != nil {
			return fmt.Errorf("ps %q: %w", id, err)
		}
	}
	sort.Ints(pids)
	if cfg.Format == "json" {
		b, err := json.Marshal(pids)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	var out strings.Builder
	out.WriteString("PID\n")
	for _, p := range pids {
		fmt.Fprintf(&out, "%d\n", p)
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}

// events prints the container's cgroup statistics once, as runc's `events --stats` does:
// {"type":"stats","id":ID,"data":{...}}. Privileges: root.
func (e Engine) events(id string, cfg *ocicfg.Config) error {
	d, s, err := openState(cfg.Root, id, lockShared)
	if err != nil {
		return err
	}
	cur := status(d, s)
	d.close()
	if cur == StatusStopped {
		return fmt.Errorf("container %q is stopped: %w", id, errdefs.ErrState)
	}
	m, err := loadCgroup(s)
	if err != nil {
		return fmt.Errorf("events %q: %w", id, err)
	}
	st, err := m.Stats()
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		Type string         `json:"type"`
		ID   string         `json:"id"`
		Data *cgroups.Stats `json:"data"`
	}{"stats", id, st})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// listEntry is one container of `list`, as runc prints it.
type listEntry struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// List prints the containers under root: a table or a JSON array, as runc lists them. A
// directory without a readable state (a create in progress) is left out. Privileges: root.
func List(root, format string) error {
	ents, err := os.ReadDir(root)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("list %s: %w", root, err)
	}
	out := []listEntry{}
	for _, ent := range ents {
		if !ent.IsDir() || envelope.ValidateID(ent.Name()) != nil {
			continue
		}
		d, s, err := openState(root, ent.Name(), lockShared)
		if err != nil {
			continue
		}
		st := status(d, s)
		d.close()
		e := listEntry{ID: s.ID, Status: st, Bundle: s.Bundle, Rootfs: s.Rootfs, Created: s.Created,
			Annotations: s.Annotations, Owner: "root"}
		if st != StatusStopped {
			e.Pid = s.Pid
		}
		out = append(out, e)
	}
	if format == "json" {
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 8, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
	for _, e := range out {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.Pid, e.Status, e.Bundle, e.Created.Format(time.RFC3339Nano), e.Owner)
	}
	tw.Flush()
	_, err = os.Stdout.WriteString(b.String())
	return err
}
