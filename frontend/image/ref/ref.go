// Package ref parses the image sources kerr accepts on its command line.
//
// A source is TRANSPORT:REST, as in Singularity and skopeo: docker://HOST/REPO[:TAG|@DIGEST],
// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE. `kerr build` also takes a plain
// local directory. Parsing is pure: nothing here touches the network or the disk.
package ref

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kerr-hpc/kerr/errdefs"
)

// Transport names where an image comes from.
type Transport string

// The transports kerr reads.
const (
	Docker        Transport = "docker"
	OCILayout     Transport = "oci"
	OCIArchive    Transport = "oci-archive"
	DockerArchive Transport = "docker-archive"
	Directory     Transport = "dir"
)

// Source is a parsed image source.
type Source struct {
	Transport Transport
	// Raw is the text the user gave, for messages.
	Raw string
	// Registry holds the parsed reference for Docker.
	Registry name.Reference
	// Path is the directory or file for the local transports.
	Path string
	// Tag selects an image in an OCI layout or archive; empty means "the only one".
	Tag string
}

// Parse reads a source. allowDir accepts a plain path as a local directory (kerr build).
// insecure lets a docker reference use plain http (name.Insecure).
func Parse(s string, allowDir, insecure bool) (Source, error) {
	src := Source{Raw: s}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok || strings.ContainsRune(transport, '/') {
		if allowDir && s != "" {
			src.Transport, src.Path = Directory, s
			return src, nil
		}
		return src, fmt.Errorf("%q is not an image source: want TRANSPORT:REFERENCE (docker://, oci:, oci-archive:, docker-archive:): %w", s, errdefs.ErrUsage)
	}
	switch Transport(transport) {
	case Docker:
		refStr, found := strings.CutPrefix(rest, "//")
		if !found || refStr == "" {
			return src, fmt.Errorf("malformed docker reference %q: want docker://[HOST/]REPO[:TAG|@DIGEST]: %w", s, errdefs.ErrUsage)
		}
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		r, err := name.ParseReference(refStr, opts...)
		if err != nil {
			return src, fmt.Errorf("malformed docker reference %q: %v: %w", s, err, errdefs.ErrUsage)
		}
		src.Transport, src.Registry = Docker, r
	case OCILayout, OCIArchive:
		rest = strings.TrimPrefix(rest, "//")
		p, tag := splitPathTag(rest)
		if p == "" {
			return src, fmt.Errorf("malformed %s reference %q: want %s:PATH[:TAG]: %w", transport, s, transport, errdefs.ErrUsage)
		}
		src.Transport, src.Path, src.Tag = Transport(transport), p, tag
	case DockerArchive:
		rest = strings.TrimPrefix(rest, "//")
		if rest == "" {
			return src, fmt.Errorf("malformed docker-archive reference %q: want docker-archive:FILE: %w", s, errdefs.ErrUsage)
		}
		src.Transport, src.Path = DockerArchive, rest
	default:
		if allowDir && !strings.Contains(s, "://") {
			// A local directory whose name happens to contain a colon.
			src.Transport, src.Path = Directory, s
			return src, nil
		}
		return src, fmt.Errorf("unknown transport %q in %q: kerr reads docker://, oci:, oci-archive:, docker-archive:: %w", transport, s, errdefs.ErrUsage)
	}
	return src, nil
}

// splitPathTag splits PATH[:TAG] at the last colon when what follows looks like a tag, so
// that a path with colons in a directory name still parses.
func splitPathTag(s string) (string, string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.ContainsRune(s[i+1:], '/') || s[i+1:] == "" {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// DefaultOutput is the SIF name `kerr pull` uses when none is given: NAME_TAG.sif, where NAME
// is the last element of the repository or path, and a digest reference uses the first 12 hex
// digits of the digest as its tag.
func (s Source) DefaultOutput() string {
	var base, tag string
	switch s.Transport {
	case Docker:
		repo := s.Registry.Context().RepositoryStr()
		base = repo[strings.LastIndexByte(repo, '/')+1:]
		switch r := s.Registry.(type) {
		case name.Tag:
			tag = r.TagStr()
		case name.Digest:
			hex := r.DigestStr()
			if _, h, ok := strings.Cut(hex, ":"); ok {
				hex = h
			}
			if len(hex) > 12 {
				hex = hex[:12]
			}
			tag = hex
		}
	default:
		base = filepath.Base(filepath.Clean(s.Path))
		for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
			base = strings.TrimSuffix(base, ext)
		}
		tag = s.Tag
	}
	if tag == "" {
		tag = "latest"
	}
	return sanitize(base) + "_" + sanitize(tag) + ".sif"
}

// sanitize keeps a file name component to characters that need no quoting in a shell.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "image" + string(b)
	}
	return string(b)
}
