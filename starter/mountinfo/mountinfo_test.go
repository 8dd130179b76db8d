package mountinfo

import (
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
