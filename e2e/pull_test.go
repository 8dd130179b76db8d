//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
)

func TestPullDockerNamesOutputAfterRepoAndTag(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	res := s.Run(h.Root, "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	if strings.Contains(res.Stdout+res.Stderr, "\x1b") {
		t.Errorf("output has escape sequences without a tty:\n%s", res)
	}
	dir := s.Dir(h.Root)
	wantDir(t, dir, "busybox_latest.sif")
	si := checkSIF(t, filepath.Join(dir, "busybox_latest.sif"))
	checkConfig(t, si.config, "amd64")
	if si.labels[fixture.LabelKey] != fixture.LabelValue {
		t.Errorf("labels descriptor %v lacks %s=%s", si.labels, fixture.LabelKey, fixture.LabelValue)
	}
}

func TestPullWithoutTagMeansLatest(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "pull", "--insecure", "docker://"+h.Registry.Addr+"/busybox").OK(t)
	wantDir(t, s.Dir(h.Root), "busybox_latest.sif")
}

func TestPullNestedRepoNamesOutputAfterLastElement(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img, err := fixture.Image(fixture.Spec{Docker: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.Push(h.Registry.Addr, "e2e/nested/tool", "v1.2", img, nil); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "pull", "--insecure", "docker://"+h.Registry.Addr+"/e2e/nested/tool:v1.2").OK(t)
	wantDir(t, s.Dir(h.Root), "tool_v1.2.sif")
}

func TestPullByDigestNamesOutputAfterDigest(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	d := h.Images.Busybox.Digest
	s.Run(h.Root, "pull", "--insecure", "docker://"+h.Registry.Addr+"/busybox@"+d.String()).OK(t)
	name := "busybox_" + d.Hex[:12] + ".sif"
	wantDir(t, s.Dir(h.Root), name)
	checkSIF(t, filepath.Join(s.Dir(h.Root), name))
}

func TestPullExplicitOutput(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Mkdir(h.Root, "out"), "my.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.OCI)).OK(t)
	wantDir(t, filepath.Dir(out), "my.sif")
	wantDir(t, s.Dir(h.Root))
	checkSIF(t, out)
}

func TestPullAppliesWhiteoutsAndOpaqueDirs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "multi.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Multi)).OK(t)
	si := checkSIF(t, out)
	checkWhiteouts(t, si.entries)
	if len(si.config.RootFS.DiffIDs) != 2 {
		t.Errorf("config has %d diff_ids, want the 2 layers", len(si.config.RootFS.DiffIDs))
	}
}

func TestPullRunscriptRunsEntrypointWithEnv(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "busybox.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Busybox)).OK(t)
	si := checkSIF(t, out)
	checkRuns(t, extract(t, s, si))
}

func TestPullZstdLayers(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "zstd.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Zstd)).OK(t)
	si := checkSIF(t, out)
	checkConfig(t, si.config, "amd64")
	checkRuns(t, extract(t, s, si))
}

func TestPullIndexPicksPlatform(t *testing.T) {
	for _, tc := range []struct{ name, arch string }{{"host", ""}, {"amd64", "amd64"}, {"arm64", "arm64"}} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			out := filepath.Join(s.Dir(h.Root), "index.sif")
			args := []string{"pull", "--insecure"}
			want := "amd64"
			if tc.arch != "" {
				args = append(args, "--arch", tc.arch)
				want = tc.arch
			}
			s.Run(h.Root, append(args, out, h.Ref(h.Images.Index))...).OK(t)
			si := checkSIF(t, out)
			checkConfig(t, si.config, want)
			if got := strings.TrimSpace(si.cat(t, fixture.ArchFile)); got != want {
				t.Errorf("rootfs is from the %s image, want %s", got, want)
			}
		})
	}
}

func TestPullLocalSources(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"oci", "oci:" + h.Images.Layout},
		{"oci-tag", "oci:" + h.Images.Layout + ":latest"},
		{"oci-archive", "oci-archive:" + h.Images.OCIArchive},
		{"oci-archive-tag", "oci-archive:" + h.Images.OCIArchive + ":latest"},
		{"docker-archive", "docker-archive:" + h.Images.DockerArchive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			out := filepath.Join(s.Dir(h.Root), "local.sif")
			s.Run(h.Root, "pull", out, tc.src).OK(t)
			wantDir(t, s.Dir(h.Root), "local.sif")
			si := checkSIF(t, out)
			checkConfig(t, si.config, "amd64")
		})
	}
}

func TestPullOutputExistsWithoutForceLeavesItAlone(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "busybox_latest.sif")
	if err := os.WriteFile(out, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(out)
	s.Run(h.Root, "pull", "--insecure", h.Ref(h.Images.Busybox)).Fails(t, 3)
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Busybox)).Fails(t, 3)
	b, err := os.ReadFile(out)
	after, _ := os.Stat(out)
	if err != nil || string(b) != "precious\n" || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("existing output was touched: %q %v", b, err)
	}
	wantDir(t, s.Dir(h.Root), "busybox_latest.sif")
}

func TestPullForceReplacesOutput(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "busybox_latest.sif")
	if err := os.WriteFile(out, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "pull", "--force", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	wantDir(t, s.Dir(h.Root), "busybox_latest.sif")
	checkSIF(t, out)
}

func TestPullQuietPrintsNothing(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	res := s.Run(h.Root, "--quiet", "pull", "--insecure", h.Ref(h.Images.Multi)).OK(t)
	if res.Stdout != "" || res.Stderr != "" {
		t.Errorf("--quiet printed something:\n%s", res)
	}
	wantDir(t, s.Dir(h.Root), "multi_latest.sif")
}

func TestPullProgressIsPlainLinesWithoutTTY(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	res := s.Run(h.Root, "pull", "--insecure", h.Ref(h.Images.Multi)).OK(t)
	all := res.Stdout + res.Stderr
	if strings.ContainsAny(all, "\x1b\r") {
		t.Errorf("progress uses escape sequences or carriage returns without a tty:\n%q", all)
	}
}

func TestPullDebugStillSucceeds(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "--debug", "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	checkSIF(t, filepath.Join(s.Dir(h.Root), "busybox_latest.sif"))
}
