//go:build e2e

package e2e

import (
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
