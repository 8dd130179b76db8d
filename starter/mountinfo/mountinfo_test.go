package mountinfo

import (
	"fmt"
	"os"
	"testing"
)

const sample = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 98:0 /mnt1 /mnt/a\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
40 36 0:33 / /mnt/a\040b/rootfs rw,relatime - overlay overlay rw,lowerdir=overlay/lower,upperdir=overlay/upper,workdir=overlay/work
41 22 7:3 / /mnt/a\134b ro,nodev,relatime - squashfs /dev/loop3 ro
`

func TestParseUnescapesAndSplitsOptionalFields(t *testing.T) {
	ms, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("got %d mounts", len(ms))
	}
	m := ms[1]
	if m.ID != 36 || m.Parent != 22 || m.Major != 98 || m.Minor != 0 || m.Root != "/mnt1" ||
		m.Mountpoint != "/mnt/a b" || m.Options != "rw,noatime" || m.FSType != "ext3" ||
		m.Source != "/dev/root" || m.SuperOptions != "rw,errors=continue" {
		t.Errorf("line 2 parsed as %+v", m)
	}
	if ms[3].Mountpoint != `/mnt/a\b` || ms[3].FSType != "squashfs" || ms[3].Source != "/dev/loop3" {
		t.Errorf("line 4 parsed as %+v", ms[3])
	}
	if got := Under(ms, "/mnt/a b"); len(got) != 2 || got[1].FSType != "overlay" {
		t.Errorf("Under = %+v", got)
	}
	if got := Under(ms, "/mnt/a"); len(got) != 0 {
		t.Errorf("Under(/mnt/a) matched a sibling by prefix: %+v", got)
	}
	if got := At(ms, "/mnt/a b/rootfs"); len(got) != 1 || got[0].ID != 40 {
		t.Errorf("At = %+v", got)
	}
}

func TestParseRejectsMalformedLines(t *testing.T) {
	for _, bad := range []string{
		"1 2 3\n",
		"x 1 0:1 / / rw - ext4 /dev/x rw\n",
		"1 1 0-1 / / rw - ext4 /dev/x rw\n",
		"1 1 0:1 / / rw shared:1 ext4 /dev/x rw\n",
		"1 1 0:1 / / rw - ext4\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestReadSeesTheRootMount(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(At(ms, "/")) == 0 {
		if _, err := os.Stat("/proc/self/mountinfo"); err == nil {
			t.Errorf("no mount at / in %d mounts", len(ms))
		}
	}
}

// A cgroup tree mounted over an inherited one, as systemd does in a container: the old
// tmpfs and its cgroup mounts are hidden, the new ones and unrelated mounts are not.
func TestVisible(t *testing.T) {
	table := `22 1 0:20 / /sys rw - sysfs sysfs rw
46 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw
47 46 0:28 /.. /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
55 46 0:36 /.. /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
60 1 0:50 / /run rw - tmpfs tmpfs rw
63 46 0:39 / /sys/fs/cgroup ro - tmpfs cgroup ro
64 63 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
72 63 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
80 60 0:51 / /run/user rw - tmpfs tmpfs rw
81 60 0:52 / /run rw - tmpfs tmpfs rw
`
	ms, err := Parse([]byte(table))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, m := range Visible(ms) {
		ids = append(ids, m.ID)
	}
	want := []int{22, 63, 64, 72, 81}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("visible mounts %v, want %v", ids, want)
	}
	// Over "/", everything before is hidden.
	root, _ := Parse([]byte("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:5 / /proc rw - proc proc rw\n3 1 8:2 / / rw - ext4 /dev/sdb rw\n"))
	if v := Visible(root); len(v) != 1 || v[0].ID != 3 {
		t.Errorf("after a mount over /: %v, want only mount 3", v)
	}
}
