// Package sifimage writes and reads kerr's SIF files.
//
// A SIF built by kerr holds, as Singularity and Apptainer lay theirs out:
//   - the root filesystem: a squashfs partition, primary system partition, with the image's
//     architecture;
//   - a definition-file descriptor naming where the image came from ("Bootstrap: docker");
//   - a labels descriptor (JSON object);
//   - a JSON descriptor named "oci-config.json" with the image's OCI config, so that kerr can
//     recreate the OCI runtime config without reading the squashfs.
package sifimage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/errdefs"
)

// LaunchScript is the first line of a SIF, which makes `./image.sif` runnable through a
// run-singularity shim; the same line as Singularity's so that their tooling accepts ours.
const LaunchScript = "#!/usr/bin/env run-singularity\n"

// ConfigName is the name of the descriptor holding the image's OCI config.
const ConfigName = "oci-config.json"

// Contents is what goes into a new SIF.
type Contents struct {
	Squashfs  *os.File // the root filesystem image, read from its start
	Arch      string   // GOARCH of the root filesystem
	Deffile   string   // "Bootstrap: docker\nFrom: …\n"
	Labels    map[string]string
	OCIConfig []byte // raw OCI image config JSON; nil for none
	Created   time.Time
}

// Write creates a SIF at path (which must not exist yet: the caller writes to a temp name
// and renames it) from c.
func Write(path string, c Contents) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return WriteFile(f, c)
}

// WriteFile writes a SIF from c into f, an empty file opened for reading and writing (a
// fresh temp file), and closes f.
func WriteFile(f *os.File, c Contents) error {
	path := f.Name()
	labels, err := json.MarshalIndent(c.Labels, "", "\t")
	if err != nil {
		f.Close()
		return fmt.Errorf("encode labels: %w", err)
	}
	dis, err := descriptors(c, labels)
	if err != nil {
		f.Close()
		return err
	}
	fi, err := sif.CreateContainer(f, sif.OptCreateWithLaunchScript(LaunchScript), sif.OptCreateWithCloseOnUnload(false),
		sif.OptCreateWithTime(c.Created), sif.OptCreateWithDescriptors(dis...))
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fi.UnloadContainer(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// descriptors lists the data objects of a SIF for c, the root filesystem last.
func descriptors(c Contents, labels []byte) ([]sif.DescriptorInput, error) {
	t := c.Created
	var dis []sif.DescriptorInput
	add := func(dt sif.DataType, r io.Reader, opts ...sif.DescriptorInputOpt) error {
		opts = append(opts, sif.OptObjectTime(t))
		di, err := sif.NewDescriptorInput(dt, r, opts...)
		if err != nil {
			return fmt.Errorf("sif descriptor %v: %w", dt, err)
		}
		dis = append(dis, di)
		return nil
	}
	if c.Deffile != "" {
		if err := add(sif.DataDeffile, bytes.NewReader([]byte(c.Deffile))); err != nil {
			return nil, err
		}
	}
	if err := add(sif.DataLabels, bytes.NewReader(labels)); err != nil {
		return nil, err
	}
	if c.OCIConfig != nil {
		if err := add(sif.DataGenericJSON, bytes.NewReader(c.OCIConfig), sif.OptObjectName(ConfigName)); err != nil {
			return nil, err
		}
	}
	if err := add(sif.DataPartition, c.Squashfs,
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, c.Arch)); err != nil {
		return nil, err
	}
	return dis, nil
}

// Image is an open SIF file.
type Image struct {
	*sif.FileImage
	f *os.File
}

// Open opens and checks a SIF: a file that is no SIF, or is cut short, is an invalid image.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open %s: no such file: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	img, err := OpenFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// OpenFile checks the open file f as Open does and takes it over; on error f is left open
// for the caller. Its name is used in messages. The starter's stage 1 uses it on the image
// it opened as the caller.
func OpenFile(f *os.File) (*Image, error) {
	path := f.Name()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a SIF file: not a regular file: %w", path, errdefs.ErrInvalidImage)
	}
	fi, err := sif.LoadContainer(f, sif.OptLoadWithFlag(os.O_RDONLY), sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return nil, fmt.Errorf("%s is not a SIF file: %v: %w", path, err, errdefs.ErrInvalidImage)
	}
	img := &Image{FileImage: fi, f: f}
	// The header's data section and every object must lie inside the file, else the image
	// was cut short or is forged. The header is hostile input: compared without adding, so
	// that a huge offset or size cannot wrap around.
	if !within(fi.DataOffset(), fi.DataSize(), st.Size()) {
		_ = fi.UnloadContainer()
		return nil, fmt.Errorf("%s is truncated: its data section (offset %d, size %d) does not fit in its %d bytes: %w",
			path, fi.DataOffset(), fi.DataSize(), st.Size(), errdefs.ErrInvalidImage)
	}
	var bad error
	fi.WithDescriptors(func(d sif.Descriptor) bool {
		if !within(d.Offset(), d.Size(), st.Size()) {
			bad = fmt.Errorf("%s is truncated: object %d (offset %d, size %d) ends past the end of the file: %w",
				path, d.ID(), d.Offset(), d.Size(), errdefs.ErrInvalidImage)
			return true
		}
		return false
	})
	if bad != nil {
		_ = fi.UnloadContainer()
		return nil, bad
	}
	return img, nil
}

// within reports whether [off, off+size) lies inside a file of fileSize bytes.
func within(off, size, fileSize int64) bool {
	return off >= 0 && size >= 0 && off <= fileSize && size <= fileSize-off
}

// maxJSONObject bounds what is read of a SIF's JSON objects (labels, OCI config): real ones
// are a few KiB, and a forged one must not make kerr (or the root starter) allocate the
// size its descriptor claims.
const maxJSONObject = 4 << 20

// readObject reads a descriptor's data, refusing more than maxJSONObject bytes.
func readObject(d sif.Descriptor, what string) ([]byte, error) {
	if d.Size() > maxJSONObject {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d kerr reads: %w", what, d.Size(), maxJSONObject, errdefs.ErrInvalidImage)
	}
	b, err := io.ReadAll(io.LimitReader(d.GetReader(), maxJSONObject))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return b, nil
}

// Close releases the file.
func (i *Image) Close() error {
	_ = i.UnloadContainer()
	return i.f.Close()
}

// File returns the underlying file, for reading partitions at their offsets.
func (i *Image) File() *os.File { return i.f }

// RootFS returns the primary system partition (the root filesystem) and checks that it is
// squashfs, the only kind kerr mounts.
func (i *Image) RootFS() (sif.Descriptor, error) {
	d, err := i.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		return d, fmt.Errorf("%s has no root filesystem partition: %w", i.f.Name(), errdefs.ErrInvalidImage)
	}
	fs, _, _, err := d.PartitionMetadata()
	if err != nil {
		return d, fmt.Errorf("%s: read root filesystem partition: %v: %w", i.f.Name(), err, errdefs.ErrInvalidImage)
	}
	if fs != sif.FsSquash {
		return d, fmt.Errorf("%s: root filesystem is %v, kerr supports squashfs: %w", i.f.Name(), fs, errdefs.ErrInvalidImage)
	}
	return d, nil
}

// Labels returns the labels descriptor's content; an image without one has no labels.
func (i *Image) Labels() (map[string]string, error) {
	d, err := i.GetDescriptor(sif.WithDataType(sif.DataLabels))
	if err != nil {
		return map[string]string{}, nil
	}
	b, err := readObject(d, "labels")
	if err != nil {
		return nil, err
	}
	// Singularity writes label values as strings; older images sometimes hold other JSON.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("labels are not a JSON object: %v: %w", err, errdefs.ErrInvalidImage)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		} else {
			j, _ := json.Marshal(v)
			out[k] = string(j)
		}
	}
	return out, nil
}

// OCIConfig returns the raw OCI image config, or nil when the image has none (SIFs from
// Singularity definition files).
func (i *Image) OCIConfig() ([]byte, error) {
	ds, err := i.GetDescriptors(sif.WithDataType(sif.DataGenericJSON))
	if err != nil {
		return nil, nil
	}
	for _, d := range ds {
		if d.Name() == ConfigName {
			return readObject(d, ConfigName)
		}
	}
	return nil, nil
}
