// Package bundle is the starter's root-only "bundle" engine: `kerr oci mount SIF BUNDLE`
// turns a SIF into an OCI bundle, and `kerr oci umount BUNDLE` takes it apart.
//
// A mounted bundle (`ls BUNDLE` shows exactly config.json, overlay and rootfs):
//
//	BUNDLE/                    root's, 0700 while mounted (created if absent)
//	  config.json              the OCI runtime config (starter/bundle/runtimespec), 0644
//	  rootfs/                  overlay: lowerdir=overlay/lower, upperdir=overlay/upper,
//	                           workdir=overlay/work (read-only bundle: the squashfs itself)
//	  overlay/
//	    lower/                 the SIF's squashfs partition, ro,nodev, through a loop device
//	    upper/  work/          the container's writes, and overlayfs's scratch directory
//	    kerr-bundle.json       the marker: what mount did, so that umount can undo it
//
// The loop device is read-only with autoclear and shared: bundles of one SIF use one device
// (and one squashfs superblock), and the kernel unbinds it when the last of their lower
// mounts goes. Nothing kerr runs has to detach it, so a kill -9 cannot leak it.
//
// Mount writes the marker before it mounts anything and umount removes it last, so that
// `kerr oci umount --force` can clean up after a mount killed at any point, and a kill of
// umount can be finished by running it again. Around the marker, a directory kerr created
// carries the mode d--------T, which umount --force recognises too.
//
// Privileges: everything here runs as root (effective uid 0, CAP_SYS_ADMIN) in the host's
// mount namespace, in the plain starter; the engine is never built into starter-suid
// (cmd/starter/engine_bundle.go is !suid). Mount and Umount check the effective uid first
// and fail with errdefs.ErrDenied for anyone else.
package bundle

import (
	"fmt"

	bundlerpc "github.com/kerr-hpc/kerr/rpc/bundle"
	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// Engine is the "bundle" engine of the starter.
type Engine struct{}

// Name is the envelope's engine name, "bundle".
func (Engine) Name() string { return bundlerpc.EngineName }

// Run decodes the untrusted config (an rpc/bundle Config) and mounts or unmounts the bundle
// it names. A config that does not decode or validate, or whose bundle does not match the
// envelope's id, wraps envelope.ErrInvalid; other errors wrap errdefs sentinels, which the
// starter turns into its exit status.
// Privileges: root, as the package comment says; checked by Mount and Umount.
func (Engine) Run(env *envelope.Envelope) error {
	var cfg bundlerpc.Config
	if err := envelope.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", envelope.ErrInvalid, err)
	}
	if want := bundlerpc.ID(cfg.Bundle); env.ID != want {
		return fmt.Errorf("%w: envelope id %q is not %q, the id of bundle %s", envelope.ErrInvalid, env.ID, want, cfg.Bundle)
	}
	switch cfg.Action {
	case bundlerpc.ActionMount:
		return Mount(cfg.Image, cfg.Bundle, cfg.ReadOnly)
	case bundlerpc.ActionUmount:
		return Umount(cfg.Bundle, UmountOptions{Force: cfg.Force, KeepOverlay: cfg.KeepOverlay, StateRoot: cfg.StateRoot})
	}
	return fmt.Errorf("%w: unknown bundle action %q", envelope.ErrInvalid, cfg.Action)
}
