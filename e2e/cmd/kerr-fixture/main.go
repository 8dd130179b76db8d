// Command kerr-fixture makes the test images and registries of the e2e suite for the demo,
// the benchmarks and people trying kerr by hand:
//
//	kerr-fixture registry start --dir D [--username U --password P]   prints HOST:PORT
//	kerr-fixture registry stop --dir D
//	kerr-fixture push --registry HOST:PORT [--repo busybox] [--tag latest] [--multi-layer] [--zstd] [--index]
//	kerr-fixture layout [--tag latest] [--multi-layer] [--zstd] DIR
//	kerr-fixture archive [--multi-layer] oci|docker FILE
//
// It runs with the caller's privileges.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
)

const usage = `usage:
  kerr-fixture registry start --dir D [--username U --password P]
  kerr-fixture registry stop --dir D
  kerr-fixture push --registry HOST:PORT [--repo R] [--tag T] [--multi-layer] [--zstd] [--index] [--username U --password P]
  kerr-fixture layout [--tag T] [--multi-layer] [--zstd] DIR
  kerr-fixture archive [--multi-layer] oci|docker FILE`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kerr-fixture: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New(usage)

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "registry":
		return registry(args[1:], stdout)
	case "push":
		return push(args[1:], stdout)
	case "layout":
		return layout(args[1:])
	case "archive":
		return archive(args[1:])
	}
	return errUsage
}

// specFlags registers the image variant flags on fs.
func specFlags(fs *flag.FlagSet) *fixture.Spec {
	s := &fixture.Spec{}
	fs.BoolVar(&s.MultiLayer, "multi-layer", false, "two layers with whiteouts and an opaque dir")
	fs.BoolVar(&s.Zstd, "zstd", false, "zstd-compressed layers")
	return s
}

func registry(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "start" && args[0] != "stop" {
		return errUsage
	}
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the registry's config, storage, log and pid file")
	user := fs.String("username", "", "turn on basic auth with this user")
	pass := fs.String("password", "", "password for --username")
	if err := fs.Parse(args[1:]); err != nil || *dir == "" || fs.NArg() != 0 {
		return errUsage
	}
	if args[0] == "stop" {
		return fixture.StopRegistryDir(*dir)
	}
	r, err := fixture.StartRegistry(*dir, fixture.RegistryOptions{Username: *user, Password: *pass, Detach: true})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, r.Addr)
	return err
}

func push(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	addr := fs.String("registry", "", "HOST:PORT of a plain-http registry")
	repo := fs.String("repo", "busybox", "repository")
	tag := fs.String("tag", "latest", "tag")
	index := fs.Bool("index", false, "push an OCI index of linux/amd64 and linux/arm64")
	user := fs.String("username", "", "registry user")
	pass := fs.String("password", "", "registry password")
	spec := specFlags(fs)
	if err := fs.Parse(args); err != nil || *addr == "" || fs.NArg() != 0 {
		return errUsage
	}
	var auth authn.Authenticator
	if *user != "" {
		auth = &authn.Basic{Username: *user, Password: *pass}
	}
	var img any
	var err error
	if *index {
		img, err = fixture.Index(*spec, "amd64", "arm64")
	} else {
		img, err = fixture.Image(*spec)
	}
	if err != nil {
		return err
	}
	d, err := fixture.Push(*addr, *repo, *tag, img, auth)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s/%s:%s@%s\n", *addr, *repo, *tag, d)
	return err
}

func layout(args []string) error {
	fs := flag.NewFlagSet("layout", flag.ContinueOnError)
	tag := fs.String("tag", "latest", "tag (org.opencontainers.image.ref.name)")
	spec := specFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	img, err := fixture.Image(*spec)
	if err != nil {
		return err
	}
	return fixture.WriteLayout(fs.Arg(0), img, *tag)
}

func archive(args []string) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	spec := specFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		return errUsage
	}
	kind, file := fs.Arg(0), fs.Arg(1)
	if kind == "docker" {
		spec.Docker = !spec.Zstd
	}
	img, err := fixture.Image(*spec)
	if err != nil {
		return err
	}
	switch kind {
	case "oci":
		return fixture.WriteOCIArchive(file, img, "latest")
	case "docker":
		return fixture.WriteDockerArchive(file, img, "busybox:latest")
	}
	return errUsage
}
