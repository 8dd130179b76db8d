//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

func TestUserPullAndInspect(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.User, "pull", "--insecure", h.Ref(h.Images.Multi)).OK(t)
	out := filepath.Join(s.Dir(h.User), "multi_latest.sif")
	if uid := owner(t, out); uid != h.User.UID {
		t.Errorf("%s is owned by uid %d, want the user's %d", out, uid, h.User.UID)
	}
	si := checkSIF(t, out)
	checkWhiteouts(t, si.entries)
	s.Run(h.User, "inspect", out).OK(t)
	s.Run(h.User, "inspect", "--json", out).OK(t)
	s.Run(h.User, "sif", "list", out).OK(t)
	if uid := owner(t, s.CacheDir(h.User)); uid != h.User.UID {
		t.Errorf("cache dir owned by uid %d, want %d", uid, h.User.UID)
	}
}

func TestUserBuildSIF(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.User), "built.sif")
	s.Run(h.User, "build", "--insecure", out, h.Ref(h.Images.Busybox)).OK(t)
	if uid := owner(t, out); uid != h.User.UID {
		t.Errorf("%s is owned by uid %d, want the user's %d", out, uid, h.User.UID)
	}
	checkSIF(t, out)
}

func TestUserDefaultCacheDirIsPrivateInHome(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	cacheRoot := filepath.Join(h.User.Home, ".cache")
	defer os.RemoveAll(cacheRoot)
	s.RunWith(h.User, harness.Opts{Unset: []string{"KERR_CACHEDIR"}}, "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	dir := filepath.Join(cacheRoot, "kerr")
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("default cache dir not created: %v", err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v, want 0700", dir, info.Mode().Perm())
	}
	if uid := owner(t, dir); uid != h.User.UID {
		t.Errorf("%s owned by uid %d, want %d", dir, uid, h.User.UID)
	}
	if len(filesWithDigest(t, dir, h.Images.Busybox.Layers[0].Hex)) == 0 {
		t.Errorf("the layer blob is not in the default cache %s", dir)
	}
}

func TestUserHomeDockerConfigCredentials(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	dockerDir := filepath.Join(h.User.Home, ".docker")
	if err := os.Mkdir(dockerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dockerDir)
	if err := os.Chown(dockerDir, int(h.User.UID), int(h.User.GID)); err != nil {
		t.Fatal(err)
	}
	src := writeDockerConfig(t, h.User, harness.AuthUser, harness.AuthPassword)
	if err := os.Rename(filepath.Join(src, "config.json"), filepath.Join(dockerDir, "config.json")); err != nil {
		t.Fatal(err)
	}
	s.Run(h.User, "pull", "--insecure", authRef()).OK(t)
	checkSIF(t, filepath.Join(s.Dir(h.User), "busybox_latest.sif"))
}

func TestUserPullErrorLeavesNothing(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.User, "pull", "--insecure", "docker://"+h.DownAddr+"/busybox:latest").Fails(t, exitNoReach)
	s.Run(h.User, "pull", "--insecure", authRef()).Fails(t, exitDenied)
	wantDir(t, s.Dir(h.User))
}

func TestUserPullIntoUnwritableDirFails(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	rootDir := s.Mkdir(h.Root, "root-only")
	res := s.Run(h.User, "pull", "--insecure", filepath.Join(rootDir, "x.sif"), h.Ref(h.Images.Busybox))
	if res.Code != exitDenied && res.Code != 1 {
		t.Errorf("want exit %d (permission check failed) or 1, got %d:\n%s", exitDenied, res.Code, res)
	}
	if err := harness.CheckErrorLine(res.Stderr); err != nil {
		t.Errorf("%v:\n%s", err, res)
	}
	wantDir(t, rootDir)
}
