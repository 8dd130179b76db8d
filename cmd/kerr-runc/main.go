// Command kerr-runc is kerr's OCI runtime with runc's command line, for the tools that
// drive a runtime that way: containerd's runc shim, podman's conmon, the OCI validation
// suite. It is the lifecycle of `kerr oci` (frontend/ocicli) without kerr's image handling,
// so that it starts as fast as a runtime called for every container must, and without the
// monitor: no kerr process stays between the caller and the container, whose process is the
// caller's (or its subreaper's) child, as with runc.
//
// Exit codes are kerr's (docs/exit-codes.md); errors go to stderr as one line, and also to
// --log when given (as JSON lines with --log-format json, which containerd reads).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/ocicli"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	var logPath, logFormat string
	app := &cli.App{
		Name:    "kerr-runc",
		Usage:   "kerr's OCI runtime with runc's command line",
		Version: buildcfg.Version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: ocicfg.DefaultRoot, Usage: "directory of container state"},
			&cli.StringFlag{Name: "log", Usage: "also write errors to this file", Destination: &logPath},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "format of --log: text or json", Destination: &logFormat},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "have systemd make each new container's cgroup, a scope unit (linux.cgroupsPath is then slice:prefix:name); cgroupfs by default"},
			&cli.BoolFlag{Name: "debug", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "no-monitor", Value: true, Hidden: true},
		},
		Commands:              ocicli.Commands(),
		OnUsageError:          ocicli.UsageError,
		HideHelpCommand:       true,
		CustomAppHelpTemplate: "",
	}
	err := app.Run(args)
	if err == nil {
		return 0
	}
	// A payload's exit status (exec, run) passes on silently.
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	msg := errdefs.OneLine(err)
	fmt.Fprintln(os.Stderr, "kerr-runc: "+msg)
	if logPath != "" {
		writeLog(logPath, logFormat, msg)
	}
	return errdefs.ExitCode(err)
}

// writeLog appends the error to the --log file: a JSON line {"level","msg","time"} with
// --log-format json (containerd shows the last msg), else a text line.
func writeLog(path, format, msg string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": now})
		_, _ = f.Write(append(b, '\n'))
		return
	}
	_, _ = fmt.Fprintf(f, "time=%q level=error msg=%q\n", now, msg)
}
