package starter

import (
	"errors"
	"testing"

	"github.com/kerr-hpc/kerr/rpc/envelope"
)

type fakeEngine struct {
	name string
	got  *envelope.Envelope
}

func (f *fakeEngine) Name() string                     { return f.name }
func (f *fakeEngine) Run(env *envelope.Envelope) error { f.got = env; return nil }

func TestRunDispatchesToTheNamedEngine(t *testing.T) {
	a, b := &fakeEngine{name: "alpha"}, &fakeEngine{name: "beta"}
	reg, err := NewRegistry(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run([]byte(`{"version":1,"engine":"beta","id":"c1","config":{}}`), reg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if a.got != nil || b.got == nil || b.got.ID != "c1" {
		t.Fatalf("dispatch went wrong: alpha=%v beta=%v", a.got, b.got)
	}
	if got := reg.Names(); len(got) != 2 || got[0] != "alpha" || got[1] != "beta" {
		t.Fatalf("Names = %q", got)
	}
}

func TestRunWithNoEnginesSaysEngineUnavailable(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	err = Run([]byte(`{"version":1,"engine":"oci","id":"c1","config":{}}`), reg)
	if !errors.Is(err, ErrEngineUnavailable) {
		t.Fatalf("err = %v, want ErrEngineUnavailable", err)
	}
	if want := `engine "oci" is not available in this starter`; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
}

func TestRunRejectsInvalidEnvelopeBeforeLookup(t *testing.T) {
	e := &fakeEngine{name: "alpha"}
	reg, _ := NewRegistry(e)
	err := Run([]byte(`{"version":1,"engine":"alpha","id":"../x","config":{}}`), reg)
	if !errors.Is(err, envelope.ErrInvalid) || e.got != nil {
		t.Fatalf("err = %v, engine ran = %v", err, e.got != nil)
	}
}

func TestNewRegistryRefusesDuplicateNames(t *testing.T) {
	if _, err := NewRegistry(&fakeEngine{name: "x"}, &fakeEngine{name: "x"}); err == nil {
		t.Fatal("duplicate engine accepted")
	}
}
