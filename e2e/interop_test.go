//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// singularityStyleSIF builds a SIF the way Singularity's own pipeline lays one out, with
// other tools than kerr's: a root filesystem directory carrying its own /.singularity.d,
// squashed by mksquashfs, assembled by siftool (definition file, labels, squashfs partition,
// no OCI config). It returns the SIF's path.
func singularityStyleSIF(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	files := map[string]string{
		".singularity.d/runscript":             "#!/bin/sh\necho \"singularity runscript X=$X args=$*\"\n",
		".singularity.d/actions/run":           "#!/bin/sh\nfor f in /.singularity.d/env/*.sh; do . \"$f\"; done\nexec /.singularity.d/runscript \"$@\"\n",
		".singularity.d/actions/exec":          "#!/bin/sh\nfor f in /.singularity.d/env/*.sh; do . \"$f\"; done\nexec \"$@\"\n",
		".singularity.d/env/90-environment.sh": "#!/bin/sh\nexport X=from-singularity\n",
		".singularity.d/labels.json":           "{\"org.example.built-by\": \"singularity\"}\n",
		"etc/passwd":                           "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":                            "root:x:0:\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", ".singularity.d/libs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin/busybox")).Run(); err != nil {
		t.Fatalf("copy busybox: %v", err)
	}
	if err := os.Symlink("busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".singularity.d/runscript", filepath.Join(root, "singularity")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".singularity.d/env/90-environment.sh", filepath.Join(root, "environment")); err != nil {
		t.Fatal(err)
	}
	sqfs := filepath.Join(dir, "rootfs.sqfs")
	def := filepath.Join(dir, "image.def")
	labels := filepath.Join(dir, "labels.json")
	sif := filepath.Join(dir, "singularity.sif")
	if err := os.WriteFile(def, []byte("bootstrap: localimage\nfrom: rootfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(labels, []byte(`{"org.label-schema.schema-version":"1.0","org.example.built-by":"singularity"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mksquashfs", root, sqfs, "-comp", "gzip", "-noappend", "-all-root", "-quiet", "-no-progress"},
		{"siftool", "new", sif},
		{"siftool", "add", sif, def, "--datatype", "1"},
		{"siftool", "add", sif, labels, "--datatype", "3"},
		{"siftool", "add", sif, sqfs, "--datatype", "4", "--parttype", "2", "--partfs", "1", "--partarch", "2"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.Chmod(sif, 0o755); err != nil {
		t.Fatal(err)
	}
	return sif
}

// A SIF laid out by Singularity's tools (no OCI config, its own /.singularity.d) is read by
// kerr inspect and turned into a bundle whose process is the image's run action.
func TestSingularityStyleSIFInspectAndMount(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := singularityStyleSIF(t, s.Mkdir(h.Root, "singularity"))

	r := s.Run(h.Root, "inspect", "--json", sif)
	r.OK(t)
	var ins struct {
		Labels      map[string]string `json:"labels"`
		Runscript   string            `json:"runscript"`
		Environment string            `json:"environment"`
		Config      json.RawMessage   `json:"config"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &ins); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.Stdout)
	}
	if ins.Labels["org.example.built-by"] != "singularity" || !strings.Contains(ins.Runscript, "singularity runscript") ||
		!strings.Contains(ins.Environment, "X=from-singularity") || string(ins.Config) != "null" {
		t.Errorf("inspect of a Singularity-style SIF: %+v", ins)
	}
	s.Run(h.Root, "sif", "list", sif).OK(t)

	bundle := filepath.Join(s.Dir(h.Root), "bundle")
	s.Run(h.Root, "oci", "mount", sif, bundle).OK(t)
	defer func() { // only when the test stopped before its own umount
		if _, err := os.Stat(bundle); err == nil {
			s.Run(h.Root, "oci", "umount", "--force", bundle)
		}
	}()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Process == nil || !slices.Equal(spec.Process.Args, []string{"/.singularity.d/actions/run"}) {
		t.Fatalf("process of a SIF without OCI config: %+v", spec.Process)
	}
	if got := inRootfs(t, filepath.Join(bundle, "rootfs"), append(spec.Process.Args, "a", "b")...); strings.TrimSpace(got) != "singularity runscript X=from-singularity args=a b" {
		t.Errorf("the image's run action printed %q", got)
	}
	s.Run(h.Root, "oci", "umount", bundle).OK(t)
}
