// Package launch is where the frontend executes the starter for an engine it hands a job
// to. Run (the bundle engine) wraps the engine's config in an rpc/envelope Envelope, hands it
// over on an inherited pipe (fd 3, `--config-fd 3`), waits, and turns the starter's exit into
// an error the CLI can report. Exec (HPC mode, `kerr exec|run|shell`) replaces kerr with the
// starter, the config in a sealed memfd (exec.go). (The OCI lifecycle execs the starter
// itself, from starter/oci, for the processes that become a container's and for its monitor.)
//
// Privileges: the caller's. The starter decides what it may do; nothing here is trusted by it.
package launch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// configFd is where the starter finds its config: the first of cmd.ExtraFiles.
const configFd = 3

// maxStderr bounds what is kept of the starter's stderr when it is captured.
const maxStderr = 64 << 10

// ExitError is a starter that exited non-zero: Code is its status, Msg its last line of
// stderr without the "starter: " prefix. The CLI exits with Code.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Options say how to run the starter.
type Options struct {
	// Starter is the binary; empty: the installed unprivileged starter.
	Starter string
	// CaptureStderr keeps the starter's stderr to report its error as one line; otherwise
	// stderr is the caller's (a container's output goes there).
	CaptureStderr bool
}

// Run runs the starter with engine's config cfg for id, and waits for it. Nothing here
// stops the starter early: its privileged work is short, and an engine recovers from being
// killed half-way (e.g. `kerr oci umount --force`), so kerr lets it finish rather than
// interrupt it at a worse moment. A Ctrl-C on a terminal reaches it directly, as it reaches
// kerr.
func Run(engine, id string, cfg any, opts Options) error {
	env, err := envelope.New(engine, id, cfg)
	if err != nil {
		return fmt.Errorf("engine config: %w", err)
	}
	payload, err := env.Encode()
	if err != nil {
		return fmt.Errorf("engine config: %w", err)
	}
	bin := opts.Starter
	if bin == "" {
		bin = buildcfg.StarterPath()
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("starter %s: %v (is kerr installed? see docs/admin-guide.md)", bin, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("config pipe: %w", err)
	}
	cmd := exec.Command(bin, "--config-fd", fmt.Sprint(configFd))
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stdin, cmd.Stdout = os.Stdin, os.Stdout
	var stderr limitedBuffer
	if opts.CaptureStderr {
		cmd.Stderr = &stderr
	} else {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	r.Close()
	// The pipe holds 64 KiB; a larger config is written while the starter reads it.
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(payload)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		werr <- err
	}()
	err = cmd.Wait()
	if wErr := <-werr; wErr != nil && err == nil {
		return fmt.Errorf("send config to the starter: %w", wErr)
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	msg := lastLine(stderr.String())
	if msg == "" {
		msg = fmt.Sprintf("the starter failed (exit %d)", code)
	}
	return &ExitError{Code: code, Msg: msg}
}

// lastLine is the starter's error line: the last non-empty line, prefix removed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimPrefix(strings.TrimSpace(lines[len(lines)-1]), "starter: ")
}

// limitedBuffer keeps the last maxStderr bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > maxStderr {
		p = p[len(p)-maxStderr:]
	}
	if b.Len()+len(p) > maxStderr {
		keep := b.Bytes()[b.Len()+len(p)-maxStderr:]
		rest := append([]byte(nil), keep...)
		b.Reset()
		b.Write(rest)
	}
	b.Buffer.Write(p)
	return n, nil
}

// ExitCode returns the exit status err asks for: a starter's own, a payload's (an error
// with an ExitCode method), or errdefs' mapping.
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return errdefs.ExitCode(err)
}

// Silent reports whether err only carries an exit status, nothing to print: a payload's.
func Silent(err error) bool {
	var coded interface{ ExitCode() int }
	var ee *ExitError
	return errors.As(err, &coded) && !errors.As(err, &ee)
}
