package ref

import (
	"errors"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

func TestParseAndDefaultOutput(t *testing.T) {
	cases := []struct {
		in        string
		transport Transport
		path, tag string
		out       string
	}{
		{"docker://busybox", Docker, "", "", "busybox_latest.sif"},
		{"docker://127.0.0.1:5000/lib/alpine:3.19", Docker, "", "", "alpine_3.19.sif"},
		{"docker://busybox@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Docker, "", "", "busybox_0123456789ab.sif"},
		{"oci:/tmp/layout:v1", OCILayout, "/tmp/layout", "v1", "layout_v1.sif"},
		{"oci:/tmp/layout", OCILayout, "/tmp/layout", "", "layout_latest.sif"},
		{"oci-archive:img.tar", OCIArchive, "img.tar", "", "img_latest.sif"},
		{"docker-archive:/x/save.tar", DockerArchive, "/x/save.tar", "", "save_latest.sif"},
	}
	for _, c := range cases {
		s, err := Parse(c.in, false, true)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if s.Transport != c.transport || s.Path != c.path || s.Tag != c.tag {
			t.Errorf("Parse(%q) = %+v", c.in, s)
		}
		if got := s.DefaultOutput(); got != c.out {
			t.Errorf("DefaultOutput(%q) = %q, want %q", c.in, got, c.out)
		}
	}
}

func TestParseRejectsBadSources(t *testing.T) {
	for _, in := range []string{"foo://x", "docker:busybox", "docker://", "docker://UPPER/Case::", "oci:", "docker-archive:", "busybox"} {
		_, err := Parse(in, false, false)
		if !errors.Is(err, errdefs.ErrUsage) {
			t.Errorf("Parse(%q) = %v, want a usage error", in, err)
		}
	}
}

func TestParseDirectory(t *testing.T) {
	s, err := Parse("./rootfs", true, false)
	if err != nil || s.Transport != Directory || s.Path != "./rootfs" {
		t.Fatalf("Parse(./rootfs) = %+v, %v", s, err)
	}
}
