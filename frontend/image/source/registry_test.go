package source

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/cache"
	"github.com/kerr-hpc/kerr/frontend/image/ref"
)

// testRegistry is an in-process registry whose requests are counted and whose answers a
// test can spoil.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu       sync.Mutex
	requests []string // "GET /v2/..."
	corrupt  map[string]bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	// No credential of the machine running the test is used or needed.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	r := &testRegistry{corrupt: map[string]bool{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		spoil := req.Method == http.MethodGet && r.corrupt[req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]]
		r.mu.Unlock()
		if spoil {
			w = &flipWriter{ResponseWriter: w}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// push uploads img as repo:tag.
func (r *testRegistry) push(t *testing.T, repo string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(r.host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	r.reset()
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// blobGets counts GET requests for blob d.
func (r *testRegistry) blobGets(d v1.Hash) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		if strings.HasPrefix(q, "GET ") && strings.HasSuffix(q, "/blobs/"+d.String()) {
			n++
		}
	}
	return n
}

// flipWriter inverts every byte of the body it passes on, keeping the length.
type flipWriter struct{ http.ResponseWriter }

func (f *flipWriter) Write(p []byte) (int, error) {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = ^b
	}
	return f.ResponseWriter.Write(q)
}

func testCache(t *testing.T) *cache.Cache {
	t.Helper()
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func resolveDocker(t *testing.T, s string, opts Options) (*Image, error) {
	t.Helper()
	src, err := ref.Parse(s, false, true)
	if err != nil {
		t.Fatalf("ref.Parse(%q): %v", s, err)
	}
	opts.Insecure = true
	return Resolve(context.Background(), src, opts)
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestRegistryFetchFillsCacheOnce(t *testing.T) {
	reg := newTestRegistry(t)
	l0, l1 := gzipLayer(t, file{"a", "alpha"}), zstdLayer(t, file{"b", "beta"})
	img := imageOf(t, "amd64", []string{"x"}, l0, l1)
	reg.push(t, "test/img", img)
	c := testCache(t)
	ref := "docker://" + reg.host + "/test/img:latest"

	got, err := resolveDocker(t, ref, Options{Cache: c})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if got.Digest != digestOf(t, img) || got.Bootstrap != "docker" || got.Arch != "amd64" {
		t.Errorf("resolved %s %s %s, want %s docker amd64", got.Digest, got.Bootstrap, got.Arch, digestOf(t, img))
	}
	for _, l := range []v1.Layer{l0, l1} {
		if n := reg.blobGets(digestOf(t, l)); n != 0 {
			t.Errorf("Resolve downloaded layer %s %d times: that is Fetch's job", digestOf(t, l), n)
		}
	}
	if err := got.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for _, l := range []v1.Layer{l0, l1} {
		if _, ok := c.BlobPath(digestOf(t, l)); !ok {
			t.Errorf("layer %s is not in the cache after Fetch", digestOf(t, l))
		}
	}
	if es := mustReadLayer(t, got, 0); es["a"].data != "alpha" {
		t.Errorf("layer 0 = %v", es)
	}
	if es := mustReadLayer(t, got, 1); es["b"].data != "beta" {
		t.Errorf("layer 1 = %v", es)
	}

	reg.reset()
	again, err := resolveDocker(t, ref, Options{Cache: c})
	if err != nil {
		t.Fatalf("second Resolve: %v", err)
	}
	if again.fetch != nil {
		t.Error("second Resolve has layers to fetch although all are cached")
	}
	if err := again.Fetch(context.Background()); err != nil {
		t.Fatalf("second Fetch: %v", err)
	}
	for _, l := range []v1.Layer{l0, l1} {
		if n := reg.blobGets(digestOf(t, l)); n != 0 {
			t.Errorf("second pull downloaded cached layer %s %d times", digestOf(t, l), n)
		}
	}
	if cfg, err := img.ConfigName(); err != nil {
		t.Fatal(err)
	} else if n := reg.blobGets(cfg); n != 0 {
		t.Errorf("second pull downloaded the cached config %d times", n)
	}
	if es := mustReadLayer(t, again, 1); es["b"].data != "beta" {
		t.Errorf("layer 1 from the cache = %v", es)
	}
	if left := dirEntries(t, c.TempDir()); len(left) != 0 {
		t.Errorf("cache tmp holds %v after the pulls", left)
	}
}

func TestRegistryUnknownTagIsNotFound(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "test/img", imageOf(t, "amd64", nil, gzipLayer(t, file{"a", "1"})))
	for _, s := range []string{"/test/img:nope", "/test/other:latest"} {
		if _, err := resolveDocker(t, "docker://"+reg.host+s, Options{Cache: testCache(t)}); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", s, err)
		}
	}
}

func TestRegistrySinglePlatformImageMustMatchArch(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "test/img", imageOf(t, "amd64", nil, gzipLayer(t, file{"a", "1"})))
	// Without --arch a single-platform image is taken as it is; its config says what it is.
	img, err := resolveDocker(t, "docker://"+reg.host+"/test/img:latest", Options{Cache: testCache(t)})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if img.Arch != "amd64" {
		t.Errorf("Arch = %s, want the config's amd64", img.Arch)
	}
	// An explicit --arch that the image is not: no image for that platform.
	if _, err := resolveDocker(t, "docker://"+reg.host+"/test/img:latest", Options{Cache: testCache(t), Arch: "arm64"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("arm64 of an amd64-only image = %v, want ErrNotFound", err)
	}
}

func TestRegistryUnauthorizedIsDenied(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="kerr-test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, opts := range []Options{{}, {Username: "u", Password: "wrong"}} {
		opts.Cache = testCache(t)
		if _, err := resolveDocker(t, "docker://"+host+"/test/img:latest", opts); !errors.Is(err, errdefs.ErrDenied) {
			t.Errorf("401 (user %q) = %v, want ErrDenied", opts.Username, err)
		}
	}
}

func TestRegistryServerErrorIsUnavailable(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Not 500 or 503: the registry client retries those for seconds.
		http.Error(w, "not implemented here", http.StatusNotImplemented)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if _, err := resolveDocker(t, "docker://"+host+"/test/img:latest", Options{Cache: testCache(t)}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("501 = %v, want ErrUnavailable", err)
	}
}

func TestRegistryClosedPortIsUnavailable(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = resolveDocker(t, "docker://"+addr+"/test/img:latest", Options{Cache: testCache(t)})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("closed port = %v, want ErrUnavailable", err)
	}
}

func TestRegistryNeedsACache(t *testing.T) {
	src, err := ref.Parse("docker://127.0.0.1:1/x:y", false, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), src, Options{}); err == nil {
		t.Error("a registry pull without a cache was accepted")
	}
}

// TestRegistryCorruptBlobLeavesCacheClean serves a layer whose bytes differ from its digest:
// Fetch fails as an invalid image, and neither the layer nor a partial download stays in the
// cache (the config, which is sound, may).
func TestRegistryCorruptBlobLeavesCacheClean(t *testing.T) {
	reg := newTestRegistry(t)
	layer := gzipLayer(t, file{"a", strings.Repeat("data", 1000)})
	img0 := imageOf(t, "amd64", nil, layer)
	reg.push(t, "test/img", img0)
	reg.mu.Lock()
	reg.corrupt[digestOf(t, layer).String()] = true
	reg.mu.Unlock()
	c := testCache(t)
	img, err := resolveDocker(t, "docker://"+reg.host+"/test/img:latest", Options{Cache: c})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	err = img.Fetch(context.Background())
	if err == nil {
		t.Fatal("Fetch of a corrupt blob succeeded")
	}
	if !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("Fetch of a corrupt blob = %v, want ErrInvalidImage", err)
	}
	if n := reg.blobGets(digestOf(t, layer)); n == 0 {
		t.Fatal("the corrupt blob was never requested")
	}
	cfg, err := img0.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range dirEntries(t, filepath.Join(c.Root(), "blobs", "sha256")) {
		if name != cfg.Hex {
			t.Errorf("corrupt download left blob %s in the cache", name)
		}
	}
	if left := dirEntries(t, c.TempDir()); len(left) != 0 {
		t.Errorf("corrupt download left %v in the cache's tmp", left)
	}
}

func TestRegistryIndexPicksArch(t *testing.T) {
	reg := newTestRegistry(t)
	amd := imageOf(t, "amd64", nil, gzipLayer(t, file{"arch", "amd64"}))
	arm := imageOf(t, "arm64", nil, gzipLayer(t, file{"arch", "arm64"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	tag, err := name.NewTag(reg.host+"/test/multi:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	c := testCache(t)
	for arch, want := range map[string]v1.Image{"amd64": amd, "arm64": arm} {
		img, err := resolveDocker(t, "docker://"+tag.String(), Options{Cache: c, Arch: arch})
		if err != nil {
			t.Fatalf("Resolve %s: %v", arch, err)
		}
		if img.Digest != digestOf(t, want) || img.Arch != arch {
			t.Errorf("Arch %s: got %s (%s), want %s", arch, img.Digest, img.Arch, digestOf(t, want))
		}
		if err := img.Fetch(context.Background()); err != nil {
			t.Fatalf("Fetch %s: %v", arch, err)
		}
		if es := mustReadLayer(t, img, 0); es["arch"].data != arch {
			t.Errorf("Arch %s: layer holds %q", arch, es["arch"].data)
		}
	}
	if _, err := resolveDocker(t, "docker://"+tag.String(), Options{Cache: c, Arch: "s390x"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no image for the arch = %v, want ErrNotFound", err)
	}
}

func TestRegistryCorruptConfigIsInvalidImage(t *testing.T) {
	reg := newTestRegistry(t)
	img0 := imageOf(t, "amd64", nil, gzipLayer(t, file{"a", "1"}))
	reg.push(t, "test/img", img0)
	cfg, err := img0.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	reg.corrupt[cfg.String()] = true
	reg.mu.Unlock()
	c := testCache(t)
	if _, err := resolveDocker(t, "docker://"+reg.host+"/test/img:latest", Options{Cache: c}); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("Resolve with a corrupt config = %v, want ErrInvalidImage", err)
	}
	if left := dirEntries(t, filepath.Join(c.Root(), "blobs", "sha256")); len(left) != 0 {
		t.Errorf("a corrupt config left %v in the cache", left)
	}
	if left := dirEntries(t, c.TempDir()); len(left) != 0 {
		t.Errorf("a corrupt config left %v in the cache's tmp", left)
	}
}
