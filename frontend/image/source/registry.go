package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
	"github.com/kerr-hpc/kerr/frontend/image/ref"
)

// parallelDownloads is how many layers are fetched at once: enough to hide a registry's
// latency, few enough not to starve the squashfs compressor of CPU on small nodes.
const parallelDownloads = 3

func resolveRegistry(ctx context.Context, src ref.Source, opts Options) (*Image, error) {
	if opts.Cache == nil {
		return nil, errors.New("internal error: a registry pull needs a cache")
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: opts.arch()}),
	}
	if opts.UserAgent != "" {
		ropts = append(ropts, remote.WithUserAgent(opts.UserAgent))
	}
	if opts.Username != "" || opts.Password != "" {
		ropts = append(ropts, remote.WithAuth(&authn.Basic{Username: opts.Username, Password: opts.Password}))
	} else {
		ropts = append(ropts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if opts.Insecure {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
		ropts = append(ropts, remote.WithTransport(tr))
	}
	desc, err := remote.Get(src.Registry, ropts...)
	if err != nil {
		return nil, registryError(src.Raw, err)
	}
	rimg, err := desc.Image()
	if err != nil {
		if strings.Contains(err.Error(), "no child with platform") {
			return nil, fmt.Errorf("%s has no image for linux/%s: %w", src.Raw, opts.arch(), errdefs.ErrNotFound)
		}
		return nil, registryError(src.Raw, err)
	}
	img := &Image{Bootstrap: "docker"}
	if img.Digest, err = rimg.Digest(); err != nil {
		return nil, registryError(src.Raw, err)
	}
	if img.RawConfig, err = configBlob(rimg, opts); err != nil {
		return nil, registryError(src.Raw, err)
	}
	if img.Config, err = v1.ParseConfigFile(strings.NewReader(string(img.RawConfig))); err != nil {
		return nil, fmt.Errorf("%s: image config: %v: %w", src.Raw, err, errdefs.ErrInvalidImage)
	}
	img.Arch = archOf(img.Config, opts.arch())
	layers, err := rimg.Layers()
	if err != nil {
		return nil, registryError(src.Raw, err)
	}
	type pending struct {
		l      v1.Layer
		digest v1.Hash
		size   int64
	}
	var missing []pending
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, registryError(src.Raw, err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, registryError(src.Raw, err)
		}
		img.CompressedSize += size
		path, ok := opts.Cache.BlobPath(d)
		if !ok {
			missing = append(missing, pending{l, d, size})
		}
		img.layers = append(img.layers, layer{open: openFile(path), size: size})
	}
	if len(missing) == 0 {
		return img, nil
	}
	img.fetch = func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(parallelDownloads)
		for _, m := range missing {
			g.Go(func() error {
				if err := ctx.Err(); err != nil {
					return err
				}
				task := startTask(opts.Progress, "Fetching "+short(m.digest), m.size)
				err := download(opts, m.l, m.digest, m.size, task)
				task.Done(err)
				if err != nil {
					return registryError(src.Raw, err)
				}
				return nil
			})
		}
		return g.Wait()
	}
	return img, nil
}

// configBlob returns the image's config from the cache, or fetches and caches it: a pull of
// an image already pulled then costs one manifest request and nothing else.
func configBlob(rimg v1.Image, opts Options) ([]byte, error) {
	m, err := rimg.Manifest()
	if err != nil {
		return nil, err
	}
	d := m.Config.Digest
	if p, ok := opts.Cache.BlobPath(d); ok {
		if b, err := os.ReadFile(p); err == nil {
			return b, nil
		}
	}
	raw, err := rimg.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if _, err := opts.Cache.PutBlob(d, m.Config.Size, bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	return raw, nil
}

func download(opts Options, l v1.Layer, d v1.Hash, size int64, task *progress.Task) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = opts.Cache.PutBlob(d, size, task.Reader(rc))
	return err
}

func startTask(rep *progress.Reporter, name string, size int64) *progress.Task {
	if rep == nil {
		return &progress.Task{}
	}
	return rep.Start(name, size)
}

func short(d v1.Hash) string {
	if len(d.Hex) > 12 {
		return d.Algorithm + ":" + d.Hex[:12]
	}
	return d.String()
}

// archOf is the architecture the config declares, else the one asked for.
func archOf(cfg *v1.ConfigFile, fallback string) string {
	if cfg != nil && cfg.Architecture != "" {
		return cfg.Architecture
	}
	return fallback
}

// registryError classifies a registry failure by its cause, keeping the registry's words.
func registryError(what string, err error) error {
	if errors.Is(err, errdefs.ErrInvalidImage) || errors.Is(err, errdefs.ErrNoSpace) || errors.Is(err, context.Canceled) {
		return err
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		msg := strings.TrimSpace(terr.Error())
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%s: access denied (%d): %s: %w", what, terr.StatusCode, msg, errdefs.ErrDenied)
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%s: not found: %s: %w", what, msg, errdefs.ErrNotFound)
		case terr.StatusCode >= 500:
			return fmt.Errorf("%s: registry error %d: %s: %w", what, terr.StatusCode, msg, errdefs.ErrUnavailable)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%s: not found: %s: %w", what, msg, errdefs.ErrNotFound)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%s: access denied: %s: %w", what, msg, errdefs.ErrDenied)
			}
		}
		return fmt.Errorf("%s: %s", what, msg)
	}
	// go-containerregistry checks what it reads against the manifest; its checks have no
	// exported error type, so they are recognised by their words.
	if msg := err.Error(); strings.Contains(msg, "error verifying") || strings.Contains(msg, "does not match expected size") {
		return fmt.Errorf("%s: blob is corrupt or truncated: %v: %w", what, err, errdefs.ErrInvalidImage)
	}
	var nerr net.Error
	var operr *net.OpError
	if errors.As(err, &operr) || errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: registry unreachable: %v: %w", what, err, errdefs.ErrUnavailable)
	}
	if strings.Contains(err.Error(), "http: server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%s: the registry speaks plain http; use --insecure to allow it: %w", what, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}
