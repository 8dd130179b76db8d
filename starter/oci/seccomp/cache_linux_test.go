//go:build linux && cgo

package seccomp

import (
	"bytes"
	"testing"
)

func TestFilterMarshalRoundTrip(t *testing.T) {
	f := mustCompile(t, kerrProfile(t))
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	g, err := UnmarshalFilter(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.flags != f.flags || len(g.prog) != len(f.prog) {
		t.Fatalf("round trip: %d instructions, flags %#x; want %d, %#x", len(g.prog), g.flags, len(f.prog), f.flags)
	}
	for i := range f.prog {
		if g.prog[i] != f.prog[i] {
			t.Fatalf("instruction %d: %+v, want %+v", i, g.prog[i], f.prog[i])
		}
	}
	// Forms that are not a filter are refused.
	bad := map[string][]byte{
		"empty":         nil,
		"magic":         append([]byte("KERRBPF0"), b[8:]...),
		"short":         b[:len(b)-1],
		"long":          append(bytes.Clone(b), 0),
		"no program":    append([]byte(filterMagic), make([]byte, 12)...),
		"unknown flags": append(append([]byte(filterMagic), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0), b[16:]...),
	}
	for name, in := range bad {
		if _, err := UnmarshalFilter(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The key follows the profile's bytes.
	a1, a2 := CacheKey([]byte("a")), CacheKey([]byte("a"))
	if CacheKey([]byte("b")) == a1 || a1 != a2 {
		t.Error("CacheKey does not follow the profile")
	}
}
