package hpcenv

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

func TestCompute(t *testing.T) {
	tail := func(extra ...string) []string {
		return append([]string{"HOME=/h", "PATH=" + DefaultPath}, extra...)
	}
	over := func(extra ...string) []string { return extra }
	cases := []struct {
		name      string
		opts      Options
		want      []string
		overrides []string
		warnings  []string
	}{
		{
			name: "host variables pass, HOME PATH LD_LIBRARY_PATH and runtime settings do not",
			opts: Options{Host: []string{"FOO=1", "HOME=/home/me", "PATH=/host/bin", "LD_LIBRARY_PATH=/host/lib",
				"KERR_CACHEDIR=/c", "APPTAINER_BINDPATH=/x", "SINGULARITY_BIND=/y", "TERM=xterm", "EMPTY=", "BAR=a=b"}},
			want: append([]string{"FOO=1", "TERM=xterm", "EMPTY=", "BAR=a=b"}, tail()...),
		},
		{
			name: "cleanenv keeps TERM and proxies, sets LANG=C",
			opts: Options{Clean: true, Host: []string{"FOO=1", "TERM=xterm", "http_proxy=p", "NO_PROXY=n", "LANG=de_DE.UTF-8"}},
			want: append([]string{"TERM=xterm", "http_proxy=p", "NO_PROXY=n", "LANG=C"}, tail()...),
		},
		{
			name: "prefixes set overrides, KERRENV over APPTAINERENV over SINGULARITYENV",
			opts: Options{Host: []string{"SINGULARITYENV_A=s", "APPTAINERENV_A=a", "KERRENV_A=k",
				"SINGULARITYENV_B=s", "APPTAINERENV_B=a", "SINGULARITYENV_C=s", "A=host"}},
			want: tail(), overrides: over("A=k", "B=a", "C=s"),
			warnings: []string{"APPTAINERENV_A ignored: KERRENV_A sets A", "SINGULARITYENV_A ignored: APPTAINERENV_A sets A",
				"SINGULARITYENV_B ignored: APPTAINERENV_B sets B"},
		},
		{
			name: "same value under two prefixes: no warning",
			opts: Options{Host: []string{"SINGULARITYENV_A=x", "KERRENV_A=x"}},
			want: tail(), overrides: over("A=x"),
		},
		{
			name: "env-file over prefixes, --env over env-file, later --env wins",
			opts: Options{Host: []string{"KERRENV_A=k", "KERRENV_B=k", "KERRENV_C=k"},
				File: []string{"A=f", "B=f"}, Flags: []string{"A=e1", "A=e2"}},
			want: tail(), overrides: over("A=e2", "B=f", "C=k"),
		},
		{
			name: "HOME cannot be overridden; PATH and LD_LIBRARY_PATH can",
			opts: Options{Host: []string{"KERRENV_HOME=/x", "APPTAINERENV_PATH=/p", "SINGULARITYENV_LD_LIBRARY_PATH=/l", "KERRENV_PREPEND_PATH=/pre"}, Flags: []string{"HOME=/y"}},
			want: tail(), overrides: over("LD_LIBRARY_PATH=/l", "PATH=/p", "PREPEND_PATH=/pre"),
			warnings: []string{"--env HOME ignored: HOME cannot be overridden (use --home)", "KERRENV_HOME ignored: HOME cannot be overridden (use --home)"},
		},
		{
			name: "an overridden host variable is not passed as well",
			opts: Options{Host: []string{"FOO=host", "TERM=xterm", "KERRENV_FOO=k"}, Flags: []string{"TERM=dumb"}},
			want: tail(), overrides: over("FOO=k", "TERM=dumb"),
		},
		{
			name: "cleanenv with LANG overridden: no LANG=C",
			opts: Options{Clean: true, Host: []string{"KERRENV_LANG=en_US.UTF-8"}},
			want: tail(), overrides: over("LANG=en_US.UTF-8"),
		},
		{
			name: "runtime variables before HOME and PATH; an empty key after a prefix is dropped",
			opts: Options{Host: []string{"KERRENV_=x", "X=1"}, Runtime: []string{"KERR_CONTAINER=/i.sif"}},
			want: append([]string{"X=1", "KERR_CONTAINER=/i.sif"}, tail()...),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Home = "/h"
			r := Compute(tc.opts)
			if !slices.Equal(r.Env, tc.want) {
				t.Errorf("env\n got %q\nwant %q", r.Env, tc.want)
			}
			if !slices.Equal(r.Overrides, tc.overrides) {
				t.Errorf("overrides\n got %q\nwant %q", r.Overrides, tc.overrides)
			}
			if !slices.Equal(r.Warnings, tc.warnings) {
				t.Errorf("warnings\n got %q\nwant %q", r.Warnings, tc.warnings)
			}
		})
	}
}

func TestSplitFlag(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "A=1", want: []string{"A=1"}},
		{in: "A=1,B=2", want: []string{"A=1", "B=2"}},
		{in: "OMP_PLACES=cores,threads", want: []string{"OMP_PLACES=cores,threads"}},
		{in: "A=x,y,B=z,", want: []string{"A=x,y", "B=z,"}},
		{in: "A=", want: []string{"A="}},
		{in: "A==b", want: []string{"A==b"}},
		{in: "A", bad: true},
		{in: "=x", bad: true},
		{in: "1A=x", bad: true},
		{in: "A-B=x", bad: true},
		{in: "A=\x00", bad: true},
	}
	for _, tc := range cases {
		got, err := SplitFlag(tc.in)
		if tc.bad {
			if !errors.Is(err, errdefs.ErrUsage) {
				t.Errorf("SplitFlag(%q) = %q, %v; want a usage error", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitFlag(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env")
	content := "# a comment\n\nA=1\n  export B=two words  \nC=\"quoted\"\nD='single'\r\nE=\"unbalanced\nF=a=b\nG=\nexportH=1\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ParseFile(path)
	want := []string{"A=1", "B=two words", "C=quoted", "D=single", "E=\"unbalanced", "F=a=b", "G=", "exportH=1"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseFile = %q, %v; want %q", got, err, want)
	}

	if err := os.WriteFile(path, []byte("A=1\nnot a line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(path)
	if !errors.Is(err, errdefs.ErrUsage) || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("ParseFile of a bad line = %v; want a usage error at line 2", err)
	}

	_, err = ParseFile(filepath.Join(dir, "none"))
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ParseFile of a missing file = %v; want not found", err)
	}
}
