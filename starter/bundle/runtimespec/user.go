package runtimespec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// ErrUnknownUser and ErrUnknownGroup are wrapped when a USER names a user or group that the
// image's /etc/passwd or /etc/group does not have.
var (
	ErrUnknownUser  = errors.New("no such user in the image")
	ErrUnknownGroup = errors.New("no such group in the image")
)

// maxAccountsFile bounds how much of an image's /etc/passwd or /etc/group is read.
const maxAccountsFile = 4 << 20

// PasswdEntry is the part of an /etc/passwd line that USER resolution needs.
type PasswdEntry struct {
	Name string
	UID  uint32
	GID  uint32
}

// GroupEntry is the part of an /etc/group line that USER resolution needs.
type GroupEntry struct {
	Name    string
	GID     uint32
	Members []string
}

// Accounts is an image's /etc/passwd and /etc/group, in file order. Malformed lines and
// NIS "+"/"-" lines are left out, as the C library skips them.
type Accounts struct {
	Users  []PasswdEntry
	Groups []GroupEntry
}

// ReadAccounts reads /etc/passwd and /etc/group of the root filesystem at rootfsDir. Both
// paths are resolved inside rootfsDir, symlinks included, so an image cannot point them at a
// host file. A missing file is empty (scratch images have none); a file that is not a
// regular file, or is over 4 MiB, is an error.
//
// Privileges: none needed beyond read access to the files; as root it reads nothing outside
// rootfsDir.
func ReadAccounts(rootfsDir string) (*Accounts, error) {
	root, err := os.OpenFile(rootfsDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	return ReadAccountsAt(root)
}

// ReadAccountsAt is ReadAccounts on a rootfs directory already open (O_PATH is enough).
func ReadAccountsAt(root *os.File) (*Accounts, error) {
	var a Accounts
	passwd, err := readImageFile(root, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	a.Users = parsePasswd(passwd)
	group, err := readImageFile(root, "/etc/group")
	if err != nil {
		return nil, err
	}
	a.Groups = parseGroup(group)
	return &a, nil
}

// readImageFile returns the contents of the regular file name inside root, or nil when it
// does not exist.
func readImageFile(root *os.File, name string) ([]byte, error) {
	handle, err := pathrs.OpenatInRoot(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	defer handle.Close()
	// Check the type on the O_PATH handle before opening it for reading: a FIFO would block
	// and a device could be anything.
	fi, err := handle.Stat()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is not a regular file", name)
	}
	f, err := pathrs.Reopen(handle, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAccountsFile+1))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if len(data) > maxAccountsFile {
		return nil, fmt.Errorf("image %s is larger than %d bytes", name, maxAccountsFile)
	}
	return data, nil
}

// accountLines yields the colon-separated fields of each line that is neither blank, a
// comment, nor a NIS entry.
func accountLines(data []byte, minFields int, yield func([]string)) {
	// Split, not bufio.Scanner: a scanner stops at an over-long line and would drop every
	// entry after it without a word; data is already bounded by maxAccountsFile.
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < minFields || fields[0] == "" {
			continue
		}
		yield(fields)
	}
}

func parsePasswd(data []byte) []PasswdEntry {
	var users []PasswdEntry
	// name:password:uid:gid:gecos:home:shell
	accountLines(data, 4, func(f []string) {
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 == nil && err2 == nil {
			users = append(users, PasswdEntry{Name: f[0], UID: uid, GID: gid})
		}
	})
	return users
}

func parseGroup(data []byte) []GroupEntry {
	var groups []GroupEntry
	// name:password:gid:member,member
	accountLines(data, 3, func(f []string) {
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		g := GroupEntry{Name: f[0], GID: gid}
		if len(f) > 3 {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.Members = append(g.Members, m)
				}
			}
		}
		groups = append(groups, g)
	})
	return groups
}

// parseID parses a decimal uid or gid. 4294967295 is refused: to setresuid and setresgid it
// means "leave unchanged", which would leave the payload root.
func parseID(s string) (uint32, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal id", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("id %s is out of range", s)
	}
	if n == math.MaxUint32 {
		return 0, fmt.Errorf("id %s is reserved", s)
	}
	return uint32(n), nil
}

func isNumeric(s string) bool {
	return s != "" && strings.TrimLeft(s, "0123456789") == ""
}

// LookupUser returns the uid and primary gid of the user called name.
func (a *Accounts) LookupUser(name string) (uid, gid uint32, err error) {
	if a != nil {
		for _, u := range a.Users {
			if u.Name == name {
				return u.UID, u.GID, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("user %q: %w", name, ErrUnknownUser)
}

// LookupGroup returns the gid of the group called name.
func (a *Accounts) LookupGroup(name string) (gid uint32, err error) {
	if a != nil {
		for _, g := range a.Groups {
			if g.Name == name {
				return g.GID, nil
			}
		}
	}
	return 0, fmt.Errorf("group %q: %w", name, ErrUnknownGroup)
}

// userByUID is the first /etc/passwd entry for uid, as getpwuid finds it.
func (a *Accounts) userByUID(uid uint32) (PasswdEntry, bool) {
	if a != nil {
		for _, u := range a.Users {
			if u.UID == uid {
				return u, true
			}
		}
	}
	return PasswdEntry{}, false
}

// resolvedUser is process.user as the spec wants it.
type resolvedUser struct {
	UID, GID       uint32
	AdditionalGids []uint32
}

// resolveUser turns an image config's USER into ids, the way Docker does:
//   - "" is root;
//   - "uid" or "name": a name must be in /etc/passwd; the primary gid is the user's
//     /etc/passwd gid, or 0 for a uid that has no entry;
//   - ":group" after either sets the primary gid instead (a number, or a name that must be
//     in /etc/group), and then no supplementary groups are added;
//   - otherwise the supplementary groups are those /etc/group lists the user's name in.
func resolveUser(spec string, a *Accounts) (resolvedUser, error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	var (
		r    resolvedUser
		name string
	)
	switch {
	case userPart == "" || isNumeric(userPart):
		if userPart != "" {
			uid, err := parseID(userPart)
			if err != nil {
				return r, err
			}
			r.UID = uid
		}
		if u, ok := a.userByUID(r.UID); ok {
			r.GID, name = u.GID, u.Name
		}
	case a == nil:
		return r, fmt.Errorf("user name %q needs the image's /etc/passwd, which was not read: %w", userPart, ErrUnknownUser)
	default:
		uid, gid, err := a.LookupUser(userPart)
		if err != nil {
			return r, err
		}
		r.UID, r.GID, name = uid, gid, userPart
	}

	switch {
	case groupPart == "":
	case isNumeric(groupPart):
		gid, err := parseID(groupPart)
		if err != nil {
			return r, err
		}
		r.GID = gid
		return r, nil
	default:
		gid, err := a.LookupGroup(groupPart)
		if err != nil {
			return r, err
		}
		r.GID = gid
		return r, nil
	}

	if name == "" || a == nil {
		return r, nil
	}
	for _, g := range a.Groups {
		if g.GID != r.GID && slices.Contains(g.Members, name) && !slices.Contains(r.AdditionalGids, g.GID) {
			r.AdditionalGids = append(r.AdditionalGids, g.GID)
		}
	}
	return r, nil
}
