package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// nsEnv marks the benchmark re-executed in its own mount namespace.
const nsEnv = "KERR_BENCH_HPC_NS"

// install returns PREFIX/bin/kerr and says what was measured: -prefix as it is, or the
// repository's HEAD (a `git archive` of it, so that others' uncommitted edits cannot break
// or change the build) or its working tree, configured and installed into work/prefix.
// The starter's path and the policy's are fixed at build time, so HPC mode needs an
// install, not a bare binary; the setuid starter is installed setuid root, which needs a
// file system mounted without nosuid.
func install(ctx context.Context, root, work string, c config) (kerr, source string, err error) {
	prefix := c.prefix
	if prefix == "" {
		src := root
		head, err := gitOut(ctx, root, "rev-parse", "--short=12", "HEAD")
		if err != nil {
			return "", "", err
		}
		if c.worktree {
			source = "working tree at " + head
			if st, _ := gitOut(ctx, root, "status", "--porcelain", "--untracked-files=no"); st != "" {
				source += " with uncommitted changes"
			}
		} else {
			source = "HEAD " + head
			src = filepath.Join(work, "src")
			if err := exportHead(ctx, root, src); err != nil {
				return "", "", err
			}
		}
		if prefix, err = harness.Installed(ctx, src, work, "", source); err != nil {
			return "", "", err
		}
	} else {
		source = "installed in " + prefix
	}
	kerr, err = harness.Binary(prefix, "kerr")
	return kerr, source, err
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// exportHead writes the files of the repository's HEAD into dir (git archive | tar -x).
func exportHead(ctx context.Context, root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", "HEAD")
	archive.Dir = root
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var aerr, terr strings.Builder
	archive.Stderr, untar.Stderr = &aerr, &terr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("git archive HEAD: %w: %s", err, aerr.String())
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("tar -x of git archive HEAD: %w: %s", err, terr.String())
	}
	return nil
}

// policyInfo is what the install's policy decides for the benchmark.
type policyInfo struct {
	File              string `json:"file"`
	KernelSquashfs    string `json:"kernel_squashfs"`
	SharedLoopDevices string `json:"shared_loop_devices"`
	MaxLoopDevices    string `json:"max_loop_devices"`
	// What `kerr policy explain --user ACCOUNT IMAGE` says of each image ("image:" line).
	RootImage string `json:"root_owned_image"`
	UserImage string `json:"user_owned_image"`
}

// readPolicy runs `kerr policy check` (the installed policy, checked as the starter
// checks it) and `kerr policy explain` for both images.
func readPolicy(ctx context.Context, kerr, account, rootSIF, userSIF string) (policyInfo, error) {
	var p policyInfo
	out, err := exec.CommandContext(ctx, kerr, "policy", "check").CombinedOutput()
	if err != nil {
		return p, fmt.Errorf("kerr policy check: %w\n%s", err, out)
	}
	p.File, p.KernelSquashfs, p.SharedLoopDevices, p.MaxLoopDevices = parsePolicyCheck(string(out))
	for _, img := range []struct {
		path string
		dst  *string
	}{{rootSIF, &p.RootImage}, {userSIF, &p.UserImage}} {
		out, err := exec.CommandContext(ctx, kerr, "policy", "explain", "--user", account, img.path).CombinedOutput()
		if err != nil {
			return p, fmt.Errorf("kerr policy explain --user %s %s: %w\n%s", account, img.path, err, out)
		}
		*img.dst = explainImage(string(out))
	}
	return p, nil
}

// parsePolicyCheck reads the output of `kerr policy check`: "FILE: ok", then the
// effective policy, one "key = value" a line.
func parsePolicyCheck(s string) (file, kernelSquashfs, shared, maxLoops string) {
	lines := strings.Split(s, "\n")
	if f, ok := strings.CutSuffix(strings.TrimSpace(lines[0]), ": ok"); ok {
		file = f
	}
	for _, l := range lines {
		k, v, ok := strings.Cut(strings.TrimSpace(l), " = ")
		if !ok {
			continue
		}
		switch k {
		case "kernel_squashfs":
			kernelSquashfs = strings.Trim(v, `"`)
		case "shared_loop_devices":
			shared = v
		case "max_loop_devices":
			maxLoops = v
		}
	}
	return
}

// explainImage is the "image:" line of `kerr policy explain`, e.g. "sif, owner root, group
// root, mode 0644, mounted with the kernel's squashfs".
func explainImage(s string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "image:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// account is the unprivileged user the kerr variants run as.
type account struct {
	name     string
	uid, gid uint32
	home     string
	reused   bool // it existed before (a run that was killed left it)
}

// accountName is the benchmark's own account, created at the start and removed at the end
// (the e2e suite has kerr-e2e; a separate name keeps the two apart).
const accountName = "kerr-bench"

// makeAccount creates the account with its home in dir (which must be searchable by all),
// or takes over the one a killed run left, unless something runs as it: another run of the
// benchmark.
func makeAccount(dir string) (*account, error) {
	a := &account{name: accountName, home: filepath.Join(dir, accountName)}
	if u, err := user.Lookup(accountName); err == nil {
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		if procs := processesOf(uint32(uid)); len(procs) > 0 {
			return nil, fmt.Errorf("account %s exists and runs %s: another run of the benchmark?", accountName, strings.Join(procs, "; "))
		}
		harness.Logf("account %s exists (left by a killed run?): taking it over; it is removed at the end", accountName)
		a.reused = true
		if out, err := exec.Command("usermod", "-d", a.home, accountName).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("usermod -d %s %s: %w: %s", a.home, accountName, err, out)
		}
	} else if out, err := exec.Command("useradd", "-M", "-r", "-d", a.home, "-s", "/usr/sbin/nologin", accountName).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("useradd %s: %w: %s", accountName, err, out)
	}
	u, err := user.Lookup(accountName)
	if err != nil {
		return a, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a.uid, a.gid = uint32(uid), uint32(gid)
	if err := os.Mkdir(a.home, 0o700); err != nil {
		return a, err
	}
	return a, os.Chown(a.home, int(uid), int(gid))
}

// remove deletes the account (and its group); its home goes with the scratch directory.
func (a *account) remove() error {
	if _, err := user.Lookup(a.name); err != nil {
		return nil
	}
	if out, err := exec.Command("userdel", a.name).CombinedOutput(); err != nil {
		return fmt.Errorf("userdel %s: %w: %s", a.name, err, out)
	}
	return nil
}

// makeRootfs writes a root filesystem of the static busybox with the applets the
// benchmark runs (sh for the image's scripts, true, id).
func makeRootfs(dir, busybox string) error {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	if err := copyFile(busybox, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "true", "id"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return err
		}
	}
	return nil
}

// makeImages builds the SIF from rootfs with `kerr build` and makes the three copies:
// root.sif (root's, 0644: the kernel's squashfs), user.sif (the account's, 0644:
// squashfuse), bundle.sif (root's, for `kerr oci mount`: its loop device is not
// root.sif's, so that what the 32-run uses can be counted apart).
func makeImages(ctx context.Context, kerr, dir, rootfs string, a *account) (rootSIF, userSIF, bundleSIF string, err error) {
	built := filepath.Join(dir, "built.sif")
	if out, err := exec.CommandContext(ctx, kerr, "-q", "build", built, rootfs).CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("kerr build %s %s: %w\n%s", built, rootfs, err, out)
	}
	rootSIF, userSIF, bundleSIF = filepath.Join(dir, "root.sif"), filepath.Join(dir, "user.sif"), filepath.Join(dir, "bundle.sif")
	for _, p := range []string{rootSIF, userSIF, bundleSIF} {
		if err := copyFile(built, p, 0o644); err != nil {
			return "", "", "", err
		}
	}
	if err := os.Remove(built); err != nil {
		return "", "", "", err
	}
	return rootSIF, userSIF, bundleSIF, os.Chown(userSIF, int(a.uid), int(a.gid))
}

// copyFile copies from to a new file to with mode perm (exactly: not masked).
func copyFile(from, to string, perm os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(to, perm)
}

// makeBundle mounts sif as an OCI bundle in dir with `kerr oci mount` and makes its
// config.json run /bin/true without a terminal. ociVersion becomes 1.0.2: kerr writes the
// runtime-spec version it was built with (1.3.0), which crun 1.8 refuses ("unknown version
// specified"); nothing else changes.
func makeBundle(ctx context.Context, kerr, sif, dir string) (specInfo, error) {
	if out, err := exec.CommandContext(ctx, kerr, "-q", "oci", "mount", sif, dir).CombinedOutput(); err != nil {
		return specInfo{}, fmt.Errorf("kerr oci mount %s %s: %w\n%s", sif, dir, err, out)
	}
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return specInfo{}, err
	}
	edited, si, err := editSpec(b)
	if err != nil {
		return specInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return si, os.WriteFile(path, edited, 0o644)
}

// specInfo is what the bundle's config.json asks of runc and crun.
type specInfo struct {
	OCIVersion string   `json:"oci_version_was"`
	Args       []string `json:"args"`
	User       string   `json:"user"`
	Namespaces []string `json:"namespaces"`
	Mounts     int      `json:"mounts"`
	Seccomp    bool     `json:"seccomp"`
	Readonly   bool     `json:"readonly_rootfs"`
}

// editSpec sets process.args to /bin/true, process.terminal to false and ociVersion to
// 1.0.2, keeping every other field as it is, and describes the result.
func editSpec(b []byte) ([]byte, specInfo, error) {
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, specInfo{}, err
	}
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		return nil, specInfo{}, errors.New("no process object")
	}
	var si specInfo
	si.OCIVersion, _ = spec["ociVersion"].(string)
	spec["ociVersion"] = "1.0.2"
	proc["args"] = []string{"/bin/true"}
	proc["terminal"] = false
	si.Args = []string{"/bin/true"}
	if u, ok := proc["user"].(map[string]any); ok {
		si.User = fmt.Sprintf("%v:%v", u["uid"], u["gid"])
	}
	if linux, ok := spec["linux"].(map[string]any); ok {
		nss, _ := linux["namespaces"].([]any)
		for _, ns := range nss {
			if m, ok := ns.(map[string]any); ok {
				si.Namespaces = append(si.Namespaces, fmt.Sprint(m["type"]))
			}
		}
		_, si.Seccomp = linux["seccomp"].(map[string]any)
	}
	mounts, _ := spec["mounts"].([]any)
	si.Mounts = len(mounts)
	if root, ok := spec["root"].(map[string]any); ok {
		si.Readonly, _ = root["readonly"].(bool)
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	return out, si, err
}
