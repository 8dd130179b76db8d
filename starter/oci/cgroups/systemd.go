package cgroups

import (
	"fmt"
	"math"
	"slices"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// PropertyAnnotationPrefix starts the config.json annotations that set properties of a
// container's systemd unit (systemd driver only), as runc and crun take them:
// "org.systemd.property.CollectMode": "'inactive-or-failed'". The value is in D-Bus's
// GVariant text form ("uint64 30000000", "true", "'text'"). A name ending in a lowercase
// letter and "Sec" takes seconds and is given to systemd as the "USec" property, in
// microseconds ("TimeoutStopSec": "5" sets TimeoutStopUSec=5000000).
const PropertyAnnotationPrefix = "org.systemd.property."

// unitProperties turns the property annotations among annotations into unit properties,
// in the order of their names, after kerr's own Description (which one of them may
// override). Refused, in one line naming the annotation: a name that is not three or more
// ASCII letters starting with a capital, and a value that does not parse.
func unitProperties(name string, annotations map[string]string) ([]sdbus.Property, error) {
	props := []sdbus.Property{sdbus.PropDescription("kerr container " + name)}
	var keys []string
	for k := range annotations {
		if strings.HasPrefix(k, PropertyAnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		prop := strings.TrimPrefix(k, PropertyAnnotationPrefix)
		if !propertyName(prop) {
			return nil, fmt.Errorf("cgroups: annotation %s: %q is not a systemd property name (3 or more ASCII letters, the first a capital)", k, prop)
		}
		v, err := dbus.ParseVariant(annotations[k], dbus.Signature{})
		if err != nil {
			return nil, fmt.Errorf("cgroups: annotation %s: value %q is not a D-Bus value in text form (\"uint64 5\", \"true\", \"'text'\"): %v", k, annotations[k], err)
		}
		if base, ok := strings.CutSuffix(prop, "Sec"); ok && base != "" && base[len(base)-1] >= 'a' && base[len(base)-1] <= 'z' {
			usec, err := secondsToUSec(v)
			if err != nil {
				return nil, fmt.Errorf("cgroups: annotation %s: %v", k, err)
			}
			prop, v = base+"USec", dbus.MakeVariant(usec)
		}
		props = append(props, sdbus.Property{Name: prop, Value: v})
	}
	return props, nil
}

// propertyName accepts what runc accepts: ASCII letters only, at least three, the first a
// capital.
func propertyName(s string) bool {
	if len(s) < 3 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// secondsToUSec converts a number of seconds (any D-Bus number type) to microseconds.
func secondsToUSec(v dbus.Variant) (uint64, error) {
	var sec float64
	switch n := v.Value().(type) {
	case uint8:
		sec = float64(n)
	case uint16:
		sec = float64(n)
	case uint32:
		sec = float64(n)
	case uint64:
		sec = float64(n)
	case int16:
		sec = float64(n)
	case int32:
		sec = float64(n)
	case int64:
		sec = float64(n)
	case float64:
		sec = n
	default:
		return 0, fmt.Errorf("a property in seconds takes a number, not %s", v.Signature())
	}
	if sec < 0 || math.IsNaN(sec) || sec*1e6 >= math.MaxUint64 {
		return 0, fmt.Errorf("%v seconds is out of range", sec)
	}
	return uint64(sec * 1e6), nil
}

// CheckUnitProperties checks the unit property annotations among annotations as New
// would, so that create can refuse bad ones before anything exists.
//
// Privileges: none.
func CheckUnitProperties(annotations map[string]string) error {
	_, err := unitProperties("", annotations)
	return err
}
