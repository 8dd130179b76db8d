// Package bundle is the message the frontend sends to the starter's root-only "bundle"
// engine, which turns a SIF into an OCI bundle (`kerr oci mount`) and undoes it
// (`kerr oci umount`). It travels as the config of an rpc/envelope Envelope.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// EngineName is the envelope's engine for these messages.
const EngineName = "bundle"

// Actions.
const (
	ActionMount  = "mount"
	ActionUmount = "umount"
)

// Config asks the engine to mount or unmount one bundle. Paths are absolute and clean; the
// engine checks that again, as it checks everything it is sent.
type Config struct {
	Action string `json:"action"`
	// Image is the SIF to mount (mount only).
	Image string `json:"image,omitempty"`
	// Bundle is the bundle directory.
	Bundle string `json:"bundle"`
	// ReadOnly mounts the image's root filesystem directly at rootfs, without an overlay;
	// config.json then says root.readonly (mount only).
	ReadOnly bool `json:"readOnly,omitempty"`
	// Force (umount): unmount even what is busy (lazily), and clean up a bundle that a
	// killed mount left half made.
	Force bool `json:"force,omitempty"`
	// KeepOverlay (umount): leave overlay/upper, the container's writes, in place.
	KeepOverlay bool `json:"keepOverlay,omitempty"`
	// StateRoot (umount) is the OCI state directory (`kerr oci --root`): a container whose
	// DIR/ID/state.json names this bundle makes umount refuse, unless Force.
	StateRoot string `json:"stateRoot,omitempty"`
}

// DefaultStateRoot is where `kerr oci` keeps container state unless --root moves it.
const DefaultStateRoot = "/run/kerr"

// Validate checks the fields both sides rely on.
func (c Config) Validate() error {
	switch c.Action {
	case ActionMount:
		if !filepath.IsAbs(c.Image) || filepath.Clean(c.Image) != c.Image {
			return fmt.Errorf("image path %q is not absolute and clean", c.Image)
		}
	case ActionUmount:
		if c.Image != "" || c.ReadOnly {
			return fmt.Errorf("umount takes no image and no read-only flag")
		}
	default:
		return fmt.Errorf("unknown bundle action %q", c.Action)
	}
	if !filepath.IsAbs(c.Bundle) || filepath.Clean(c.Bundle) != c.Bundle || c.Bundle == "/" {
		return fmt.Errorf("bundle path %q is not absolute and clean", c.Bundle)
	}
	if c.Action == ActionMount && (c.Force || c.KeepOverlay || c.StateRoot != "") {
		return fmt.Errorf("mount takes no force, keep-overlay or state root")
	}
	if c.StateRoot != "" && (!filepath.IsAbs(c.StateRoot) || filepath.Clean(c.StateRoot) != c.StateRoot) {
		return fmt.Errorf("state root %q is not absolute and clean", c.StateRoot)
	}
	return nil
}

// ID is the envelope id for work on a bundle directory: stable per path, so that two
// operations on one bundle name the same id.
func ID(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return "bundle-" + hex.EncodeToString(sum[:8])
}
