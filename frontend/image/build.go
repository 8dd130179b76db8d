// Package image turns image sources into SIF files and sandbox directories: the work behind
// `kerr pull` and `kerr build`. It runs with the caller's privileges only.
//
// The pipeline streams: layers are read from the cache (or a local layout), decompressed,
// flattened with OCI whiteout semantics and piped into tar2sqfs, which writes the squashfs
// root filesystem; the SIF is then assembled around it. Nothing is unpacked on the host disk
// (except for --sandbox, whose job that is), and every output appears under its final name
// only once complete.
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/cache"
	"github.com/kerr-hpc/kerr/frontend/image/flatten"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
	"github.com/kerr-hpc/kerr/frontend/image/ref"
	"github.com/kerr-hpc/kerr/frontend/image/sandbox"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/frontend/image/source"
	"github.com/kerr-hpc/kerr/frontend/image/squashfs"
	"github.com/kerr-hpc/kerr/frontend/image/sylayout"
)

// layoutVersion changes whenever what the builder writes into an image changes, so that SIFs
// cached by an older kerr are not reused.
const layoutVersion = "1"

// Options describe one build.
type Options struct {
	Source   string // TRANSPORT:REF, or a directory when AllowDir
	Output   string // SIF file, or directory with Sandbox
	AllowDir bool   // accept a plain directory as the source (kerr build)
	Sandbox  bool   // write a directory instead of a SIF
	Force    bool   // replace an existing output
	Arch     string
	Insecure bool
	Username string
	Password string
	// Compressor for the squashfs; empty: squashfs.DefaultCompressor.
	Compressor string
	// CacheDir is the cache root; empty: cache.DefaultDir().
	CacheDir string
	Progress *progress.Reporter
	// Warn receives notes about entries left out while flattening and unpacking; nil drops
	// them. For sandboxes it is called from two goroutines at once.
	Warn func(format string, args ...any)
}

// Result says what a build produced.
type Result struct {
	Output string
	Size   int64
	Cached bool // a SIF built earlier from the same manifest was reused
}

// ParseSource parses opts.Source the way Build will, so that a CLI can derive a default
// output name before building.
func ParseSource(opts Options) (ref.Source, error) {
	return ref.Parse(opts.Source, opts.AllowDir, opts.Insecure)
}

// Build makes opts.Output from opts.Source.
func Build(ctx context.Context, opts Options) (Result, error) {
	src, err := ParseSource(opts)
	if err != nil {
		return Result{}, err
	}
	if opts.Compressor == "" {
		opts.Compressor = squashfs.DefaultCompressor
	}
	out, err := filepath.Abs(opts.Output)
	if err != nil {
		return Result{}, fmt.Errorf("output %s: %w", opts.Output, err)
	}
	if err := checkOutput(out, opts); err != nil {
		return Result{}, err
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		if cacheDir, err = cache.DefaultDir(); err != nil {
			return Result{}, err
		}
	}
	c, err := cache.Open(cacheDir)
	if err != nil {
		return Result{}, errdefs.ClassifyIO(err)
	}
	rep := opts.Progress
	if rep == nil {
		rep = progress.New(true)
	}
	img, err := source.Resolve(ctx, src, source.Options{
		Arch: opts.Arch, Insecure: opts.Insecure, Username: opts.Username, Password: opts.Password,
		Cache: c, Progress: rep, UserAgent: "kerr/" + buildcfg.Version,
	})
	if err != nil {
		return Result{}, err
	}
	defer img.Close()

	// Only registry pulls are worth a cached SIF: they save a download, and a registry
	// reference names the same image each time. The key holds everything that shapes the
	// SIF besides the manifest: the source as written (it is in the labels), the
	// architecture and the compressor.
	key := ""
	if src.Transport == ref.Docker && img.Digest.Hex != "" && !opts.Sandbox {
		key = cache.SIFKey(img.Digest, img.Arch, layoutVersion+"\x00"+opts.Compressor+"\x00"+src.Raw)
		if cached, ok := c.SIFPath(key); ok {
			rep.Infof("Using cached SIF for %s", img.Digest)
			if err := copyInto(cached, out, opts.Force); err != nil {
				return Result{}, err
			}
			return result(out, true)
		}
	}
	if err := img.Fetch(ctx); err != nil {
		return Result{}, err
	}
	fopts, labels, err := flattenOptions(img, src, opts)
	if err != nil {
		return Result{}, err
	}
	if opts.Sandbox {
		err = buildSandbox(ctx, img, fopts, out, opts, rep)
	} else {
		err = buildSIF(ctx, img, fopts, labels, out, opts, rep)
	}
	if err != nil {
		return Result{}, err
	}
	if key != "" {
		// A failure to cache costs the next pull time, not this one its result.
		if err := c.PutSIF(key, out); err != nil {
			rep.Infof("not caching the SIF: %v", err)
		}
	}
	return result(out, false)
}

func result(out string, cached bool) (Result, error) {
	fi, err := os.Stat(out)
	if err != nil {
		return Result{}, fmt.Errorf("stat %s: %w", out, err)
	}
	return Result{Output: out, Size: fi.Size(), Cached: cached}, nil
}

// checkOutput refuses to replace an existing output without Force, before any download.
func checkOutput(out string, opts Options) error {
	fi, err := os.Lstat(out)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(out)); err != nil {
			return fmt.Errorf("output directory %s does not exist: %w", filepath.Dir(out), errdefs.ErrNotFound)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if !opts.Force {
		return fmt.Errorf("%s exists: use --force to replace it: %w", out, errdefs.ErrExists)
	}
	if opts.Sandbox && !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory: %w", out, errdefs.ErrExists)
	}
	if !opts.Sandbox && fi.IsDir() {
		return fmt.Errorf("%s is a directory: %w", out, errdefs.ErrExists)
	}
	return nil
}

// flattenOptions adds kerr's layout on top of the image, and mount points below it. A
// directory that already has a /.singularity.d (a Singularity sandbox) keeps its own.
func flattenOptions(img *source.Image, src ref.Source, opts Options) (flatten.Options, map[string]string, error) {
	now := time.Now()
	var cfg *v1.Config
	if img.Config != nil {
		cfg = &img.Config.Config
	}
	labels := sylayout.Labels(cfg, sylayout.Meta{Source: src.Raw, Bootstrap: img.Bootstrap, Arch: img.Arch, Created: now})
	layout, err := sylayout.Files(cfg, labels, now)
	if err != nil {
		return flatten.Options{}, nil, err
	}
	fo := flatten.Options{Warn: opts.Warn, KeepDevices: os.Geteuid() == 0}
	if src.Transport == ref.Directory {
		fo.Bottom = append(layout, sylayout.MountPoints(now)...)
	} else {
		fo.Top = layout
		fo.Bottom = sylayout.MountPoints(now)
	}
	return fo, labels, nil
}

func buildSIF(ctx context.Context, img *source.Image, fo flatten.Options, labels map[string]string, out string, opts Options, rep *progress.Reporter) error {
	dir, base := filepath.Split(out)
	sqfsFile, err := os.CreateTemp(dir, "."+base+".kerr-*.sqfs")
	if err != nil {
		return fmt.Errorf("create temporary squashfs in %s: %w", dir, errdefs.ClassifyIO(err))
	}
	sqfsPath := sqfsFile.Name()
	sqfsFile.Close()
	defer os.Remove(sqfsPath)

	rep.Infof("Creating squashfs root filesystem (%s)", opts.Compressor)
	w, err := squashfs.Create(ctx, sqfsPath, opts.Compressor)
	if err != nil {
		return err
	}
	_, ferr := flatten.Flatten(ctx, w, img.Layers(rep), fo)
	if ferr != nil {
		w.Abort()
		rep.Wait()
		return errdefs.ClassifyIO(ferr)
	}
	if err := w.Close(); err != nil {
		rep.Wait()
		return errdefs.ClassifyIO(err)
	}
	rep.Wait()

	sq, err := os.Open(sqfsPath)
	if err != nil {
		return fmt.Errorf("open squashfs: %w", err)
	}
	defer sq.Close()
	tmp, err := os.CreateTemp(dir, "."+base+".kerr-*.sif")
	if err != nil {
		return fmt.Errorf("create temporary SIF in %s: %w", dir, errdefs.ClassifyIO(err))
	}
	tmpSIF := tmp.Name()
	defer os.Remove(tmpSIF) // a no-op once it has its final name
	deffile := fmt.Sprintf("bootstrap: %s\nfrom: %s\n", img.Bootstrap, strings.TrimPrefix(opts.Source, img.Bootstrap+"://"))
	err = sifimage.WriteFile(tmp, sifimage.Contents{
		Squashfs: sq, Arch: img.Arch, Deffile: deffile, Labels: labels,
		OCIConfig: img.RawConfig, Created: time.Now(),
	})
	if err != nil {
		return errdefs.ClassifyIO(err)
	}
	if err := os.Chmod(tmpSIF, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmpSIF, err)
	}
	if err := replace(tmpSIF, out, opts.Force); err != nil {
		return err
	}
	return nil
}

func buildSandbox(ctx context.Context, img *source.Image, fo flatten.Options, out string, opts Options, rep *progress.Reporter) error {
	dir, base := filepath.Split(out)
	tmp, err := os.MkdirTemp(dir, "."+base+".kerr-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", out, errdefs.ClassifyIO(err))
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	rep.Infof("Writing sandbox %s", out)
	pr, pw := io.Pipe()
	ferr := make(chan error, 1)
	go func() {
		_, err := flatten.Flatten(ctx, pw, img.Layers(rep), fo)
		pw.CloseWithError(err)
		ferr <- err
	}()
	xerr := sandbox.Extract(ctx, pr, tmp, sandbox.Options{Warn: opts.Warn, Privileged: os.Geteuid() == 0})
	pr.CloseWithError(xerr)
	err = <-ferr
	rep.Wait()
	if err != nil {
		return errdefs.ClassifyIO(err)
	}
	if xerr != nil {
		return errdefs.ClassifyIO(xerr)
	}
	if opts.Force {
		if err := os.RemoveAll(out); err != nil {
			return fmt.Errorf("replace %s: %w", out, err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename %s: %w", out, err)
	}
	done = true
	return nil
}

// replace moves tmp to out; without force it fails if out appeared meanwhile.
func replace(tmp, out string, force bool) error {
	if force {
		if err := os.Rename(tmp, out); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
		return nil
	}
	// link+unlink: atomic and refuses to overwrite a file created while we built.
	if err := os.Link(tmp, out); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: use --force to replace it: %w", out, errdefs.ErrExists)
		}
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// copyInto copies a cached SIF to out through a temp file.
func copyInto(src, out string, force bool) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("read cached SIF: %w", err)
	}
	defer in.Close()
	dir, base := filepath.Split(out)
	tmp, err := os.CreateTemp(dir, "."+base+".kerr-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", out, errdefs.ClassifyIO(err))
	}
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err == nil {
		err = replace(tmp.Name(), out, force)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return errdefs.ClassifyIO(err)
	}
	return nil
}
