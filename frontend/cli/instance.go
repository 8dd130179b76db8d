package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/launch"
	"github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/rpc/procstat"
)

// This file is `kerr instance start|list|stop`: containers that run in the background,
// owned by the user who started them, joined with `kerr exec instance://NAME`. The record of
// an instance is the user's own file (~/.kerr/instances/HOST/NAME.json); nothing in it is
// trusted: list and stop check the process it names (the user's, started at the recorded
// time), and the starter checks it again before it joins it. Privileges: the caller's.

func instanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "instance",
		Usage: "background containers: start, list, stop",
		Description: `An instance is a container that runs in the background with a pid namespace of
its own, until stopped; 'kerr exec|run|shell instance://NAME' runs more in it. Instances are
per user and per host: their records live in ~/.kerr/instances/HOST/ (the home of your
passwd entry), with the instance's stdout and stderr (NAME.out, NAME.err). One user cannot
see, join or stop another's instance.`,
		Subcommands: []*cli.Command{
			{
				Name:      "start",
				Usage:     "start an instance of IMAGE called NAME",
				ArgsUsage: "IMAGE NAME [STARTSCRIPT-ARGS...]",
				Description: `Starts a container of IMAGE in the background, with the flags of 'kerr exec'
(binds, home, namespaces, ...), runs the image's startscript (/.singularity.d/startscript)
with the ARGS if it has one, and returns once the container is set up. The instance lives
until 'kerr instance stop NAME', even after its startscript ends.
` + hpcFlagsHelp,
				Flags:        hpcFlags(),
				OnUsageError: usageError,
				Action:       instanceStart,
			},
			{
				Name:      "list",
				Usage:     "list your running instances on this host",
				ArgsUsage: "[NAME]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				OnUsageError: usageError,
				Action:       instanceList,
			},
			{
				Name:      "stop",
				Usage:     "stop an instance (SIGTERM, then SIGKILL after --timeout)",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "stop all your instances on this host"},
					&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "how long to wait after SIGTERM before SIGKILL"},
				},
				OnUsageError: usageError,
				Action:       instanceStop,
			},
		},
	}
}

// instanceDir is this user's record directory on this host.
func instanceDir() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	return native.InstanceDir(callerHome(), host), nil
}

// liveInstance reads name's record and says whether its process is still the instance.
func liveInstance(dir, name string) (*native.Instance, bool, error) {
	rec, err := native.ReadInstance(dir, name)
	if err != nil {
		return nil, false, err
	}
	alive := procstat.Running(rec.PID, rec.StartTime) && rec.UID == os.Getuid() && procUID(rec.PID) == os.Getuid()
	return rec, alive, nil
}

// procUID is the real uid of a process, -1 if unknown.
func procUID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

func instanceStart(c *cli.Context) error {
	cfg, req, warnings, err := hpcRequest(c, native.ActionInstance)
	if err != nil {
		return err
	}
	if err := earlyPolicyCheck(c, req); err != nil {
		return err
	}
	if !globalsOf(c).quiet {
		for _, w := range warnings {
			fmt.Fprintf(c.App.ErrWriter, "WARNING: %s\n", w)
		}
	}
	dir, err := instanceDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("instance records %s: %w", dir, errdefs.ClassifyIO(err))
	}
	if _, alive, err := liveInstance(dir, cfg.Instance); err == nil && alive {
		return fmt.Errorf("instance %s is already running (kerr instance stop %s): %w", cfg.Instance, cfg.Instance, errdefs.ErrExists)
	}
	logs := [2]string{filepath.Join(dir, cfg.Instance+".out"), filepath.Join(dir, cfg.Instance+".err")}
	var files [2]*os.File
	for i, p := range logs {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("instance log %s: %w", p, errdefs.ClassifyIO(err))
		}
		defer f.Close()
		files[i] = f
	}
	pid, err := runInstanceStarter(cfg, files, logs[1])
	if err != nil {
		return err
	}
	start, err := procstat.StartTime(pid)
	if err != nil {
		return fmt.Errorf("instance %s: its process %d: %w", cfg.Instance, pid, err)
	}
	ns := append([]string{"mnt"}, cfg.Namespaces...)
	if !slices.Contains(ns, native.NamespacePID) {
		ns = append(ns, native.NamespacePID)
	}
	rec := native.Instance{Name: cfg.Instance, Image: cfg.Image, PID: pid, StartTime: start, UID: os.Getuid(),
		Created: time.Now().UTC().Format(time.RFC3339), Namespaces: ns, StdoutLog: logs[0], StderrLog: logs[1]}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+cfg.Instance+".json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return fmt.Errorf("instance record: %w", errdefs.ClassifyIO(err))
	}
	if err := os.Rename(tmp, filepath.Join(dir, cfg.Instance+".json")); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return fmt.Errorf("instance record: %w", err)
	}
	if !globalsOf(c).quiet {
		fmt.Fprintf(c.App.ErrWriter, "instance %s started (pid %d)\n", cfg.Instance, pid)
	}
	return nil
}

// runInstanceStarter runs the starter for an instance and returns the instance's process:
// the starter's child, left running when the starter exits once the container is ready.
// kerr is a child subreaper meanwhile, so that the instance becomes its child and can be
// found.
func runInstanceStarter(cfg *native.Config, logs [2]*os.File, errLog string) (int, error) {
	bin, err := launch.StarterFor(cfg.UserNS)
	if err != nil {
		return 0, err
	}
	data, err := launch.NativeConfig(fmt.Sprintf("instance-%d", os.Getpid()), cfg)
	if err != nil {
		return 0, err
	}
	mfd, err := unix.MemfdCreate("kerr-config", unix.MFD_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("config memfd: %w", err)
	}
	conf := os.NewFile(uintptr(mfd), "kerr-config")
	defer conf.Close()
	if _, err := conf.Write(data); err != nil {
		return 0, fmt.Errorf("config memfd: %w", err)
	}
	if _, err := conf.Seek(0, 0); err != nil {
		return 0, fmt.Errorf("config memfd: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	cmd := exec.Command(bin, "--config-fd", "3")
	cmd.ExtraFiles = []*os.File{conf}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logs[0], logs[1]
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		msg := lastLogLine(errLog)
		if msg == "" {
			msg = fmt.Sprintf("the starter failed (exit %d)", code)
		}
		return 0, &launch.ExitError{Code: code, Msg: strings.TrimPrefix(strings.TrimPrefix(msg, "kerr: "), "starter: ")}
	}
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if kids := children(); len(kids) == 1 {
			return kids[0], nil
		}
	}
	return 0, fmt.Errorf("the instance's process is not to be found after its start")
}

// children lists this process's children (of every thread).
func children() []int {
	var out []int
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// records lists the names of this user's instance records here.
func records(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(n, ".") && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// forget removes a record whose instance has ended, with its logs.
func forget(dir, name string) {
	for _, suffix := range []string{".json", ".out", ".err"} {
		_ = os.Remove(filepath.Join(dir, name+suffix))
	}
}

func instanceList(c *cli.Context) error {
	if err := needArgs(c, 0, 1, "[NAME]"); err != nil {
		return err
	}
	dir, err := instanceDir()
	if err != nil {
		return err
	}
	var live []native.Instance
	for _, name := range records(dir) {
		if c.NArg() == 1 && name != c.Args().First() {
			continue
		}
		rec, alive, err := liveInstance(dir, name)
		if err != nil {
			continue
		}
		if !alive {
			forget(dir, name)
			continue
		}
		live = append(live, *rec)
	}
	if c.Bool("json") {
		if live == nil {
			live = []native.Instance{}
		}
		b, err := json.MarshalIndent(map[string]any{"instances": live}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.App.Writer, string(b))
		return err
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPID\tIMAGE")
	for _, r := range live {
		fmt.Fprintf(w, "%s\t%d\t%s\n", r.Name, r.PID, r.Image)
	}
	return w.Flush()
}

func instanceStop(c *cli.Context) error {
	all := c.Bool("all")
	if (all && c.NArg() != 0) || (!all && c.NArg() != 1) {
		return fmt.Errorf("usage: %s NAME | --all: %w", c.Command.HelpName, errdefs.ErrUsage)
	}
	dir, err := instanceDir()
	if err != nil {
		return err
	}
	names := records(dir)
	if !all {
		name := c.Args().First()
		if err := native.ValidInstanceName(name); err != nil {
			return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
		}
		names = []string{name}
	}
	var errs []error
	for _, name := range names {
		rec, alive, err := liveInstance(dir, name)
		if err != nil {
			if !all {
				return err
			}
			continue
		}
		if !alive {
			forget(dir, name)
			if !all {
				return fmt.Errorf("instance %s is not running (its record was left behind; removed): %w", name, errdefs.ErrNotFound)
			}
			continue
		}
		if err := stopProcess(rec, c.Duration("timeout")); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
			continue
		}
		forget(dir, name)
		if !globalsOf(c).quiet {
			fmt.Fprintf(c.App.ErrWriter, "instance %s stopped\n", name)
		}
	}
	return errors.Join(errs...)
}

// stopProcess asks the instance's init to end (SIGTERM: it passes the first on to the
// startscript, and ends at the next once that is gone), then kills it after timeout. Its
// end takes every process of the instance with it (the pid namespace's init).
func stopProcess(rec *native.Instance, timeout time.Duration) error {
	alive := func() bool { return procstat.Running(rec.PID, rec.StartTime) }
	deadline := time.Now().Add(timeout)
	for alive() {
		sig := syscall.SIGTERM
		if time.Now().After(deadline) {
			sig = syscall.SIGKILL
		}
		if err := syscall.Kill(rec.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %d: %w", rec.PID, err)
		}
		for i := 0; i < 10 && alive(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
