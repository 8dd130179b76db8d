//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

func TestSecondPullDownloadsNoBlob(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	proxy, err := harness.StartCountingProxy(h.Registry.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ref := "docker://" + proxy.Addr + "/multi:latest"

	s.Run(h.Root, "pull", "--insecure", filepath.Join(s.Dir(h.Root), "first.sif"), ref).OK(t)
	first := proxy.BlobGets()
	for _, d := range append(slices.Clone(h.Images.Multi.Layers), h.Images.Multi.Config) {
		if first[d.String()] == 0 {
			t.Errorf("first pull never fetched blob %s (gets: %v); is the proxy in the way?", d, first)
		}
	}
	proxy.Reset()
	s.Run(h.Root, "pull", "--insecure", filepath.Join(s.Dir(h.Root), "second.sif"), ref).OK(t)
	for d, n := range proxy.BlobGets() {
		what := "layer"
		if d == h.Images.Multi.Config.String() {
			what = "config"
		}
		t.Errorf("second pull with a warm cache downloaded the %s blob %s (%d times)", what, d, n)
	}
	a, b := checkSIF(t, filepath.Join(s.Dir(h.Root), "first.sif")), checkSIF(t, filepath.Join(s.Dir(h.Root), "second.sif"))
	sameContent(t, a, b)
}

// sameContent checks that two SIFs hold the same image: equal file trees (times aside) and
// equal OCI configs and labels.
func sameContent(t *testing.T, a, b *sifImage) {
	t.Helper()
	if len(a.entries) != len(b.entries) {
		t.Errorf("%s has %d files, %s %d", a.path, len(a.entries), b.path, len(b.entries))
	}
	for p, ea := range a.entries {
		if eb, ok := b.entries[p]; !ok || ea != eb {
			t.Errorf("%s differs: %+v in %s, %+v in %s", p, ea, a.path, eb, b.path)
		}
	}
	if a.config.Architecture != b.config.Architecture || !slices.Equal(a.config.RootFS.DiffIDs, b.config.RootFS.DiffIDs) {
		t.Errorf("configs differ: %+v vs %+v", a.config, b.config)
	}
}

func TestConcurrentPullsIntoOneCache(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	p := pushUnique(t, fixture.Spec{MultiLayer: true})
	outs := []string{filepath.Join(s.Dir(h.Root), "a.sif"), filepath.Join(s.Dir(h.Root), "b.sif")}
	results := make([]harness.Result, len(outs))
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() { results[i] = s.Run(h.Root, "pull", "--insecure", outs[i], h.Ref(p)) })
	}
	wg.Wait()
	for _, r := range results {
		r.OK(t)
	}
	a, b := checkSIF(t, outs[0]), checkSIF(t, outs[1])
	sameContent(t, a, b)
	checkWhiteouts(t, a.entries)
	// The same image, down to what inspect shows; only the build date may differ.
	var ins [2]inspectOutput
	for i, out := range outs {
		res := s.Run(h.Root, "inspect", "--json", out).OK(t)
		if err := json.Unmarshal([]byte(res.Stdout), &ins[i]); err != nil {
			t.Fatalf("inspect --json: %v", err)
		}
		maps.DeleteFunc(ins[i].Labels, func(k, _ string) bool { return strings.Contains(k, "build-date") })
	}
	if !reflect.DeepEqual(ins[0], ins[1]) {
		t.Errorf("inspect --json differs between the two pulls (build date aside):\n%+v\n%+v", ins[0], ins[1])
	}
}

// filesWithDigest lists the regular files under dir whose sha256 is hexDigest.
func filesWithDigest(t *testing.T, dir, hexDigest string) []string {
	t.Helper()
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		hash := sha256.New()
		if _, err := io.Copy(hash, f); err == nil && hex.EncodeToString(hash.Sum(nil)) == hexDigest {
			found = append(found, p)
		}
		return nil
	})
	return found
}

func TestCacheListAndClean(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "pull", "--insecure", filepath.Join(s.Dir(h.Root), "busybox.sif"), h.Ref(h.Images.Busybox)).OK(t)
	layer := h.Images.Busybox.Layers[0]
	cache := s.CacheDir(h.Root)
	if len(filesWithDigest(t, cache, layer.Hex)) == 0 {
		t.Errorf("the layer blob %s is not in the cache %s", layer, cache)
	}
	list := s.Run(h.Root, "cache", "list").OK(t)
	if !strings.Contains(list.Stdout, layer.Hex[:12]) {
		t.Errorf("cache list does not show the layer %s:\n%s", layer, list.Stdout)
	}
	if !strings.Contains(strings.ToLower(list.Stdout), "sif") {
		t.Errorf("cache list shows no cached SIF:\n%s", list.Stdout)
	}
	s.Run(h.Root, "cache", "clean").OK(t)
	list = s.Run(h.Root, "cache", "list").OK(t)
	if strings.Contains(list.Stdout, layer.Hex[:12]) {
		t.Errorf("cache list still shows the layer after clean:\n%s", list.Stdout)
	}
	if left := filesWithDigest(t, cache, layer.Hex); len(left) != 0 {
		t.Errorf("cache clean left the layer blob: %v", left)
	}
	// The cache works again after a clean.
	s.Run(h.Root, "pull", "--insecure", filepath.Join(s.Dir(h.Root), "again.sif"), h.Ref(h.Images.Busybox)).OK(t)
}

func TestCacheDirIsCreatedPrivate(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	info, err := os.Stat(s.CacheDir(h.Root))
	if err != nil {
		t.Fatalf("KERR_CACHEDIR was not created: %v", err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode %v, want 0700", info.Mode().Perm())
	}
}
