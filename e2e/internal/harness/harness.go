// Package harness runs kerr's end-to-end tests: it installs kerr into a temporary prefix,
// creates an unprivileged account, starts the registries and writes the image fixtures, and
// gives each test a Session that runs the installed binary under a profile (root or the
// unprivileged user) and checks afterwards that nothing leaked.
//
// The harness itself runs as root: it installs a setuid starter, creates an account and
// mounts file systems for tests.
package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
)

// UserName is the unprivileged account the `user` profile runs as.
const UserName = "kerr-e2e"

// Credentials of the registry with basic authentication.
const (
	AuthUser     = "e2e"
	AuthPassword = "s3cret-e2e"
)

// Profile is who runs kerr: root, or the unprivileged test account.
type Profile struct {
	Name     string
	UID, GID uint32
	Home     string
}

// Privileged reports whether the profile is root.
func (p Profile) Privileged() bool { return p.UID == 0 }

// Pushed is an image the harness pushed to a registry.
type Pushed struct {
	Repo, Tag string
	Digest    v1.Hash   // manifest (or index) digest
	Layers    []v1.Hash // layer digests, bottom first (for an index: of the amd64 entry)
	Config    v1.Hash   // config digest (for an index: of the amd64 entry)
}

// Images are the fixtures every test may read (none may change them).
type Images struct {
	Busybox Pushed // busybox:latest, single layer, Docker media types, gzip
	OCI     Pushed // oci:latest, single layer, OCI media types, gzip
	Multi   Pushed // multi:latest, two layers with whiteouts and an opaque dir
	Zstd    Pushed // zstd:latest, single zstd layer
	Index   Pushed // index:latest, an OCI index of linux/amd64 and linux/arm64
	// The OCI single-layer image as an OCI layout (tag latest), an oci-archive and a
	// docker-archive (tagged busybox:latest).
	Layout, OCIArchive, DockerArchive string
}

// Harness is the installed kerr and the fixtures around it.
type Harness struct {
	Tmp    string // everything the suite creates lives here (0755, so the user can read)
	Repo   string // the source tree
	Prefix string // install prefix
	Kerr   string // Prefix/bin/kerr

	Root, User Profile

	Registry     *fixture.Registry // open registry holding Images
	AuthRegistry *fixture.Registry // basic-auth registry holding busybox:latest
	DownAddr     string            // a loopback host:port that refuses connections
	Images       Images

	keep bool
	lock *os.File
}

// LockPath serialises runs of the suite on one machine: they share the test account, and
// each run's leak checks would see the other's commands.
const LockPath = "/run/lock/kerr-e2e.lock"

// Setup builds and installs kerr (or uses $KERR_E2E_PREFIX), creates the test account and
// the fixtures. The caller must be root.
func Setup() (h *Harness, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the e2e suite must run as root")
	}
	lock, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("waiting for another run of the suite to finish (%s)", LockPath)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			lock.Close()
			return nil, fmt.Errorf("locking %s: %w", LockPath, err)
		}
	}
	tmp, err := os.MkdirTemp("", "kerr-e2e-")
	if err != nil {
		lock.Close()
		return nil, err
	}
	h = &Harness{Tmp: tmp, keep: os.Getenv("KERR_E2E_KEEP") != "", lock: lock}
	defer func() {
		if err != nil {
			h.Teardown()
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return h, err
	}
	if h.Repo, err = repoRoot(); err != nil {
		return h, err
	}
	if err := h.install(); err != nil {
		return h, err
	}
	if err := h.profiles(); err != nil {
		return h, err
	}
	if err := h.fixtures(); err != nil {
		return h, err
	}
	return h, nil
}

// repoRoot finds the module root above the working directory (go test runs in e2e/).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// install runs ./mconfig and make install into Tmp/prefix, unless KERR_E2E_PREFIX names an
// existing install.
func (h *Harness) install() error {
	if p := os.Getenv("KERR_E2E_PREFIX"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		h.Prefix = abs
	} else {
		h.Prefix = filepath.Join(h.Tmp, "prefix")
		build := filepath.Join(h.Tmp, "build")
		logPath := filepath.Join(h.Tmp, "build.log")
		logf("building kerr into %s (log: %s)", h.Prefix, logPath)
		steps := [][]string{
			{"./mconfig", "--prefix=" + h.Prefix, "-b", build},
			{"make", "-C", build, "install"},
		}
		for _, argv := range steps {
			if err := runLogged(h.Repo, logPath, argv...); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(logPath, 30))
			}
		}
	}
	h.Kerr = filepath.Join(h.Prefix, "bin", "kerr")
	if _, err := os.Stat(h.Kerr); err != nil {
		return fmt.Errorf("no kerr in the install: %w", err)
	}
	return nil
}

func runLogged(dir, logPath string, argv ...string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "+ %s\n", strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	return cmd.Run()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
}

// profiles creates the test account (reusing one a crashed run left) and both homes.
func (h *Harness) profiles() error {
	home := filepath.Join(h.Tmp, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		return err
	}
	h.Root = Profile{Name: "root", Home: filepath.Join(home, "root")}
	if err := os.Mkdir(h.Root.Home, 0o700); err != nil {
		return err
	}

	uhome := filepath.Join(home, UserName)
	if _, err := user.Lookup(UserName); err != nil {
		out, err := exec.Command("useradd", "-M", "-r", "-d", uhome, "-s", "/usr/sbin/nologin", UserName).CombinedOutput()
		if err != nil {
			return fmt.Errorf("useradd %s: %w: %s", UserName, err, out)
		}
	} else if out, err := exec.Command("usermod", "-d", uhome, UserName).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod %s: %w: %s", UserName, err, out)
	}
	u, err := user.Lookup(UserName)
	if err != nil {
		return err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	h.User = Profile{Name: "user", UID: uint32(uid), GID: uint32(gid), Home: uhome}
	if err := os.Mkdir(uhome, 0o700); err != nil {
		return err
	}
	return os.Chown(uhome, int(uid), int(gid))
}

// fixtures starts the registries and writes the images.
func (h *Harness) fixtures() error {
	var err error
	if h.Registry, err = fixture.StartRegistry(filepath.Join(h.Tmp, "registry"), fixture.RegistryOptions{}); err != nil {
		return err
	}
	if h.AuthRegistry, err = fixture.StartRegistry(filepath.Join(h.Tmp, "registry-auth"), fixture.RegistryOptions{
		Username: AuthUser, Password: AuthPassword,
	}); err != nil {
		return err
	}
	port, err := fixture.FreePort()
	if err != nil {
		return err
	}
	h.DownAddr = "127.0.0.1:" + strconv.Itoa(port)
	logf("registry %s, auth registry %s, down %s", h.Registry.Addr, h.AuthRegistry.Addr, h.DownAddr)

	push := func(reg *fixture.Registry, repo string, s fixture.Spec, auth authn.Authenticator) (Pushed, error) {
		img, err := fixture.Image(s)
		if err != nil {
			return Pushed{}, err
		}
		return PushImage(reg, repo, "latest", img, auth)
	}
	if h.Images.Busybox, err = push(h.Registry, "busybox", fixture.Spec{Docker: true}, nil); err != nil {
		return err
	}
	if h.Images.OCI, err = push(h.Registry, "oci", fixture.Spec{}, nil); err != nil {
		return err
	}
	if h.Images.Multi, err = push(h.Registry, "multi", fixture.Spec{MultiLayer: true}, nil); err != nil {
		return err
	}
	if h.Images.Zstd, err = push(h.Registry, "zstd", fixture.Spec{Zstd: true}, nil); err != nil {
		return err
	}
	if _, err = push(h.AuthRegistry, "busybox", fixture.Spec{Docker: true}, &authn.Basic{Username: AuthUser, Password: AuthPassword}); err != nil {
		return err
	}
	idx, err := fixture.Index(fixture.Spec{}, "amd64", "arm64")
	if err != nil {
		return err
	}
	if h.Images.Index, err = PushIndex(h.Registry, "index", "latest", idx); err != nil {
		return err
	}

	dir := filepath.Join(h.Tmp, "fixtures")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	img, err := fixture.Image(fixture.Spec{})
	if err != nil {
		return err
	}
	h.Images.Layout = filepath.Join(dir, "layout")
	h.Images.OCIArchive = filepath.Join(dir, "busybox-oci.tar")
	h.Images.DockerArchive = filepath.Join(dir, "busybox-docker.tar")
	if err := fixture.WriteLayout(h.Images.Layout, img, "latest"); err != nil {
		return err
	}
	if err := fixture.WriteOCIArchive(h.Images.OCIArchive, img, "latest"); err != nil {
		return err
	}
	if err := fixture.WriteDockerArchive(h.Images.DockerArchive, img, "busybox:latest"); err != nil {
		return err
	}
	// Let the unprivileged account read every fixture.
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if info.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
}

// PushImage pushes img to reg as repo:tag and describes it.
func PushImage(reg *fixture.Registry, repo, tag string, img v1.Image, auth authn.Authenticator) (Pushed, error) {
	d, err := fixture.Push(reg.Addr, repo, tag, img, auth)
	if err != nil {
		return Pushed{}, err
	}
	p := Pushed{Repo: repo, Tag: tag, Digest: d}
	if p.Layers, err = fixture.LayerDigests(img); err != nil {
		return Pushed{}, err
	}
	if p.Config, err = img.ConfigName(); err != nil {
		return Pushed{}, err
	}
	return p, nil
}

// PushIndex pushes idx to reg as repo:tag; Layers and Config describe its amd64 entry.
func PushIndex(reg *fixture.Registry, repo, tag string, idx v1.ImageIndex) (Pushed, error) {
	d, err := fixture.Push(reg.Addr, repo, tag, idx, nil)
	if err != nil {
		return Pushed{}, err
	}
	p := Pushed{Repo: repo, Tag: tag, Digest: d}
	im, err := idx.IndexManifest()
	if err != nil {
		return Pushed{}, err
	}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.Architecture != "amd64" {
			continue
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			return Pushed{}, err
		}
		if p.Layers, err = fixture.LayerDigests(img); err != nil {
			return Pushed{}, err
		}
		if p.Config, err = img.ConfigName(); err != nil {
			return Pushed{}, err
		}
	}
	return p, nil
}

// Ref is the docker:// reference of an image in the open registry.
func (h *Harness) Ref(p Pushed) string {
	return "docker://" + h.Registry.Addr + "/" + p.Repo + ":" + p.Tag
}

// Teardown stops the registries, removes the account and (unless KERR_E2E_KEEP is set)
// the temporary tree. Mounts a failed test left under it are detached first, so that
// removing the tree cannot reach into them.
func (h *Harness) Teardown() {
	for _, r := range []*fixture.Registry{h.Registry, h.AuthRegistry} {
		if r != nil {
			if err := r.Stop(); err != nil {
				logf("stopping registry: %v", err)
			}
		}
	}
	if _, err := user.Lookup(UserName); err == nil {
		if out, err := exec.Command("userdel", UserName).CombinedOutput(); err != nil {
			logf("userdel %s: %v: %s", UserName, err, out)
		}
	}
	if h.Tmp != "" {
		for _, m := range mountsUnder(h.Tmp) {
			logf("detaching leftover mount %s", m)
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if h.keep {
			logf("keeping %s", h.Tmp)
		} else if err := os.RemoveAll(h.Tmp); err != nil {
			logf("removing %s: %v", h.Tmp, err)
		}
	}
	if h.lock != nil {
		h.lock.Close() // releases the flock
	}
}
