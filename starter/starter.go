// Package starter is the Go side of kerr's starter: it takes the EngineConfig that the C
// stage (starter-c) read from the config fd, decodes it as untrusted input, and hands it to
// the engine it names, if that engine is compiled into this binary.
//
// Privileges: everything here runs after stage 0. In setuid mode that means real and
// effective ids are the caller's and the saved uid is root; nothing in this package uses the
// saved uid.
package starter

import (
	"errors"
	"fmt"
	"sort"

	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// ErrEngineUnavailable is wrapped when a valid envelope names an engine this starter was not
// built with: an unknown name, or a root-only engine asked of starter-suid.
var ErrEngineUnavailable = errors.New("engine not available")

// Engine turns a decoded EngineConfig into a running container.
type Engine interface {
	// Name is the engine's name in the envelope, e.g. "native".
	Name() string
	// Run runs the container env describes. env has passed envelope.Decode; env.Config has
	// not been looked at and is untrusted. An error wrapping envelope.ErrInvalid means the
	// config was refused (starter exit 253); any other error makes the starter exit with
	// errdefs.ExitCode(err), so errors wrap the errdefs sentinel that says what went wrong.
	// Privileges: stage 1, as the package comment says; an engine that needs more says so
	// in its own doc comment and gets it through the C stage, never by calling setresuid
	// from Go.
	Run(env *envelope.Envelope) error
}

// Reporter is an engine that reports its own errors (the oci engine, whose errors are the
// user's, printed as kerr prints its own) and says the exit status: the starter then
// prints nothing. Envelope and lookup errors are never passed to it.
type Reporter interface {
	Report(err error) int
}

// Registry holds the engines compiled into one starter binary, by name.
type Registry struct {
	engines map[string]Engine
}

// NewRegistry returns a registry of engines; two engines with one name are a build error.
// Privileges: none used (memory only), like Lookup and Names.
func NewRegistry(engines ...Engine) (*Registry, error) {
	r := &Registry{engines: make(map[string]Engine, len(engines))}
	for _, e := range engines {
		name := e.Name()
		if _, dup := r.engines[name]; dup {
			return nil, fmt.Errorf("engine %q registered twice", name)
		}
		r.engines[name] = e
	}
	return r, nil
}

// Lookup returns the engine called name, or an error wrapping ErrEngineUnavailable.
func (r *Registry) Lookup(name string) (Engine, error) {
	if e, ok := r.engines[name]; ok {
		return e, nil
	}
	return nil, unavailableError{name: name}
}

// Names lists the registered engines, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.engines))
	for n := range r.engines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type unavailableError struct{ name string }

func (e unavailableError) Error() string {
	return fmt.Sprintf("engine %q is not available in this starter", e.name)
}

func (e unavailableError) Unwrap() error { return ErrEngineUnavailable }

// Run decodes config, an envelope from untrusted bytes, and runs the engine it names.
// Errors wrap envelope.ErrInvalid or ErrEngineUnavailable, or come from the engine.
// Privileges: stage 1 (see the package comment).
func Run(config []byte, reg *Registry) error {
	_, err := RunEngine(config, reg)
	return err
}

// RunEngine is Run that also returns the engine that ran (nil when the envelope was
// refused or named no engine of this starter), so that the caller can let it report.
func RunEngine(config []byte, reg *Registry) (Engine, error) {
	env, err := envelope.Decode(config)
	if err != nil {
		return nil, err
	}
	e, err := reg.Lookup(env.Engine)
	if err != nil {
		return nil, err
	}
	return e, e.Run(env)
}
