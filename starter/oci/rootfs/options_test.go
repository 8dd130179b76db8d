package rootfs

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	const atime = unix.MOUNT_ATTR__ATIME
	for _, tc := range []struct {
		name   string
		opts   []string
		isBind bool
		want   mountOptions
		err    string
	}{
		{name: "empty", want: mountOptions{}},
		{name: "proc defaults", opts: []string{"nosuid", "noexec", "nodev"},
			want: mountOptions{attrs: attrChange{set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODEV}}},
		{name: "tmpfs data", opts: []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			want: mountOptions{attrs: attrChange{set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_STRICTATIME, clr: atime},
				data: []string{"mode=755", "size=65536k"}}},
		{name: "ro is per-mount and superblock", opts: []string{"ro"},
			want: mountOptions{attrs: attrChange{set: unix.MOUNT_ATTR_RDONLY}, sbFlags: []string{"ro"}}},
		{name: "later wins", opts: []string{"ro", "nosuid", "rw", "suid"},
			want: mountOptions{attrs: attrChange{clr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}, sbFlags: []string{"ro", "rw"}}},
		{name: "atime modes replace each other", opts: []string{"noatime", "relatime"},
			want: mountOptions{attrs: attrChange{clr: atime}}},
		{name: "norelatime is strictatime", opts: []string{"norelatime"},
			want: mountOptions{attrs: attrChange{set: unix.MOUNT_ATTR_STRICTATIME, clr: atime}}},
		{name: "sync dirsync mand", opts: []string{"sync", "dirsync", "mand", "async", "nomand", "defaults"},
			want: mountOptions{sbFlags: []string{"sync", "dirsync", "mand"}}},
		{name: "rbind by option", opts: []string{"rbind", "ro", "rprivate"},
			want: mountOptions{bind: true, recursive: true, attrs: attrChange{set: unix.MOUNT_ATTR_RDONLY},
				propagation: unix.MS_PRIVATE, propRecursive: true}},
		{name: "bind by type", isBind: true, opts: []string{"nodev", "slave"},
			want: mountOptions{bind: true, attrs: attrChange{set: unix.MOUNT_ATTR_NODEV}, propagation: unix.MS_SLAVE}},
		{name: "recursive attrs", opts: []string{"rbind", "rro", "rnosuid", "rnoatime", "noexec"},
			want: mountOptions{bind: true, recursive: true,
				attrs:  attrChange{set: unix.MOUNT_ATTR_NOEXEC},
				rattrs: attrChange{set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOATIME, clr: atime}}},
		{name: "rrw clears", opts: []string{"bind", "rrw", "rsuid"},
			want: mountOptions{bind: true, rattrs: attrChange{clr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}}},
		{name: "remount", opts: []string{"remount", "ro", "nosymfollow"},
			want: mountOptions{remount: true, attrs: attrChange{set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSYMFOLLOW}, sbFlags: []string{"ro"}}},
		{name: "devpts data", opts: []string{"newinstance", "ptmxmode=0666", "gid=5"},
			want: mountOptions{data: []string{"newinstance", "ptmxmode=0666", "gid=5"}}},
		// Filesystem options on a bind mount are dropped, as the kernel, runc and crun do.
		{name: "data on bind", isBind: true, opts: []string{"foo", "nodev"},
			want: mountOptions{bind: true, attrs: attrChange{set: unix.MOUNT_ATTR_NODEV}}},
		{name: "data on rbind option", opts: []string{"rbind", "mode=755"},
			want: mountOptions{bind: true, recursive: true}},
		{name: "sync on bind", opts: []string{"bind", "sync"}, err: `option "sync" changes the filesystem`},
		{name: "tmpcopyup", opts: []string{"tmpcopyup"}, err: "tmpcopyup is not supported"},
		{name: "idmap", opts: []string{"bind", "idmap"}, err: "id-mapped mounts are not supported"},
		{name: "empty option", opts: []string{""}, err: "empty option"},
		{name: "comma", opts: []string{"size=1,mode=2"}, err: "contains a comma"},
		{name: "no name", opts: []string{"=x"}, err: "has no name"},
		{name: "control char", opts: []string{"a\nb"}, err: "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOptions(tc.opts, tc.isBind)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEveryRecursiveAttrHasABase(t *testing.T) {
	for r, base := range recursiveAttrs {
		s, ok := options[base]
		if !ok || (s.kind != optAttr && s.kind != optSB) || "r"+base != r {
			t.Errorf("%s -> %s is not the recursive form of a per-mount attribute", r, base)
		}
	}
}

func TestDescribeAttrs(t *testing.T) {
	var a attrChange
	a.add(unix.MOUNT_ATTR_RDONLY, 0)
	a.add(0, unix.MOUNT_ATTR_NOSUID)
	a.add(unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME)
	if got := describeAttrs(a); got != "+ro,-nosuid,noatime" {
		t.Errorf("describeAttrs = %q", got)
	}
}
