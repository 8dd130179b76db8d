package bundle

import (
	"regexp"
	"testing"
)

func TestValidate(t *testing.T) {
	good := []Config{
		{Action: ActionMount, Image: "/a/b.sif", Bundle: "/x/y"},
		{Action: ActionMount, Image: "/a/b.sif", Bundle: "/x/y", ReadOnly: true},
		{Action: ActionUmount, Bundle: "/x/y", Force: true, KeepOverlay: true},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
	bad := []Config{
		{Action: "rm", Bundle: "/x"},
		{Action: ActionMount, Image: "rel.sif", Bundle: "/x"},
		{Action: ActionMount, Image: "/a/../b.sif", Bundle: "/x"},
		{Action: ActionMount, Image: "/a.sif", Bundle: "x"},
		{Action: ActionMount, Image: "/a.sif", Bundle: "/"},
		{Action: ActionMount, Image: "/a.sif", Bundle: "/x/"},
		{Action: ActionMount, Image: "/a.sif", Bundle: "/x", Force: true},
		{Action: ActionUmount, Image: "/a.sif", Bundle: "/x"},
		{Action: ActionUmount, Bundle: "/x", ReadOnly: true},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted it", c)
		}
	}
}

func TestIDIsStableAndAValidContainerID(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	a, b := ID("/var/tmp/busybox"), ID("/var/tmp/busybox")
	if a != b || !valid.MatchString(a) || a == ID("/var/tmp/other") {
		t.Errorf("ID = %q, %q", a, b)
	}
}
