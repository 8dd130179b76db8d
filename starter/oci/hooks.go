package oci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specState is the state the runtime spec defines: what `kerr oci state` prints (with
// kerr's and runc's extra fields) and what hooks read on stdin.
type specState struct {
	specs.State
	// Extra fields: runc's and the Singularity-style ones the seed shows.
	Rootfs        string     `json:"rootfs,omitempty"`
	Created       *time.Time `json:"created,omitempty"`
	CreatedAt     int64      `json:"createdAt,omitempty"`
	Owner         string     `json:"owner,omitempty"`
	AttachSocket  string     `json:"attachSocket,omitempty"`
	ControlSocket string     `json:"controlSocket,omitempty"`
	ExitStatus    *int       `json:"exitStatus,omitempty"`
	FinishedAt    int64      `json:"finishedAt,omitempty"`
	OOMKilled     bool       `json:"oomKilled,omitempty"`
}

// hookState is the spec's state alone, for hooks' stdin.
func hookState(s *State, status string, pid int) []byte {
	b, _ := json.Marshal(specs.State{Version: specs.Version, ID: s.ID, Status: specs.ContainerState(status),
		Pid: pid, Bundle: s.Bundle, Annotations: s.Annotations})
	return b
}

// runHooks runs hooks in order with state on stdin; the first failure stops them and is
// returned. Privileges: root, in whichever namespaces the calling process is: the spec says
// where each kind runs, and the caller is that process.
func runHooks(kind string, hooks []specs.Hook, state []byte) error {
	for i, h := range hooks {
		if err := runHook(h, state); err != nil {
			return fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

// runHooksWarn runs every hook, for the kinds whose failures the spec makes warnings
// (poststart, poststop): each failure is printed and the rest still run.
func runHooksWarn(kind string, hooks []specs.Hook, state []byte) {
	for i, h := range hooks {
		if err := runHook(h, state); err != nil {
			fmt.Fprintf(os.Stderr, "kerr: warning: %s hook %d (%s): %v\n", kind, i, h.Path, err)
		}
	}
}

func runHook(h specs.Hook, state []byte) error {
	cmd := exec.Command(h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	} else {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if h.Timeout != nil {
		t := time.NewTimer(time.Duration(*h.Timeout) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case err := <-done:
		if err != nil {
			if msg := strings.TrimSpace(out.String()); msg != "" {
				return fmt.Errorf("%w: %s", err, lastLineOf(msg))
			}
			return err
		}
		return nil
	case <-timeout:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("timed out after %d s", *h.Timeout)
	}
}

func lastLineOf(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// notifySync sends the container's state with status to its --sync-socket, if it has one:
// one connection, the state JSON, close. The listener is the caller's; a failure to reach
// it is a warning, not a failure of the container. Privileges: root.
func notifySync(s *State, status string, pid int) {
	if s.SyncSocket == "" {
		return
	}
	conn, err := net.DialTimeout("unix", s.SyncSocket, 2*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kerr: warning: sync socket %s: %v\n", s.SyncSocket, err)
		return
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(append(hookState(s, status, pid), '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "kerr: warning: sync socket %s: %v\n", s.SyncSocket, err)
	}
}
