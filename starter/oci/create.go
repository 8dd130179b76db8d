package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
	"github.com/kerr-hpc/kerr/rpc/procstat"
	"github.com/kerr-hpc/kerr/starter/oci/cgroups"
)

// create makes a container from cfg.Bundle and leaves its process waiting for start.
// With cfg.Monitor a monitor process does the work and stays; otherwise this process does
// it and exits, so that the container's process ends up the caller's (or its subreaper's)
// child. Privileges: root.
func (e Engine) create(id string, cfg *ocicfg.Config) (err error) {
	_, err = e.createWith(id, cfg, nil)
	return err
}

// createWith is create; when the container's process has a terminal and there is neither
// a console socket nor a monitor, master (run's case) receives the pty master.
func (e Engine) createWith(id string, cfg *ocicfg.Config, master **os.File) (pid int, err error) {
	// Before anything exists: a driver kerr cannot use leaves nothing behind.
	driver, err := cgroups.Driver(cfg.SystemdCgroup)
	if err != nil {
		return 0, fmt.Errorf("--systemd-cgroup: %v: %w", err, errdefs.ErrUsage)
	}
	spec, err := loadSpec(cfg.Bundle)
	if err != nil {
		return 0, err
	}
	switch {
	case spec.Process.Terminal && !cfg.Monitor && cfg.ConsoleSocket == "" && master == nil:
		return 0, fmt.Errorf("process.terminal needs --console-socket without the monitor (or the monitor to hold it): %w", errdefs.ErrUsage)
	case !spec.Process.Terminal && cfg.ConsoleSocket != "":
		return 0, fmt.Errorf("--console-socket needs process.terminal in config.json: %w", errdefs.ErrUsage)
	}
	cgPath, err := cgroups.Path(driver, spec.Linux.CgroupsPath, id)
	if err != nil {
		return 0, fmt.Errorf("linux.cgroupsPath: %v: %w", err, errdefs.ErrUsage)
	}
	if driver == cgroups.DriverSystemd {
		if err := cgroups.CheckUnitProperties(spec.Annotations); err != nil {
			return 0, fmt.Errorf("annotations: %v: %w", err, errdefs.ErrUsage)
		}
	}
	st := store{root: cfg.Root}
	d, err := st.create(id)
	if err != nil {
		return 0, err
	}
	defer d.close()
	now := time.Now()
	state := &State{
		ID: id, Bundle: cfg.Bundle, Rootfs: spec.Root.Path, Created: now, Owner: "",
		Annotations: spec.Annotations, Creating: true, CgroupPath: cgPath, CgroupDriver: driver, CgroupPending: true,
		Namespaces: spec.Linux.Namespaces, SyncSocket: cfg.SyncSocket,
	}
	defer func() {
		if err != nil {
			cleanupFailedCreate(d, state)
		}
	}()
	// Recorded before anything exists, so that delete --force finds what a killed create
	// left: the cgroup path is all it needs to find the processes.
	if err := d.writeState(state); err != nil {
		return 0, err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	if err := writeFileAt(d.fd, configFile, specJSON); err != nil {
		return 0, err
	}
	if cfg.Monitor {
		pid, err := e.startMonitor(id, cfg)
		if err != nil {
			return 0, err
		}
		notifySync(state, StatusCreated, pid)
		return pid, writePidFile(cfg.PidFile, pid)
	}
	onConsole := func(m *os.File, name string) error {
		if cfg.ConsoleSocket == "" && master != nil {
			*master = m
			return nil
		}
		defer m.Close()
		return sendToConsoleSocket(cfg.ConsoleSocket, m, name)
	}
	pid, err = e.createProcess(d, state, spec, cfg, [3]*os.File{os.Stdin, os.Stdout, os.Stderr}, onConsole)
	if err != nil {
		return 0, err
	}
	notifySync(state, StatusCreated, pid)
	return pid, writePidFile(cfg.PidFile, pid)
}

// run is create, start, wait and delete in one process. With the monitor, see
// runMonitored; without it, as `runc run`: this process stays the container's parent, passes signals on, shows its terminal when it has one (and no
// console socket), and exits with its status. Privileges: root.
func (e Engine) run(id string, cfg *ocicfg.Config) error {
	if cfg.Monitor {
		return e.runMonitored(id, cfg)
	}
	ccfg := *cfg
	ccfg.Action, ccfg.Monitor = ocicfg.ActionCreate, false
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	var master *os.File
	pid, err := e.createWith(id, &ccfg, &master)
	if err != nil {
		return err
	}
	if master != nil {
		defer master.Close()
		stop := proxyTerminal(master)
		defer stop()
	}
	if err := e.start(id, cfg); err != nil {
		_ = e.delete(id, &ocicfg.Config{Action: ocicfg.ActionDelete, Root: cfg.Root, Force: true})
		return err
	}
	werr := waitForwarding(pid, sigs, master)
	if err := e.delete(id, &ocicfg.Config{Action: ocicfg.ActionDelete, Root: cfg.Root, Force: true}); err != nil {
		return err
	}
	return werr
}

// createProcess starts the container's process and records it; it returns its pid once the
// process waits for start. Privileges: root.
func (e Engine) createProcess(d *dir, state *State, spec *specs.Spec, cfg *ocicfg.Config, stdio [3]*os.File,
	onConsole func(*os.File, string) error) (int, error) {
	fifo, err := makeFifo(d, spec.Linux)
	if err != nil {
		return 0, err
	}
	defer fifo.Close()
	plan, cgroupNS := nsPlan(spec.Linux)
	if err := cgroups.CheckDriver(state.CgroupDriver); err != nil {
		return 0, err
	}
	mgr, err := cgroups.New(state.CgroupDriver, state.CgroupPath, cgroupResources(spec), spec.Annotations)
	if err != nil {
		return 0, err
	}
	req := spawnRequest{
		starter: e.starter(),
		id:      state.ID,
		cfg: initConfig{Mode: modeCreate, ID: state.ID, Bundle: state.Bundle, Spec: spec, Process: spec.Process,
			NoPivot: cfg.NoPivot, UnshareCgroupNS: cgroupNS, InUserNS: plan.Unshare&unix.CLONE_NEWUSER != 0 || nsPath(spec.Linux, specs.UserNamespace) != ""},
		plan:      plan,
		stdio:     stdio,
		keep:      e.preserved(),
		fifo:      fifo,
		onConsole: onConsole,
		onPid: func(pid int) error {
			start, err := procstat.StartTime(pid)
			if err != nil {
				return fmt.Errorf("container process %d: %w", pid, err)
			}
			state.Pid, state.StartTime = pid, start
			if err := d.writeState(state); err != nil {
				return err
			}
			if err := mgr.Apply(pid); err != nil {
				return err
			}
			state.CgroupPending = false
			return d.writeState(state)
		},
		onHooks: func(pid int) error {
			if spec.Hooks == nil {
				return nil
			}
			// Prestart hooks see "created", as crun and the validation suite have it (the
			// spec's older text ran them after start); createRuntime ones see "creating".
			//lint:ignore SA1019 prestart is deprecated but still part of the spec: runtimes run it.
			if err := runHooks("prestart", spec.Hooks.Prestart, hookState(state, StatusCreated, pid)); err != nil {
				return err
			}
			return runHooks("createRuntime", spec.Hooks.CreateRuntime, hookState(state, StatusCreating, pid))
		},
	}
	proc, err := spawn(req)
	// The container's process has its copies; this one (create, or the monitor) keeps none.
	closeAll(req.keep)
	if err != nil {
		return 0, err
	}
	state.Creating = false
	if err := d.writeState(state); err != nil {
		proc.abort()
		return 0, err
	}
	if err := proc.commit(); err != nil {
		killAndReap(proc.pid)
		return 0, fmt.Errorf("container process: %w", err)
	}
	return proc.pid, nil
}

// makeFifo creates exec.fifo and opens it O_PATH for the container's process, which opens
// it for writing through that fd: owned by the container's root, so that a process in a
// user namespace may.
func makeFifo(d *dir, l *specs.Linux) (*os.File, error) {
	if err := unix.Mkfifoat(d.fd, execFifo, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", d.file(execFifo), err)
	}
	fd, err := unix.Openat(d.fd, execFifo, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.file(execFifo), err)
	}
	uid, gid := hostID(l.UIDMappings, 0), hostID(l.GIDMappings, 0)
	if uid != 0 || gid != 0 {
		if err := unix.Fchownat(d.fd, execFifo, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("chown %s: %w", d.file(execFifo), err)
		}
	}
	return os.NewFile(uintptr(fd), execFifo), nil
}

// hostID maps container id to the host's through mappings (none: the same id).
func hostID(m []specs.LinuxIDMapping, id uint32) int {
	if len(m) == 0 {
		return int(id)
	}
	for _, e := range m {
		if id >= e.ContainerID && id-e.ContainerID < e.Size {
			return int(e.HostID + id - e.ContainerID)
		}
	}
	return 0
}

// cgroupResources is linux.resources with the device rules the container needs: the
// config's, then the default devices and the ones it creates, as runc adds them.
func cgroupResources(spec *specs.Spec) *specs.LinuxResources {
	var r specs.LinuxResources
	if spec.Linux.Resources != nil {
		r = *spec.Linux.Resources
	}
	devs := append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	devs = append(devs, cgroups.DefaultDeviceRules()...)
	r.Devices = append(devs, specDeviceRules(spec)...)
	return &r
}

// specDeviceRules allows the devices of linux.devices, which the container's /dev holds:
// create allows them after the config's rules, and update after its new ones, so that no
// rule of either takes them away.
func specDeviceRules(spec *specs.Spec) []specs.LinuxDeviceCgroup {
	var rules []specs.LinuxDeviceCgroup
	if spec.Linux == nil {
		return nil
	}
	for _, d := range spec.Linux.Devices {
		major, minor := d.Major, d.Minor
		switch d.Type {
		case "p":
			continue // a fifo is no device: the cgroup does not govern it
		case "u":
			d.Type = "c" // an unbuffered character device is a character device
		}
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: "rwm"})
	}
	return rules
}

// writePidFile writes pid as digits only, no newline, through a temp file and a rename, so
// that a reader never sees it half written (containerd's shim reads it right after create).
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	tmp := path + ".kerr-tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", errdefs.ClassifyIO(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// cleanupFailedCreate undoes a create that failed: the process (if any), the cgroup, the
// state directory. The state on disk is the latest (the monitor may have written it).
func cleanupFailedCreate(d *dir, state *State) {
	if st, err := d.readState(); err == nil {
		state = st
	}
	if state.Pid > 0 && alive(state.Pid, state.StartTime) {
		killAndReap(state.Pid)
	}
	if state.CgroupPending {
		removePendingCgroup(state)
	} else if m, err := loadCgroup(state); err == nil {
		_ = m.Signal(unix.SIGKILL)
		_ = m.Destroy()
	}
	_ = d.remove()
}

// removePendingCgroup removes the cgroup at the path of a container whose create died
// before the cgroup was its own (CgroupPending), but only if it is empty: it may be
// another container's. Apply may have made it before it was killed.
func removePendingCgroup(s *State) {
	m, err := cgroups.Load(s.CgroupDriver, s.CgroupPath)
	if err != nil {
		return
	}
	if pids, err := m.Pids(); err == nil && len(pids) == 0 {
		_ = m.Destroy()
	}
}

// startMonitor starts the monitor, which creates the container and stays as its parent; it
// returns the container's pid once the monitor says it is created.
func (e Engine) startMonitor(id string, cfg *ocicfg.Config) (int, error) {
	mcfg := *cfg
	mcfg.Action = ocicfg.ActionMonitor
	env, err := envelope.New(ocicfg.EngineName, id, mcfg)
	if err != nil {
		return 0, err
	}
	payload, err := env.Encode()
	if err != nil {
		return 0, err
	}
	cfgFile, err := memfile("kerr-monitor-config", payload)
	if err != nil {
		return 0, err
	}
	defer cfgFile.Close()
	parentSock, childSock, err := nsplan.Pair()
	if err != nil {
		return 0, err
	}
	conn := nsplan.NewConn(parentSock)
	defer conn.Close()
	keep := e.preserved()
	defer closeAll(keep)
	cmd := &exec.Cmd{
		Path:        e.starter(),
		Args:        starterArgs(len(keep)),
		Env:         []string{},
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  append(append([]*os.File(nil), keep...), cfgFile, childSock),
		SysProcAttr: &unix.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	childSock.Close()
	if err != nil {
		return 0, fmt.Errorf("start the monitor: %w", err)
	}
	// The monitor outlives us; nothing here waits for it.
	t, p, err := conn.Recv()
	switch {
	case errors.Is(err, nsplan.ErrClosed):
		st, _ := cmd.Process.Wait()
		return 0, fmt.Errorf("the monitor exited before the container was created (%v)", st)
	case err != nil:
		return 0, err
	case t == nsplan.MsgError:
		_, _ = cmd.Process.Wait()
		return 0, decodeError(p)
	case t != nsplan.MsgReady:
		return 0, fmt.Errorf("unexpected message %d from the monitor", t)
	}
	_ = cmd.Process.Release()
	return nsplan.PID(p)
}
