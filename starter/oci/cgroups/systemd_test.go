package cgroups

import (
	"strings"
	"testing"
)

// Unit properties from annotations, as runc takes them: only the prefixed keys, in name
// order after kerr's Description; seconds converted to microseconds for "...Sec" names;
// bad names and values refused in one line naming the annotation.
func TestUnitProperties(t *testing.T) {
	props, err := unitProperties("c1", map[string]string{
		"org.systemd.property.TimeoutStopSec":  "uint64 5",
		"org.systemd.property.CollectMode":     "'inactive-or-failed'",
		"org.systemd.property.TimeoutStopUSec": "uint64 7",
		"org.systemd.property.RuntimeMaxSec":   "1.5",
		"org.systemd.property.Description":     "'mine'",
		"io.kubernetes.cri.sandbox-id":         "whatever",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range props {
		got = append(got, p.Name+"="+p.Value.String())
	}
	want := []string{
		`Description="kerr container c1"`,
		`CollectMode="inactive-or-failed"`,
		`Description="mine"`,
		`RuntimeMaxUSec=@t 1500000`,
		`TimeoutStopUSec=@t 5000000`,
		`TimeoutStopUSec=@t 7`,
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("properties\n got %q\nwant %q", got, want)
	}
	if v, ok := props[3].Value.Value().(uint64); !ok || v != 1500000 {
		t.Errorf("RuntimeMaxUSec is %#v, want uint64 1500000", props[3].Value.Value())
	}

	for _, c := range []struct{ key, value, err string }{
		{"org.systemd.property.Ab", "true", "not a systemd property name"},
		{"org.systemd.property.collectMode", "'x'", "not a systemd property name"},
		{"org.systemd.property.Device_Allow", "'x'", "not a systemd property name"},
		{"org.systemd.property.", "'x'", "not a systemd property name"},
		{"org.systemd.property.CollectMode", "inactive", "not a D-Bus value"},
		{"org.systemd.property.TimeoutStopSec", "'5'", "takes a number"},
		{"org.systemd.property.TimeoutStopSec", "-1.0", "out of range"},
		{"org.systemd.property.Sec", "uint64 1", ""},
	} {
		err := CheckUnitProperties(map[string]string{c.key: c.value})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s=%s: %v", c.key, c.value, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), c.key)):
			t.Errorf("%s=%s: error %v, want one with %q naming the annotation", c.key, c.value, err, c.err)
		}
	}
}
