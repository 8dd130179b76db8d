package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// Names inside the bundle directory. The marker sits in overlay/ with the layers, so that
// `ls BUNDLE` shows exactly config.json, overlay and rootfs.
const (
	configName  = "config.json"
	rootfsName  = "rootfs"
	overlayName = "overlay"
	lowerName   = "lower"
	upperName   = "upper"
	workName    = "work"
	markerName  = "kerr-bundle.json"

	lowerPath = overlayName + "/" + lowerName
	upperPath = overlayName + "/" + upperName
	workPath  = overlayName + "/" + workName
)

// markerVersion is the marker format this build writes and reads.
const markerVersion = 1

// markerMax bounds what umount reads as a marker.
const markerMax = 64 << 10

// marker records what mount did to a bundle directory, so that umount (and umount --force
// after a mount was killed at any point) can undo exactly that. Mount writes it atomically
// before its first mount; umount removes it last.
type marker struct {
	Version int `json:"version"`
	// Image is the SIF's path; ImageDev and ImageIno identify the file that was bound.
	Image    string `json:"image"`
	ImageDev uint64 `json:"imageDev"`
	ImageIno uint64 `json:"imageIno"`
	// LoopDevice is the device mounted at overlay/lower (or at rootfs when read-only); it
	// unbinds itself (autoclear) once unmounted, so umount never detaches it.
	LoopDevice string `json:"loopDevice"`
	// Offset and Size are the root filesystem partition's place in the SIF.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// CreatedDir: mount created the bundle directory, and umount removes it. Otherwise
	// umount gives it back its Mode, UID and GID (mount makes it root's, 0700).
	CreatedDir bool   `json:"createdDir"`
	Mode       uint32 `json:"mode"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
	// ReadOnly: the squashfs is mounted at rootfs itself, with no overlay.
	ReadOnly bool      `json:"readOnly"`
	Time     time.Time `json:"time"`
}

// writeMarker writes m into the directory overlayFD atomically. Privileges: the caller's
// (root); the file is 0600 in a root-only directory.
func writeMarker(overlayFD int, m *marker) error {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("encode the bundle marker: %w", err)
	}
	return writeFileAt(overlayFD, markerName, append(b, '\n'), 0o600)
}

// errNoMarker says the bundle directory has no marker.
var errNoMarker = errors.New("no kerr bundle marker")

// readMarker reads the marker of the bundle directory dirfd: errNoMarker (wrapped) if there
// is none, another error if it cannot be read or is not one this build understands.
// Privileges: read access to overlay/ (root).
func readMarker(dirfd int) (*marker, error) {
	ov, err := openDirAt(dirfd, overlayName)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, errNoMarker
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Close(ov) }()
	b, err := readFileAt(ov, markerName, markerMax)
	if errors.Is(err, unix.ENOENT) {
		return nil, errNoMarker
	}
	if err != nil {
		return nil, fmt.Errorf("read the bundle marker: %w", err)
	}
	var m marker
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle marker %s/%s: %w", overlayName, markerName, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("bundle marker %s/%s: trailing data", overlayName, markerName)
	}
	if m.Version != markerVersion {
		return nil, fmt.Errorf("bundle marker %s/%s: version %d, this kerr reads version %d", overlayName, markerName, m.Version, markerVersion)
	}
	return &m, nil
}
