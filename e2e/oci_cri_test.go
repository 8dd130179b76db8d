//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
	"github.com/kerr-hpc/kerr/e2e/internal/ocisuite"
)

// kerr-runc as a Kubernetes RuntimeClass handler: containerd's CRI plugin with a runtime
// `kerr` of type io.containerd.runc.v2 whose BinaryName is kerr-runc (docs/runtimes.md's
// configuration), driven with crictl as the kubelet would: a pod sandbox, a container in it
// that shares the sandbox's pid namespace (the CRI default), logs, exec, update, stop,
// removal.
// Offline: the sandbox ("pause") image is the busybox fixture sleeping, the pod uses the
// host's network (no CNI), and containerd may not lower oom_score_adj
// (restrict_oom_score_adj: the sandbox would ask for -998). crictl is built from
// sigs.k8s.io/cri-tools unless on PATH or in $KERR_E2E_CRICTL.

// crictlVersion is the cri-tools release built when no crictl is installed.
const crictlVersion = "v1.34.0"

var crictlBuild struct {
	once sync.Once
	bin  string
	err  error
}

// findCrictl returns a crictl: $KERR_E2E_CRICTL, crictl on PATH, or one built once.
func findCrictl(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KERR_E2E_CRICTL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	b := &crictlBuild
	b.once.Do(func() {
		goCmd, err := ocisuite.FindGo()
		if err != nil {
			b.err = err
			return
		}
		gobin := filepath.Join(h.Tmp, "crictl-bin")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goCmd, "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+crictlVersion)
		cmd.Dir = h.Tmp
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=", "GOWORK=off")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go install sigs.k8s.io/cri-tools/cmd/crictl@%s: %v\n%s", crictlVersion, err, out)
			return
		}
		t.Logf("built crictl %s in %.0fs", crictlVersion, time.Since(start).Seconds())
		b.bin = filepath.Join(gobin, "crictl")
	})
	if b.err != nil {
		t.Skipf("no crictl (set KERR_E2E_CRICTL, or let the test build it from the Go module proxy): %v", b.err)
	}
	return b.bin
}

// writePauseArchive writes the sandbox image: the busybox fixture whose entrypoint sleeps.
func writePauseArchive(t *testing.T, path string) {
	t.Helper()
	img, err := fixture.Image(fixture.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Entrypoint, cfg.Cmd, cfg.User = []string{"/bin/sleep", "1000000"}, nil, "0"
	var pause v1.Image
	if pause, err = mutate.Config(img, cfg); err != nil {
		t.Fatal(err)
	}
	if err := fixture.WriteOCIArchive(path, pause, "1"); err != nil {
		t.Fatal(err)
	}
}

func TestContainerdCRI(t *testing.T) { testContainerdCRI(t, false) }

// The same on a systemd host with `SystemdCgroup = true` for both handlers, as a kubelet
// with the systemd cgroup driver has it: containerd in the namespaces of a systemd the
// test boots (harness.BootSystemd), the pods' cgroup_parent a slice, each container a
// scope unit cri-containerd-ID.scope in it.
func TestContainerdCRISystemd(t *testing.T) {
	if resV2 {
		t.Skip("written for cgroup v1 and hybrid hosts (it reads the v1 memory file)")
	}
	testContainerdCRI(t, true)
}

func testContainerdCRI(t *testing.T, withSystemd bool) {
	s := h.Begin(t)
	defer s.Done()
	crictl := findCrictl(t)
	kerrRunc := filepath.Join(h.Prefix, "bin", "kerr-runc")
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("no runc for the control pod")
	}
	extra := `
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/kerr-e2e-pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "DIR/cni-bin"
    conf_dir = "DIR/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "` + runc + `"
        Root = "DIR/runc"
        SystemdCgroup = SYSTEMD
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kerr]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kerr.options]
        BinaryName = "` + kerrRunc + `"
        Root = "DIR/kerr"
        SystemdCgroup = SYSTEMD
`
	extra = strings.ReplaceAll(extra, "SYSTEMD", fmt.Sprint(withSystemd))
	var sd *harness.Systemd
	if withSystemd {
		sd = bootSystemd(t, s) // its cleanup is registered first: it runs after containerd's
	}
	c := newContainerdIn(t, s, "k8s.io", extra, sd)
	c.cgroup = fmt.Sprintf("/kerr-e2e-cri-%d", os.Getpid())
	if withSystemd {
		c.cgroup = "kerr-e2e-cri.slice" // systemd's /kerr.slice/kerr-e2e.slice/kerr-e2e-cri.slice
	}
	pauseTar := filepath.Join(s.Dir(h.Root), "pause.tar")
	writePauseArchive(t, pauseTar)
	c.ctr("images", "import", "--snapshotter", "native", "--base-name", "localhost/kerr-e2e-pause", pauseTar).OK(t)

	cri := func(args ...string) harness.Result {
		return s.Exec(h.Root, harness.Opts{}, crictl, append([]string{"--runtime-endpoint", "unix://" + c.sock,
			"--image-endpoint", "unix://" + c.sock, "--timeout", "60s"}, args...)...)
	}
	c.beforeStop = append(c.beforeStop, func() {
		_ = exec.Command(crictl, "--runtime-endpoint", "unix://"+c.sock, "rmp", "--all", "--force").Run()
	})
	dir := s.Mkdir(h.Root, "cri")
	podFile, ctrFile := filepath.Join(dir, "pod.json"), filepath.Join(dir, "container.json")
	writeJSON := func(path string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name string) map[string]any {
		return map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
			"log_directory": filepath.Join(dir, "logs-"+name),
			"linux": map[string]any{"cgroup_parent": c.cgroup,
				// 2: NODE, the host's network: no CNI here.
				"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
		}
	}
	writeJSON(ctrFile, map[string]any{
		"metadata": map[string]any{"name": "c1"},
		"image":    map[string]any{"image": c.image},
		"command":  []string{"/bin/sh", "-c", `echo hello from cri; trap "exit 143" TERM; while :; do sleep 1 & wait $!; done`},
		"log_path": "c1.log",
		"linux":    map[string]any{"security_context": map[string]any{"run_as_user": map[string]any{"value": 0}}},
	})

	// One pod per runtime class handler, runc's first as the control.
	for _, handler := range []string{"runc", "kerr"} {
		writeJSON(podFile, pod("pod-"+handler))
		r := cri("runp", "--runtime", handler, podFile)
		if r.Code != 0 && handler == "runc" {
			t.Skipf("containerd's CRI cannot run a pod with runc on this host either:\n%s\ncontainerd:\n%s", r, tailFile(filepath.Join(c.dir, "containerd.log")))
		}
		r.OK(t)
		podID := strings.TrimSpace(r.Stdout)
		cid := strings.TrimSpace(cri("create", podID, ctrFile, podFile).OK(t).Stdout)
		cri("start", cid).OK(t)
		var out string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out = cri("logs", cid).Stdout; strings.Contains(out, "hello from cri") {
				break
			}
		}
		if !strings.Contains(out, "hello from cri") {
			t.Errorf("%s: crictl logs: %q", handler, out)
		}
		if r := cri("exec", "--sync", cid, "sh", "-c", "echo in-exec; cat /proc/self/oom_score_adj"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "in-exec\n") || strings.HasPrefix(r.Stdout, "in-exec\n-") {
			t.Errorf("%s: crictl exec --sync (want in-exec and no negative oom_score_adj): stdout %q\n%s", handler, r.Stdout, r)
		}
		// update goes through the shim to `kerr-runc update --resources - ID`.
		cri("update", "--memory", "67108864", cid).OK(t)
		limit := filepath.Join("/sys/fs/cgroup/memory", c.cgroup, cid, "memory.limit_in_bytes")
		if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil { // cgroup v2 alone
			limit = filepath.Join("/sys/fs/cgroup", c.cgroup, cid, "memory.max")
		}
		if withSystemd {
			unit := "cri-containerd-" + cid + ".scope"
			limit = sd.CgroupDir("memory", "/kerr.slice/kerr-e2e.slice/kerr-e2e-cri.slice/"+unit+"/memory.limit_in_bytes")
			if p := unitProps(t, sd, unit, "ActiveState", "Slice", "MemoryLimit"); p["ActiveState"] != "active" ||
				p["Slice"] != "kerr-e2e-cri.slice" || p["MemoryLimit"] != "67108864" {
				t.Errorf("%s: the container's unit %s after crictl update --memory 67108864: %v", handler, unit, p)
			}
		}
		if b, err := os.ReadFile(limit); err != nil || strings.TrimSpace(string(b)) != "67108864" {
			t.Errorf("%s: after crictl update --memory 67108864 the cgroup's limit is %q (%v)", handler, b, err)
		}
		cri("stop", "--timeout", "20", cid).OK(t)
		var st struct {
			Status struct {
				State    string `json:"state"`
				ExitCode int    `json:"exitCode"`
			} `json:"status"`
		}
		r = cri("inspect", cid).OK(t)
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Status.State != "CONTAINER_EXITED" || st.Status.ExitCode != 143 {
			t.Errorf("%s: after crictl stop: %+v (%v), want CONTAINER_EXITED 143", handler, st.Status, err)
		}
		cri("rm", cid).OK(t)
		cri("stopp", podID).OK(t)
		cri("rmp", podID).OK(t)
		// The container shares the sandbox's pid namespace: its processes outlive its own,
		// and the shim's kill --all must end them, or containerd cuts its output short.
		logb, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
		for _, l := range strings.Split(string(logb), "\n") {
			if strings.Contains(l, "level=error") && (strings.Contains(l, cid) || strings.Contains(l, podID)) {
				t.Errorf("%s: containerd logged an error: %s", handler, l)
			}
		}
	}
	if r := cri("pods", "--quiet"); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("pods left: %q", r.Stdout)
	}
}
