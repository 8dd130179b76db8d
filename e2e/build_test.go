//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBuildSIFFromRegistry(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "multi.sif")
	s.Run(h.Root, "build", "--insecure", out, h.Ref(h.Images.Multi)).OK(t)
	wantDir(t, s.Dir(h.Root), "multi.sif")
	si := checkSIF(t, out)
	checkWhiteouts(t, si.entries)
	checkConfig(t, si.config, "amd64")
}

func TestBuildSandboxFromRegistryRuns(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sb := filepath.Join(s.Dir(h.Root), "sandbox")
	s.Run(h.Root, "build", "--sandbox", "--insecure", sb, h.Ref(h.Images.Multi)).OK(t)
	entries := sandboxEntries(t, sb)
	checkLayout(t, entries)
	checkWhiteouts(t, entries)
	checkRuns(t, sb)
}

func TestBuildSIFFromSandboxDir(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sb := filepath.Join(s.Dir(h.Root), "sandbox")
	s.Run(h.Root, "build", "--sandbox", "--insecure", sb, h.Ref(h.Images.Multi)).OK(t)
	out := filepath.Join(s.Dir(h.Root), "fromdir.sif")
	s.Run(h.Root, "build", out, sb).OK(t)
	si := checkSIFFromDir(t, out)
	checkWhiteouts(t, si.entries)
	checkRuns(t, extract(t, s, si))
}

func TestBuildLocalSources(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"oci", "oci:" + h.Images.Layout + ":latest"},
		{"oci-archive", "oci-archive:" + h.Images.OCIArchive},
		{"docker-archive", "docker-archive:" + h.Images.DockerArchive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			out := filepath.Join(s.Dir(h.Root), "local.sif")
			s.Run(h.Root, "build", out, tc.src).OK(t)
			wantDir(t, s.Dir(h.Root), "local.sif")
			checkConfig(t, checkSIF(t, out).config, "amd64")
		})
	}
}

func TestBuildIndexArch(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "arm64.sif")
	s.Run(h.Root, "build", "--insecure", "--arch", "arm64", out, h.Ref(h.Images.Index)).OK(t)
	checkConfig(t, checkSIF(t, out).config, "arm64")
}

func TestBuildExistingSIFNeedsForce(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "out.sif")
	if err := os.WriteFile(out, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "build", "--insecure", out, h.Ref(h.Images.Busybox)).Fails(t, exitExists)
	if b, _ := os.ReadFile(out); string(b) != "precious\n" {
		t.Errorf("existing output was touched: %q", b)
	}
	wantDir(t, s.Dir(h.Root), "out.sif")
	s.Run(h.Root, "build", "--force", "--insecure", out, h.Ref(h.Images.Busybox)).OK(t)
	wantDir(t, s.Dir(h.Root), "out.sif")
	checkSIF(t, out)
}

func TestBuildExistingSandboxNeedsForce(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sb := filepath.Join(s.Dir(h.Root), "sandbox")
	marker := filepath.Join(sb, "marker")
	if err := os.Mkdir(sb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "build", "--sandbox", "--insecure", sb, h.Ref(h.Images.Busybox)).Fails(t, exitExists)
	wantDir(t, sb, "marker")
	s.Run(h.Root, "build", "--sandbox", "--force", "--insecure", sb, h.Ref(h.Images.Busybox)).OK(t)
	if _, err := os.Lstat(marker); err == nil {
		t.Errorf("--force kept the old sandbox's content (%s)", marker)
	}
	checkLayout(t, sandboxEntries(t, sb))
	wantDir(t, s.Dir(h.Root), "sandbox")
}

func TestBuildQuietPrintsNothing(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	res := s.Run(h.Root, "--quiet", "build", "--insecure", filepath.Join(s.Dir(h.Root), "q.sif"), h.Ref(h.Images.Busybox)).OK(t)
	if res.Stdout != "" || res.Stderr != "" {
		t.Errorf("--quiet printed something:\n%s", res)
	}
}

func TestBuildMissingSourceDirExits4(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "build", filepath.Join(s.Dir(h.Root), "x.sif"), filepath.Join(s.Base(), "no-such-dir")).Fails(t, exitMissing)
	wantDir(t, s.Dir(h.Root))
}
