//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionPrintsOneLine(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	res := s.Run(h.Root, "--version").OK(t)
	if out := strings.TrimSpace(res.Stdout); out == "" || strings.Contains(out, "\n") {
		t.Errorf("--version should print one line:\n%s", res)
	}
}

func TestInstallLayout(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(h.Prefix, "bin", "kerr"), 0o755},
		{filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter"), 0o755},
		{filepath.Join(h.Prefix, "libexec", "kerr", "bin", "starter-suid"), os.ModeSetuid | 0o755},
	} {
		info, err := os.Stat(tc.path)
		if err != nil {
			t.Errorf("install lacks %s: %v", tc.path, err)
			continue
		}
		if got := info.Mode() & (os.ModePerm | os.ModeSetuid); got != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, got, tc.mode)
		}
		if uid := owner(t, tc.path); uid != 0 {
			t.Errorf("%s is owned by uid %d, want root", tc.path, uid)
		}
	}
}
