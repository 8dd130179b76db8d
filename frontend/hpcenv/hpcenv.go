// Package hpcenv computes the environment of an HPC-mode container (`kerr exec|run|shell`)
// from the caller's, following Apptainer (internal/pkg/util/env in apptainer/apptainer:
// SetContainerEnv, with its alwaysPassKeys and alwaysOmitKeys, and the --env/--env-file
// handling of cmd/internal/cli/actions_linux.go):
//
//   - The caller's variables pass through, except HOME, PATH and LD_LIBRARY_PATH, kerr's,
//     Apptainer's and Singularity's own settings (KERR_*, APPTAINER_*, SINGULARITY_*), and the
//     override variables below. With --cleanenv (or --containall) only TERM and the proxy
//     variables (http_proxy, https_proxy, ftp_proxy, all_proxy, no_proxy, in both cases) pass,
//     and LANG is C.
//   - HOME is the home directory inside the container and PATH is DefaultPath; the image's
//     environment (/.singularity.d/env) may change both, as it may change every passed
//     variable: the host's values do not override the image's.
//   - Overrides win over the image's environment: KERRENV_X=v, APPTAINERENV_X=v and
//     SINGULARITYENV_X=v set X=v (in that order of precedence), a line X=v of --env-file wins
//     over those, and --env X=v over everything. PATH is special, as in Apptainer: X=PATH
//     replaces the image's PATH, X=PREPEND_PATH and X=APPEND_PATH add to it. HOME cannot be
//     overridden (--home sets it): such an override is dropped with a warning.
//
// The result travels in rpc/native.Config: the passed variables in Env, the overrides (one
// X=v per X, whatever prefix or flag set it) in EnvOverride. The starter sources the image's
// environment over Env, then applies EnvOverride: X=v for each, except PREPEND_PATH=v and
// APPEND_PATH=v, which put v before or after PATH's value with a colon (Apptainer's
// SING_USER_DEFINED_PREPEND_PATH and _APPEND_PATH).
//
// Privileges: none; the package only reads the lists and files it is given.
package hpcenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/kerr-hpc/kerr/errdefs"
)

// DefaultPath is PATH in the container before the image's environment changes it.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envPrefixes set variables in the container, highest precedence first.
var envPrefixes = []string{"KERRENV_", "APPTAINERENV_", "SINGULARITYENV_"}

// settingPrefixes are the runtimes' own settings: never passed through.
var settingPrefixes = []string{"KERR_", "APPTAINER_", "SINGULARITY_"}

// alwaysPass are passed even with --cleanenv (Apptainer's alwaysPassKeys).
var alwaysPass = map[string]bool{
	"TERM":       true,
	"http_proxy": true, "HTTP_PROXY": true,
	"https_proxy": true, "HTTPS_PROXY": true,
	"no_proxy": true, "NO_PROXY": true,
	"all_proxy": true, "ALL_PROXY": true,
	"ftp_proxy": true, "FTP_PROXY": true,
}

// alwaysOmit are never passed from the host; the value says whether an override may set
// them (Apptainer's alwaysOmitKeys; Apptainer overrides PATH through SING_USER_DEFINED_PATH).
var alwaysOmit = map[string]bool{
	"HOME":            false,
	"PATH":            true,
	"LD_LIBRARY_PATH": true,
}

// MaxFileSize bounds an --env-file.
const MaxFileSize = 1 << 20

// Options are the inputs of Compute.
type Options struct {
	// Host is the caller's environment (os.Environ()).
	Host []string
	// Clean: --cleanenv, or --containall.
	Clean bool
	// File holds the KEY=VALUE entries of --env-file (ParseFile), in order.
	File []string
	// Flags holds the --env KEY=VALUE entries (SplitFlag), in order; a later one wins.
	Flags []string
	// Home is HOME in the container.
	Home string
	// Runtime are variables the runtime sets (KERR_CONTAINER=…), placed before HOME and
	// PATH; the image's environment may change them like any passed variable.
	Runtime []string
}

// Result is the container's environment.
type Result struct {
	// Env: the passed variables, HOME and PATH (rpc/native.Config.Env).
	Env []string
	// Overrides: X=v, one per X, sorted (rpc/native.Config.EnvOverride).
	Overrides []string
	// Warnings to print: overrides that were dropped, or that lost to another one with a
	// different value.
	Warnings []string
}

// Compute computes the container's environment.
func Compute(o Options) Result {
	var env, warnings []string
	overrides := map[string]string{}
	from := map[string]string{} // key -> the variable that set it, for warnings
	set := func(key, value, source string) {
		if key == "" {
			return
		}
		if may, ok := alwaysOmit[key]; ok && !may {
			warnings = append(warnings, fmt.Sprintf("%s ignored: %s cannot be overridden (use --home)", source, key))
			return
		}
		overrides[key], from[key] = value, source
	}
	// The host's prefixed variables, lowest precedence first so that higher ones replace them.
	for i := len(envPrefixes) - 1; i >= 0; i-- {
		prefix := envPrefixes[i]
		for _, kv := range o.Host {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !strings.HasPrefix(k, prefix) {
				continue
			}
			key := k[len(prefix):]
			if old, seen := overrides[key]; seen && old != v && from[key] != k {
				warnings = append(warnings, fmt.Sprintf("%s ignored: %s sets %s", from[key], k, key))
			}
			set(key, v, k)
		}
	}
	for _, kv := range o.File {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v, "--env-file "+k)
	}
	for _, kv := range o.Flags {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v, "--env "+k)
	}

	for _, kv := range o.Host {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || hasPrefix(k, settingPrefixes) || hasPrefix(k, envPrefixes) {
			continue
		}
		if _, over := overrides[k]; over {
			continue
		}
		if alwaysPass[k] {
			env = append(env, kv)
			continue
		}
		if _, omit := alwaysOmit[k]; omit || o.Clean {
			continue
		}
		env = append(env, kv)
	}
	if _, over := overrides["LANG"]; o.Clean && !over {
		env = append(env, "LANG=C")
	}
	env = append(env, o.Runtime...)
	env = append(env, "HOME="+o.Home, "PATH="+DefaultPath)

	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res := Result{Env: env, Warnings: warnings}
	for _, k := range keys {
		res.Overrides = append(res.Overrides, k+"="+overrides[k])
	}
	sort.Strings(res.Warnings)
	return res
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// validName reports whether s is a shell variable name: [A-Za-z_][A-Za-z0-9_]*.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !alpha && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// SplitFlag checks one --env value and splits it into KEY=VALUE entries. A comma separates
// entries only where what follows it starts with another NAME=, so that `--env A=1,B=2`
// sets two variables (as Apptainer's comma lists do) while `--env OMP_PLACES=cores,threads`
// keeps its comma. Errors wrap errdefs.ErrUsage.
func SplitFlag(value string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(value, ",") {
		k, _, ok := strings.Cut(part, "=")
		if len(out) > 0 && !(ok && validName(k)) {
			out[len(out)-1] += "," + part
			continue
		}
		out = append(out, part)
	}
	for _, kv := range out {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !validName(k) {
			return nil, fmt.Errorf("--env %q: want NAME=VALUE, NAME a shell variable name: %w", value, errdefs.ErrUsage)
		}
		if strings.ContainsRune(kv, 0) {
			return nil, fmt.Errorf("--env %q: has a NUL byte: %w", value, errdefs.ErrUsage)
		}
	}
	return out, nil
}

// ParseFile reads an --env-file: one NAME=VALUE per line; blank lines and lines starting with
// # are skipped; a leading "export " is allowed; a value in matching single or double quotes
// loses them. Nothing else is interpreted (no expansion, no escapes, no continuation lines).
// A missing file wraps errdefs.ErrNotFound, a malformed line errdefs.ErrUsage with FILE:LINE.
func ParseFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--env-file %s: no such file: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("--env-file %s: larger than %d bytes: %w", path, MaxFileSize, errdefs.ErrUsage)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxFileSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !validName(k) {
			return nil, fmt.Errorf("%s:%d: want NAME=VALUE, NAME a shell variable name: %w", path, n, errdefs.ErrUsage)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%s:%d: a NUL byte: %w", path, n, errdefs.ErrUsage)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, k+"="+v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return out, nil
}
