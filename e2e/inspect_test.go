//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// pullMulti pulls the multi-layer fixture as root and checks the SIF.
func pullMulti(t *testing.T, s *harness.Session) *sifImage {
	t.Helper()
	out := filepath.Join(s.Dir(h.Root), "multi.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Multi)).OK(t)
	return checkSIF(t, out)
}

func TestInspectJSON(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	si := pullMulti(t, s)
	res := s.Run(h.Root, "inspect", "--json", si.path).OK(t)

	dec := json.NewDecoder(strings.NewReader(res.Stdout))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("inspect --json is not a JSON object: %v\n%s", err, res.Stdout)
	}
	if dec.More() {
		t.Errorf("inspect --json printed more than one JSON value:\n%s", res.Stdout)
	}
	for _, k := range []string{"labels", "runscript", "environment", "config"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("inspect --json lacks key %q:\n%s", k, res.Stdout)
		}
	}
	var out inspectOutput
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		t.Fatalf("inspect --json has the wrong types (labels object of strings, runscript and environment strings, config object): %v", err)
	}

	var labelsFile map[string]string
	if err := json.Unmarshal([]byte(si.cat(t, "/.singularity.d/labels.json")), &labelsFile); err != nil {
		t.Errorf("/.singularity.d/labels.json is not a JSON object of strings: %v", err)
	}
	if out.Labels[fixture.LabelKey] != fixture.LabelValue {
		t.Errorf("labels %v lack %s=%s", out.Labels, fixture.LabelKey, fixture.LabelValue)
	}
	if !maps.Equal(out.Labels, labelsFile) {
		t.Errorf("inspect labels %v differ from /.singularity.d/labels.json %v", out.Labels, labelsFile)
	}
	if out.Runscript == nil || strings.TrimSpace(*out.Runscript) != strings.TrimSpace(si.cat(t, "/.singularity.d/runscript")) {
		t.Errorf("inspect runscript differs from /.singularity.d/runscript:\n%v", out.Runscript)
	}
	if out.Environment == nil || !strings.Contains(*out.Environment, "FOO") || !strings.Contains(*out.Environment, "bar") {
		t.Errorf("inspect environment does not set FOO=bar:\n%v", out.Environment)
	}
	if out.Config == nil {
		t.Fatal("inspect config is null")
	}
	checkConfig(t, *out.Config, "amd64")
}

func TestInspectText(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	si := pullMulti(t, s)
	res := s.Run(h.Root, "inspect", si.path).OK(t)
	for _, want := range []string{fixture.LabelKey, fixture.LabelValue, "FOO", fixture.WorkingDir, fixture.User} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, res.Stdout)
		}
	}
	for line := range strings.SplitSeq(si.cat(t, "/.singularity.d/runscript"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.Contains(res.Stdout, line) {
			t.Errorf("inspect output lacks runscript line %q:\n%s", line, res.Stdout)
		}
	}
}

func TestInspectDebugStillSucceeds(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	si := pullMulti(t, s)
	s.Run(h.Root, "--debug", "inspect", si.path).OK(t)
}

func TestSIFListInfoDump(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	si := pullMulti(t, s)
	f, err := sif.LoadContainerFromPath(si.path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer f.UnloadContainer()
	descs, err := f.GetDescriptors()
	if err != nil || len(descs) < 3 {
		t.Fatalf("want at least 3 descriptors (rootfs, config, labels), got %d: %v", len(descs), err)
	}

	list := s.Run(h.Root, "sif", "list", si.path).OK(t)
	lines := strings.Split(strings.TrimSpace(list.Stdout), "\n")
	header := slices.IndexFunc(lines, func(l string) bool {
		f := strings.Fields(strings.ToUpper(strings.ReplaceAll(l, "|", " ")))
		return slices.Contains(f, "ID") && slices.Contains(f, "TYPE") && slices.Contains(f, "OFFSET")
	})
	if header < 0 {
		t.Fatalf("sif list has no table header with ID, TYPE and OFFSET:\n%s", list.Stdout)
	}
	for _, d := range descs {
		id, off := strconv.FormatUint(uint64(d.ID()), 10), strconv.FormatInt(d.Offset(), 10)
		found := false
		for _, l := range lines[header+1:] {
			f := strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' || r == '|' })
			if len(f) > 0 && f[0] == id && strings.Contains(l, off) {
				found = true
			}
		}
		if !found {
			t.Errorf("sif list has no row for descriptor %s at offset %s:\n%s", id, off, list.Stdout)
		}

		info := s.Run(h.Root, "sif", "info", id, si.path).OK(t)
		for _, want := range []string{off, strconv.FormatInt(d.Size(), 10)} {
			if !strings.Contains(info.Stdout, want) {
				t.Errorf("sif info %s lacks %s (offset %d, size %d):\n%s", id, want, d.Offset(), d.Size(), info.Stdout)
			}
		}

		dump := s.Run(h.Root, "sif", "dump", id, si.path).OK(t)
		data, err := d.GetData()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sha256.Sum256([]byte(dump.Stdout)), sha256.Sum256(data); !bytes.Equal(got[:], want[:]) {
			t.Errorf("sif dump %s: %d bytes differing from the descriptor's %d", id, len(dump.Stdout), len(data))
		}
	}

	res := s.Run(h.Root, "sif", "info", "999", si.path)
	if res.Code != exitMissing && res.Code != exitUsage {
		t.Errorf("sif info of an unknown id: want exit %d (or %d), got %d:\n%s", exitMissing, exitUsage, res.Code, res)
	}
	if err := harness.CheckErrorLine(res.Stderr); err != nil {
		t.Errorf("sif info of an unknown id: %v:\n%s", err, res)
	}
}
