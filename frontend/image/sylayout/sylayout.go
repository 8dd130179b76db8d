// Package sylayout makes the /.singularity.d layout that Singularity and Apptainer images carry,
// so that a SIF built by kerr runs in them and theirs run in kerr.
//
// The layout is what those runtimes read from inside an image: env/*.sh sourced in order
// before the payload, runscript and startscript, labels.json, the action scripts and the
// compatibility links /environment and /singularity. The scripts are POSIX sh so that
// busybox images work; the values of an OCI image (ENV, ENTRYPOINT, CMD, labels) are written
// with single-quote escaping so that no value can inject shell code.
package sylayout

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/frontend/image/flatten"
)

// Dir is the layout's directory inside the root filesystem.
const Dir = ".singularity.d"

// Meta is what the layout records about where an image came from.
type Meta struct {
	Source    string    // e.g. docker://busybox:latest
	Bootstrap string    // the transport name, as Singularity's deffile bootstrap
	Arch      string    // GOARCH of the image
	Created   time.Time // build time
}

// Labels returns the labels a SIF built from cfg carries: the image's own labels plus the
// label-schema keys Singularity records, which `inspect` in all three runtimes shows.
func Labels(cfg *v1.Config, m Meta) map[string]string {
	l := map[string]string{}
	if cfg != nil {
		maps.Copy(l, cfg.Labels)
	}
	arch := m.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	l["org.label-schema.schema-version"] = "1.0"
	l["org.label-schema.build-arch"] = arch
	l["org.label-schema.build-date"] = m.Created.UTC().Format(time.RFC3339)
	if m.Bootstrap != "" {
		l["org.label-schema.usage.singularity.deffile.bootstrap"] = m.Bootstrap
	}
	if m.Source != "" {
		l["org.label-schema.usage.singularity.deffile.from"] = m.Source
	}
	return l
}

// Files returns the layout as tar entries for an image with OCI config cfg (nil for a
// directory without one) and labels. Entries are relative paths without a leading slash.
func Files(cfg *v1.Config, labels map[string]string, mtime time.Time) ([]flatten.Entry, error) {
	labelsJSON, err := json.MarshalIndent(labels, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode labels: %w", err)
	}
	var env []string
	var entrypoint, cmd []string
	if cfg != nil {
		env, entrypoint, cmd = cfg.Env, cfg.Entrypoint, cfg.Cmd
	}
	b := builder{mtime: mtime}
	b.dir(Dir)
	b.dir(Dir + "/actions")
	b.dir(Dir + "/env")
	b.dir(Dir + "/libs")
	b.script(Dir+"/actions/exec", actionExec)
	b.script(Dir+"/actions/run", actionRun)
	b.script(Dir+"/actions/shell", actionShell)
	b.script(Dir+"/actions/start", actionStart)
	b.script(Dir+"/actions/test", actionTest)
	b.script(Dir+"/env/01-base.sh", envBase)
	b.script(Dir+"/env/10-docker2singularity.sh", DockerEnv(env))
	b.script(Dir+"/env/90-environment.sh", envUser)
	b.script(Dir+"/env/94-appsbase.sh", envApps)
	b.script(Dir+"/env/95-apps.sh", envApps)
	b.script(Dir+"/env/99-base.sh", envPrompt)
	b.script(Dir+"/env/99-runtimevars.sh", envRuntime)
	b.script(Dir+"/runscript", Runscript(entrypoint, cmd))
	b.script(Dir+"/startscript", startscript)
	b.file(Dir+"/labels.json", append(labelsJSON, '\n'), 0o644)
	b.link("environment", Dir+"/env/90-environment.sh")
	b.link("singularity", Dir+"/runscript")
	// Singularity 2 called the actions through these links; old job scripts still do.
	for _, a := range []string{"exec", "run", "shell", "test"} {
		b.link("."+a, Dir+"/actions/"+a)
	}
	return b.out, nil
}

// MountPoints returns the directories and files a runtime binds over at start, for images
// that lack them: without a target, a read-only image cannot take the bind.
func MountPoints(mtime time.Time) []flatten.Entry {
	b := builder{mtime: mtime}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "var", "var/tmp", "home", "root", "mnt", "srv", "opt", "etc"} {
		mode := int64(0o755)
		if d == "tmp" || d == "var/tmp" {
			mode = 0o1777
		}
		if d == "root" {
			mode = 0o700
		}
		b.add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode}, nil)
	}
	for _, f := range []string{"etc/hosts", "etc/resolv.conf", "etc/localtime", "etc/passwd", "etc/group"} {
		b.file(f, nil, 0o644)
	}
	return b.out
}

// Runscript is the runscript for an OCI image: ENTRYPOINT followed by CMD, where arguments
// given to `run` replace CMD, as `docker run IMAGE ARGS` does. Without either it starts a shell.
func Runscript(entrypoint, cmd []string) string {
	var s strings.Builder
	s.WriteString("#!/bin/sh\n# Written by kerr from the image's ENTRYPOINT and CMD.\n")
	if len(entrypoint) == 0 && len(cmd) == 0 {
		s.WriteString("# The image names no program: start a shell, passing the arguments on.\nexec /bin/sh \"$@\"\n")
		return s.String()
	}
	if len(cmd) > 0 {
		fmt.Fprintf(&s, "if [ \"$#\" -eq 0 ]; then\n\tset -- %s\nfi\n", quoteAll(cmd))
	}
	if len(entrypoint) > 0 {
		fmt.Fprintf(&s, "set -- %s \"$@\"\n", quoteAll(entrypoint))
	}
	s.WriteString("exec \"$@\"\n")
	return s.String()
}

// DockerEnv turns an image's ENV into shell exports. The image's values win over what the
// host passes through (as in Docker); KERRENV_/SINGULARITYENV_ variables are applied later by
// the runtime and win over both. Entries without '=' or with an invalid name are skipped.
func DockerEnv(env []string) string {
	var s strings.Builder
	s.WriteString("#!/bin/sh\n# Written by kerr from the image's ENV.\n")
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validName(k) {
			continue
		}
		fmt.Fprintf(&s, "export %s=%s\n", k, Quote(v))
	}
	return s.String()
}

// Quote returns s as one single-quoted shell word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

func validName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

type builder struct {
	mtime time.Time
	out   []flatten.Entry
}

func (b *builder) add(h *tar.Header, data []byte) {
	h.ModTime = b.mtime
	h.Format = tar.FormatPAX
	h.Size = int64(len(data))
	b.out = append(b.out, flatten.Entry{Header: h, Data: data})
}

func (b *builder) dir(name string) {
	b.add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755}, nil)
}

func (b *builder) file(name string, data []byte, mode int64) {
	b.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, slices.Clone(data))
}

func (b *builder) script(name, text string) { b.file(name, []byte(text), 0o755) }

func (b *builder) link(name, target string) {
	b.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}
