package policy

import (
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

var (
	alice = Caller{UID: 1000, Name: "alice", GID: 1000, GIDs: []uint32{1000, 2000}, Groups: []string{"alice", "hpc"}}
	bob   = Caller{UID: 1001, Name: "bob", GID: 1001, GIDs: []uint32{1001}, Groups: []string{"bob"}}
	root  = Caller{UID: 0, Name: "root", GIDs: []uint32{0}, Groups: []string{"root"}}
	// noname has no passwd or group entries: only numeric entries can name it.
	noname = Caller{UID: 4242, GID: 4343}
	// toor is uid 0 under another name: still root.
	toor = Caller{UID: 0, Name: "toor", GID: 0}
)

// aliceSIF is a SIF of alice's in her home.
func aliceSIF() Image {
	return Image{Path: "/home/alice/app.sif", Format: FormatSIF, UID: 1000, Owner: "alice", GID: 1000, Group: "alice", Perm: 0o644}
}

// rootSIF is a SIF owned by root, group hpc (gid 2000), in /opt/images.
func rootSIF() Image {
	return Image{Path: "/opt/images/app.sif", Format: FormatSIF, UID: 0, Owner: "root", GID: 2000, Group: "hpc", Perm: 0o644}
}

func req(c Caller, img Image) *Request {
	return &Request{Caller: c, Mode: ModeSetuid, Image: img}
}

type decideCase struct {
	name   string
	edit   func(p *Policy) // changes to the default policy
	req    *Request
	key    string // "" when allowed
	item   string // the denial's Item, when key is set and item is not ""
	msg    string // the exact message, when not ""
	reason string // a part of the message, when not ""
}

func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Default()
			if tc.edit != nil {
				tc.edit(p)
			}
			d, err := p.Decide(tc.req)
			if tc.key == "" {
				if err != nil || d == nil {
					t.Fatalf("Decide = %v, %v; want allowed", d, err)
				}
				return
			}
			var den *Denial
			if !errors.As(err, &den) {
				t.Fatalf("Decide = %v, %v; want a denial by %s", d, err, tc.key)
			}
			if d != nil {
				t.Errorf("a denial came with a decision %+v", d)
			}
			if !errors.Is(err, errdefs.ErrDenied) || errdefs.ExitCode(err) != errdefs.ExitDenied {
				t.Errorf("%v is not ErrDenied (exit %d)", err, errdefs.ExitCode(err))
			}
			if den.Key != tc.key {
				t.Errorf("denied by %s (%v), want %s", den.Key, err, tc.key)
			}
			if tc.item != "" && den.Item != tc.item {
				t.Errorf("item %q, want %q", den.Item, tc.item)
			}
			msg := err.Error()
			if tc.msg != "" && msg != tc.msg {
				t.Errorf("message\n %s\nwant\n %s", msg, tc.msg)
			}
			if tc.reason != "" && !strings.Contains(msg, tc.reason) {
				t.Errorf("message %q does not say %q", msg, tc.reason)
			}
			if !strings.Contains(msg, "denied by "+tc.key) || strings.Contains(msg, "\n") {
				t.Errorf("message %q does not name the key on one line", msg)
			}
		})
	}
}

func withBinds(r *Request, srcs ...string) *Request {
	for _, s := range srcs {
		r.Binds = append(r.Binds, Bind{Source: s})
	}
	return r
}

func withNS(r *Request, ns ...string) *Request {
	r.Namespaces = ns
	return r
}

func withCaps(r *Request, caps ...string) *Request {
	r.Capabilities = caps
	return r
}

func withMode(r *Request, m Mode) *Request {
	r.Mode = m
	return r
}

func TestDecideDefaultPolicyAllowsPlainRun(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "sif", req: req(alice, aliceSIF())},
		{name: "sandbox", req: req(alice, Image{Path: "/home/alice/sb", Format: FormatSandbox, UID: 1000, Perm: 0o755})},
		{name: "userns", req: withMode(req(alice, aliceSIF()), ModeUserNS)},
		{name: "default namespaces", req: withNS(req(alice, aliceSIF()), "pid", "ipc", "uts")},
		{name: "bind scratch", req: withBinds(req(alice, aliceSIF()), "/scratch/alice", "/home/alice/data")},
		{name: "no names", req: req(noname, aliceSIF())},
	})
}

func TestDecideAccess(t *testing.T) {
	off := func(p *Policy) { p.Access.AllowSetuid, p.Access.AllowUserNamespaces = false, false }
	users := func(u ...string) func(*Policy) { return func(p *Policy) { p.Access.Users = u } }
	groups := func(g ...string) func(*Policy) { return func(p *Policy) { p.Access.Groups = g } }
	both := func(p *Policy) { p.Access.Users, p.Access.Groups = []string{"carol"}, []string{"lab"} }
	runDecide(t, []decideCase{
		{name: "setuid off", edit: off, req: req(alice, aliceSIF()), key: "access.allow_setuid",
			msg: "setuid run for alice (uid 1000): denied by access.allow_setuid (false)"},
		{name: "setuid off, userns on", edit: func(p *Policy) { p.Access.AllowSetuid = false },
			req: withMode(req(alice, aliceSIF()), ModeUserNS)},
		{name: "userns off", edit: off, req: withMode(req(alice, aliceSIF()), ModeUserNS), key: "access.allow_user_namespaces"},
		{name: "userns off, setuid on", edit: func(p *Policy) { p.Access.AllowUserNamespaces = false }, req: req(alice, aliceSIF())},
		{name: "root with both off", edit: off, req: req(root, aliceSIF())},
		{name: "root by uid, other name", edit: off, req: withMode(req(toor, aliceSIF()), ModeUserNS)},

		{name: "empty lists", req: req(bob, aliceSIF())},
		{name: "user listed", edit: users("bob", "alice"), req: req(alice, aliceSIF())},
		{name: "user listed by uid", edit: users("1000"), req: req(alice, aliceSIF())},
		{name: "nameless user listed by uid", edit: users("4242"), req: req(noname, aliceSIF())},
		{name: "user not listed", edit: users("alice"), req: req(bob, aliceSIF()), key: "access.users", item: "bob",
			msg: "user bob (uid 1001): denied by access.users (not listed)"},
		{name: "user name is not a uid", edit: users("1001"), req: req(alice, aliceSIF()), key: "access.users"},
		{name: "user prefix", edit: users("ali"), req: req(alice, aliceSIF()), key: "access.users"},
		{name: "group by name", edit: groups("hpc"), req: req(alice, aliceSIF())},
		{name: "group by gid of a supplementary group", edit: groups("2000"), req: req(alice, aliceSIF())},
		{name: "group by primary gid not in GIDs", edit: groups("4343"), req: req(noname, aliceSIF())},
		{name: "group not matched", edit: groups("hpc"), req: req(bob, aliceSIF()), key: "access.groups",
			msg: `user bob (uid 1001): denied by access.groups (in none of "hpc")`},
		{name: "user name is not a group", edit: groups("bob"), req: req(Caller{UID: 1001, Name: "bob", GID: 100, Groups: []string{"users"}}, aliceSIF()), key: "access.groups"},
		{name: "nameless caller", edit: groups("hpc"), req: req(noname, aliceSIF()), key: "access.groups", item: "4242",
			reason: "user uid 4242: denied"},
		{name: "both lists, by group", edit: both, req: req(Caller{UID: 7, Name: "x", Groups: []string{"lab"}}, aliceSIF())},
		{name: "both lists, by user", edit: both, req: req(Caller{UID: 8, Name: "carol"}, aliceSIF())},
		{name: "both lists, neither", edit: both, req: req(alice, aliceSIF()), key: "access.users", reason: "access.groups"},
		{name: "root not listed", edit: users("alice"), req: req(root, aliceSIF())},
		{name: "setuid checked before the lists", edit: func(p *Policy) { off(p); users("alice")(p) }, req: req(bob, aliceSIF()), key: "access.allow_setuid"},
	})
}

func TestDecideImages(t *testing.T) {
	sandbox := Image{Path: "/home/alice/sb", Format: FormatSandbox, UID: 1000, Owner: "alice", GID: 1000, Group: "alice", Perm: 0o755}
	set := func(f func(*Images)) func(*Policy) { return func(p *Policy) { f(&p.Images) } }
	at := func(img Image, path string) Image { img.Path = path; return img }
	runDecide(t, []decideCase{
		{name: "sandbox refused", edit: set(func(i *Images) { i.Formats = []string{"sif"} }), req: req(alice, sandbox),
			key: "images.formats", item: "sandbox", msg: `image /home/alice/sb: denied by images.formats (sandbox is not one of "sif")`},
		{name: "sif allowed", edit: set(func(i *Images) { i.Formats = []string{"sif"} }), req: req(alice, aliceSIF())},
		{name: "no format", edit: set(func(i *Images) { i.Formats = nil }), req: req(alice, aliceSIF()), key: "images.formats", reason: "no format allowed"},
		{name: "root runs any format", edit: set(func(i *Images) { i.Formats = nil }), req: req(root, sandbox)},

		{name: "owner by name", edit: set(func(i *Images) { i.LimitOwners = []string{"root", "alice"} }), req: req(alice, aliceSIF())},
		{name: "owner by uid", edit: set(func(i *Images) { i.LimitOwners = []string{"0"} }), req: req(alice, rootSIF())},
		{name: "owner refused", edit: set(func(i *Images) { i.LimitOwners = []string{"root"} }), req: req(alice, aliceSIF()),
			key: "images.limit_owners", item: "/home/alice/app.sif",
			msg: "image /home/alice/app.sif: denied by images.limit_owners (owned by alice (uid 1000))"},
		{name: "owner without name", edit: set(func(i *Images) { i.LimitOwners = []string{"root"} }),
			req: req(alice, Image{Path: "/x.sif", Format: FormatSIF, UID: 77}), key: "images.limit_owners", reason: "(owned by uid 77)"},
		{name: "owner list is not a group list", edit: set(func(i *Images) { i.LimitOwners = []string{"hpc"} }), req: req(alice, rootSIF()), key: "images.limit_owners"},
		{name: "root ignores owners", edit: set(func(i *Images) { i.LimitOwners = []string{"nobody"} }), req: req(root, aliceSIF())},

		{name: "group by name", edit: set(func(i *Images) { i.LimitGroups = []string{"hpc"} }), req: req(alice, rootSIF())},
		{name: "group by gid", edit: set(func(i *Images) { i.LimitGroups = []string{"2000"} }), req: req(alice, rootSIF())},
		{name: "group refused", edit: set(func(i *Images) { i.LimitGroups = []string{"hpc"} }), req: req(alice, aliceSIF()),
			key: "images.limit_groups", reason: "(group alice (gid 1000))"},
		{name: "image group, not caller's groups", edit: set(func(i *Images) { i.LimitGroups = []string{"hpc"} }), req: req(alice, aliceSIF()), key: "images.limit_groups"},

		{name: "every limit applies: owner ok, group not", edit: set(func(i *Images) {
			i.LimitOwners, i.LimitGroups = []string{"root"}, []string{"admins"}
		}), req: req(alice, rootSIF()), key: "images.limit_groups"},
		{name: "every limit applies: owner and group ok, path not", edit: set(func(i *Images) {
			i.LimitOwners, i.LimitGroups, i.LimitPaths = []string{"root"}, []string{"hpc"}, []string{"/srv/images"}
		}), req: req(alice, rootSIF()), key: "images.limit_paths"},

		{name: "path beneath", edit: set(func(i *Images) { i.LimitPaths = []string{"/srv", "/opt/images"} }), req: req(alice, rootSIF())},
		{name: "path deep beneath", edit: set(func(i *Images) { i.LimitPaths = []string{"/opt"} }), req: req(alice, at(rootSIF(), "/opt/images/a/b/c.sif"))},
		{name: "sandbox is the path", edit: set(func(i *Images) { i.LimitPaths = []string{"/home/alice/sb"} }), req: req(alice, sandbox)},
		{name: "path prefix trickery", edit: set(func(i *Images) { i.LimitPaths = []string{"/opt/images"} }),
			req: req(alice, at(rootSIF(), "/opt/images2/app.sif")), key: "images.limit_paths",
			msg: `image /opt/images2/app.sif: denied by images.limit_paths (not under "/opt/images")`},
		{name: "path dot-dot", edit: set(func(i *Images) { i.LimitPaths = []string{"/opt/images"} }),
			req: req(alice, at(rootSIF(), "/opt/images/../../home/alice/app.sif")), key: "images.limit_paths", item: "/home/alice/app.sif"},
		{name: "path trailing slash and dots", edit: set(func(i *Images) { i.LimitPaths = []string{"/opt/images"} }),
			req: req(alice, at(sandbox, "/opt/./images//sb/"))},
		{name: "path above", edit: set(func(i *Images) { i.LimitPaths = []string{"/opt/images"} }),
			req: req(alice, at(sandbox, "/opt")), key: "images.limit_paths"},
		{name: "path root dir allows all", edit: set(func(i *Images) { i.LimitPaths = []string{"/"} }), req: req(alice, aliceSIF())},
		{name: "root ignores paths", edit: set(func(i *Images) { i.LimitPaths = []string{"/nowhere"} }), req: req(root, aliceSIF())},
	})
}

func TestDecideBinds(t *testing.T) {
	mounts := func(f func(*Mounts)) func(*Policy) { return func(p *Policy) { f(&p.Mounts) } }
	r := func(srcs ...string) *Request { return withBinds(req(alice, aliceSIF()), srcs...) }
	runDecide(t, []decideCase{
		{name: "deny exact", req: r("/etc/shadow"), key: "mounts.user_bind_deny", item: "/etc/shadow",
			msg: `bind /etc/shadow: denied by mounts.user_bind_deny ("/etc/shadow")`},
		{name: "deny trailing slash", req: r("/root/"), key: "mounts.user_bind_deny", item: "/root"},
		{name: "deny beneath", req: r("/root/.ssh/id_rsa"), key: "mounts.user_bind_deny", reason: `("/root")`},
		{name: "deny above", req: r("/etc"), key: "mounts.user_bind_deny",
			msg: `bind /etc: denied by mounts.user_bind_deny ("/etc/shadow" lies beneath it)`},
		{name: "deny above: slash exposes /root", edit: mounts(func(m *Mounts) { m.UserBindDeny = []string{"/root"} }),
			req: r("/"), key: "mounts.user_bind_deny", item: "/"},
		{name: "deny dot-dot", req: r("/tmp/../etc/./shadow"), key: "mounts.user_bind_deny", item: "/etc/shadow"},
		{name: "deny dot-dot back out", req: r("/root/../home/alice")},
		{name: "deny prefix trickery", req: r("/etc/shadowfoo")},
		{name: "deny prefix trickery, sibling dir", req: r("/rootfs/data")},
		{name: "deny sibling below a denied parent", req: r("/etc/hosts")},
		{name: "second bind denied", req: r("/scratch", "/proc/1"), key: "mounts.user_bind_deny", item: "/proc/1"},
		{name: "deny entry with trailing slash in code", edit: mounts(func(m *Mounts) { m.UserBindDeny = []string{"/data/secret/"} }),
			req: r("/data/secret/x"), key: "mounts.user_bind_deny"},
		{name: "empty deny list", edit: mounts(func(m *Mounts) { m.UserBindDeny = nil }), req: r("/etc/shadow")},

		{name: "allow beneath", edit: mounts(func(m *Mounts) { m.UserBindAllow = []string{"/scratch", "/data"} }), req: r("/data/x", "/scratch")},
		{name: "allow refused", edit: mounts(func(m *Mounts) { m.UserBindAllow = []string{"/scratch", "/data"} }), req: r("/home/alice"),
			key: "mounts.user_bind_allow", msg: `bind /home/alice: denied by mounts.user_bind_allow (not under "/scratch", "/data")`},
		{name: "allow prefix trickery", edit: mounts(func(m *Mounts) { m.UserBindAllow = []string{"/data"} }), req: r("/database"), key: "mounts.user_bind_allow"},
		{name: "allow above refused", edit: mounts(func(m *Mounts) { m.UserBindAllow = []string{"/data/alice"} }), req: r("/data"), key: "mounts.user_bind_allow"},
		{name: "allow dot-dot escape", edit: mounts(func(m *Mounts) { m.UserBindAllow = []string{"/data"} }), req: r("/data/../home"), key: "mounts.user_bind_allow", item: "/home"},
		{name: "deny wins over allow", edit: mounts(func(m *Mounts) {
			m.UserBindAllow, m.UserBindDeny = []string{"/data"}, []string{"/data/secret"}
		}), req: r("/data/secret/x"), key: "mounts.user_bind_deny"},
		{name: "deny above within allow", edit: mounts(func(m *Mounts) {
			m.UserBindAllow, m.UserBindDeny = []string{"/data"}, []string{"/data/secret"}
		}), req: r("/data"), key: "mounts.user_bind_deny"},

		{name: "user binds off", edit: mounts(func(m *Mounts) { m.UserBinds = false }), req: r("/scratch"), key: "mounts.user_binds",
			msg: "bind /scratch: denied by mounts.user_binds (false)"},
		{name: "user binds off, no binds", edit: mounts(func(m *Mounts) { m.UserBinds = false }), req: r()},
		{name: "root binds anything", edit: mounts(func(m *Mounts) { m.UserBinds = false }), req: withBinds(req(root, aliceSIF()), "/etc/shadow", "/")},
		{name: "root ignores deny", req: withBinds(req(root, aliceSIF()), "/", "/root")},
	})
}

func TestDecideNamespaces(t *testing.T) {
	grant := func(g NamespaceGrant) func(*Policy) {
		return func(p *Policy) { p.Namespaces.Grant = append(p.Namespaces.Grant, g) }
	}
	runDecide(t, []decideCase{
		{name: "allowed", req: withNS(req(alice, aliceSIF()), "pid", "uts")},
		{name: "net refused", req: withNS(req(alice, aliceSIF()), "pid", "net"), key: "namespaces.allow", item: "net",
			msg: "namespace net: denied by namespaces.allow (not allowed to all, nor granted to alice (uid 1000) by namespaces.grant)"},
		{name: "empty allow", edit: func(p *Policy) { p.Namespaces.Allow = nil }, req: withNS(req(alice, aliceSIF()), "pid"), key: "namespaces.allow"},
		{name: "granted to user", edit: grant(NamespaceGrant{Users: []string{"alice"}, Namespaces: []string{"net"}}), req: withNS(req(alice, aliceSIF()), "net")},
		{name: "granted to uid", edit: grant(NamespaceGrant{Users: []string{"1000"}, Namespaces: []string{"net"}}), req: withNS(req(alice, aliceSIF()), "net")},
		{name: "granted to group by name", edit: grant(NamespaceGrant{Groups: []string{"hpc"}, Namespaces: []string{"net", "cgroup"}}), req: withNS(req(alice, aliceSIF()), "cgroup")},
		{name: "granted to group by gid", edit: grant(NamespaceGrant{Groups: []string{"2000"}, Namespaces: []string{"net"}}), req: withNS(req(alice, aliceSIF()), "net")},
		{name: "grant to another user", edit: grant(NamespaceGrant{Users: []string{"bob"}, Namespaces: []string{"net"}}), req: withNS(req(alice, aliceSIF()), "net"), key: "namespaces.allow"},
		{name: "grant to another group", edit: grant(NamespaceGrant{Groups: []string{"hpc"}, Namespaces: []string{"net"}}), req: withNS(req(bob, aliceSIF()), "net"), key: "namespaces.allow"},
		{name: "grant of another namespace", edit: grant(NamespaceGrant{Users: []string{"alice"}, Namespaces: []string{"cgroup"}}), req: withNS(req(alice, aliceSIF()), "net"), key: "namespaces.allow"},
		{name: "root asks any", edit: func(p *Policy) { p.Namespaces.Allow = nil }, req: withNS(req(root, aliceSIF()), "net", "cgroup", "pid")},
	})
}

func TestDecideCapabilities(t *testing.T) {
	grant := func(g CapabilityGrant) func(*Policy) {
		return func(p *Policy) { p.Capabilities.Grant = append(p.Capabilities.Grant, g) }
	}
	runDecide(t, []decideCase{
		{name: "none by default", req: withCaps(req(alice, aliceSIF()), "CAP_NET_RAW"), key: "capabilities.grant", item: "CAP_NET_RAW",
			msg: "capability CAP_NET_RAW: denied by capabilities.grant (not granted to alice (uid 1000))"},
		{name: "root_keeps is not for users", req: withCaps(req(alice, aliceSIF()), "CAP_CHOWN"), key: "capabilities.grant"},
		{name: "granted to user", edit: grant(CapabilityGrant{Users: []string{"alice"}, Capabilities: []string{"CAP_NET_RAW"}}), req: withCaps(req(alice, aliceSIF()), "CAP_NET_RAW")},
		{name: "granted to group", edit: grant(CapabilityGrant{Groups: []string{"hpc"}, Capabilities: []string{"CAP_NET_RAW", "CAP_IPC_LOCK"}}), req: withCaps(req(alice, aliceSIF()), "CAP_IPC_LOCK", "CAP_NET_RAW")},
		{name: "granted to gid", edit: grant(CapabilityGrant{Groups: []string{"2000"}, Capabilities: []string{"CAP_NET_RAW"}}), req: withCaps(req(alice, aliceSIF()), "CAP_NET_RAW")},
		{name: "group grant, not member", edit: grant(CapabilityGrant{Groups: []string{"hpc"}, Capabilities: []string{"CAP_NET_RAW"}}), req: withCaps(req(bob, aliceSIF()), "CAP_NET_RAW"), key: "capabilities.grant"},
		{name: "one of two not granted", edit: grant(CapabilityGrant{Users: []string{"alice"}, Capabilities: []string{"CAP_NET_RAW"}}),
			req: withCaps(req(alice, aliceSIF()), "CAP_NET_RAW", "CAP_SYS_ADMIN"), key: "capabilities.grant", item: "CAP_SYS_ADMIN"},
		{name: "root asks any", req: withCaps(req(root, aliceSIF()), "CAP_SYS_ADMIN")},
	})
}

func TestDecideOrderReportsFirstDenial(t *testing.T) {
	p := Default()
	p.Access.Users = []string{"alice"}
	p.Images.LimitPaths = []string{"/srv"}
	r := withCaps(withNS(withBinds(req(bob, aliceSIF()), "/etc/shadow"), "net"), "CAP_SYS_ADMIN")
	steps := []struct {
		key string
		fix func()
	}{
		{"access.users", func() { r.Caller = alice }},
		{"images.limit_paths", func() { p.Images.LimitPaths = nil }},
		{"mounts.user_bind_deny", func() { r.Binds = nil }},
		{"namespaces.allow", func() { r.Namespaces = nil }},
		{"capabilities.grant", func() { r.Capabilities = nil }},
	}
	for _, s := range steps {
		_, err := p.Decide(r)
		var den *Denial
		if !errors.As(err, &den) || den.Key != s.key {
			t.Fatalf("Decide = %v, want a denial by %s", err, s.key)
		}
		s.fix()
	}
	if _, err := p.Decide(r); err != nil {
		t.Fatalf("all fixed: %v", err)
	}
}

func TestDecideMalformedRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *Request)
		msg  string
	}{
		{"mode", func(r *Request) { r.Mode = "" }, `mode ""`},
		{"relative image", func(r *Request) { r.Image.Path = "app.sif" }, `image path "app.sif"`},
		{"format", func(r *Request) { r.Image.Format = "ext3" }, `image format "ext3"`},
		{"relative bind", func(r *Request) { r.Binds = []Bind{{Source: "data"}} }, `bind source "data"`},
		{"relative dest", func(r *Request) { r.Binds = []Bind{{Source: "/data", Dest: "data"}} }, `bind destination "data"`},
		{"namespace", func(r *Request) { r.Namespaces = []string{"user"} }, `namespace "user"`},
		{"capability", func(r *Request) { r.Capabilities = []string{"cap_chown"} }, `"cap_chown" is not a capability`},
	} {
		for _, c := range []Caller{alice, root} {
			r := req(c, aliceSIF())
			tc.edit(r)
			d, err := Default().Decide(r)
			if d != nil || !errors.Is(err, errdefs.ErrUsage) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s, %s: Decide = %v, %v; want a usage error saying %q", tc.name, c.Name, d, err, tc.msg)
			}
		}
	}
}

func TestDecideSquashfs(t *testing.T) {
	rootWritable := rootSIF()
	rootWritable.Perm = 0o664
	sandbox := Image{Path: "/sb", Format: FormatSandbox}
	for _, tc := range []struct {
		setting string
		c       Caller
		mode    Mode
		img     Image
		want    Squashfs
	}{
		{"root-owned", alice, ModeSetuid, rootSIF(), SquashfsKernel},
		{"root-owned", alice, ModeSetuid, aliceSIF(), SquashfsFUSE},
		{"root-owned", alice, ModeSetuid, rootWritable, SquashfsFUSE},
		{"always", alice, ModeSetuid, aliceSIF(), SquashfsKernel},
		{"never", alice, ModeSetuid, rootSIF(), SquashfsFUSE},
		{"never", root, ModeSetuid, aliceSIF(), SquashfsKernel},
		{"always", alice, ModeUserNS, rootSIF(), SquashfsFUSE},
		{"always", root, ModeUserNS, rootSIF(), SquashfsFUSE},
		{"always", alice, ModeSetuid, sandbox, SquashfsNone},
	} {
		p := Default()
		p.Images.KernelSquashfs = tc.setting
		r := req(tc.c, tc.img)
		r.Mode = tc.mode
		d, err := p.Decide(r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Squashfs != tc.want {
			t.Errorf("kernel_squashfs %q, %s, %s, %s owned by %d mode %04o: %q, want %q",
				tc.setting, tc.c.Name, tc.mode, tc.img.Format, tc.img.UID, tc.img.Perm, d.Squashfs, tc.want)
		}
	}
}

func TestDecideCapabilitiesKept(t *testing.T) {
	p := Default()
	p.Capabilities.Grant = []CapabilityGrant{{Users: []string{"alice"}, Capabilities: []string{"CAP_NET_RAW", "CAP_IPC_LOCK"}}}
	for _, tc := range []struct {
		c    Caller
		ask  []string
		want []string
	}{
		{alice, nil, []string{}},
		{alice, []string{"CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_NET_RAW"}, []string{"CAP_NET_RAW", "CAP_IPC_LOCK"}},
		{root, nil, p.Capabilities.RootKeeps},
		{root, []string{"CAP_SYS_ADMIN"}, []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
			"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
			"CAP_SYS_CHROOT", "CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}},
	} {
		d, err := p.Decide(withCaps(req(tc.c, aliceSIF()), tc.ask...))
		if err != nil {
			t.Fatal(err)
		}
		want := inOrder(capabilityNames, tc.want)
		if !reflect.DeepEqual(d.Capabilities, want) {
			t.Errorf("%s asking %v keeps %v, want %v", tc.c.Name, tc.ask, d.Capabilities, want)
		}
	}
}

func TestGranted(t *testing.T) {
	p := Default()
	p.Namespaces.Allow = []string{"uts", "pid"}
	p.Namespaces.Grant = []NamespaceGrant{
		{Users: []string{"bob"}, Namespaces: []string{"cgroup"}},
		{Groups: []string{"hpc"}, Namespaces: []string{"net", "pid"}},
	}
	p.Capabilities.Grant = []CapabilityGrant{
		{Users: []string{"alice"}, Capabilities: []string{"CAP_NET_RAW"}},
		{Groups: []string{"2000"}, Capabilities: []string{"CAP_IPC_LOCK", "CAP_NET_RAW"}},
		{Users: []string{"bob"}, Capabilities: []string{"CAP_SYS_NICE"}},
	}
	for _, tc := range []struct {
		c        Caller
		ns, caps []string
	}{
		{alice, []string{"pid", "uts", "net"}, []string{"CAP_NET_RAW", "CAP_IPC_LOCK"}},
		{bob, []string{"pid", "uts", "cgroup"}, []string{"CAP_SYS_NICE"}},
		{noname, []string{"pid", "uts"}, []string{}},
		{root, namespaceNames, capabilityNames},
	} {
		if got := p.GrantedNamespaces(&tc.c); !reflect.DeepEqual(got, tc.ns) {
			t.Errorf("GrantedNamespaces(%s) = %v, want %v", tc.c.String(), got, tc.ns)
		}
		if got := p.GrantedCapabilities(&tc.c); !reflect.DeepEqual(got, tc.caps) {
			t.Errorf("GrantedCapabilities(%s) = %v, want %v", tc.c.String(), got, tc.caps)
		}
	}
	if got := Default().GrantedCapabilities(&alice); len(got) != 0 {
		t.Errorf("the default policy grants %v", got)
	}
}

func TestBeneath(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/etc/shadow", "/etc/shadow", true},
		{"/etc/shadow/x", "/etc/shadow", true},
		{"/etc/shadowfoo", "/etc/shadow", false},
		{"/etc/shadow.d/x", "/etc/shadow", false},
		{"/etc", "/etc/shadow", false},
		{"/etc/shadow/", "/etc/shadow", true},
		{"/etc/shadow", "/etc/shadow/", true},
		{"/etc/x/../shadow", "/etc/shadow", true},
		{"/anything", "/", true},
		{"/", "/", true},
		{"/", "/root", false},
		{"//root", "/root", true},
	} {
		if got := beneath(tc.path, tc.dir); got != tc.want {
			t.Errorf("beneath(%q, %q) = %v, want %v", tc.path, tc.dir, got, tc.want)
		}
	}
}

func TestDenialLocate(t *testing.T) {
	data, err := os.ReadFile("../etc/kerr/kerr.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("kerr.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Decide(withBinds(req(alice, aliceSIF()), "/etc/shadow"))
	var den *Denial
	if !errors.As(err, &den) {
		t.Fatalf("Decide = %v", err)
	}
	den.Locate("kerr.toml", data)
	want := 0
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "user_bind_deny =") {
			want = i + 1
		}
	}
	if want == 0 || den.Line != want {
		t.Fatalf("line %d, want %d", den.Line, want)
	}
	if msg := den.Error(); !strings.HasSuffix(msg, ` ("/etc/shadow") at kerr.toml:`+strconv.Itoa(want)) {
		t.Errorf("message %q", msg)
	}

	// A key the file does not set is its default.
	src := []byte("[mounts]\nhome = true\n")
	den = &Denial{Key: "mounts.user_bind_deny", Subject: "bind /root", Reason: `"/root"`}
	den.Locate("p.toml", src)
	if want := `bind /root: denied by mounts.user_bind_deny ("/root") (the default: p.toml does not set it)`; den.Error() != want || den.Line != 0 {
		t.Errorf("message %q line %d, want %q", den.Error(), den.Line, want)
	}

	// Grants are found at their first table.
	src = []byte("[namespaces]\nallow = []\n\n[[capabilities.grant]]\nusers = [\"bob\"]\ncapabilities = [\"CAP_KILL\"]\n")
	if p, err = Parse("p.toml", src); err != nil {
		t.Fatal(err)
	}
	_, err = p.Decide(withCaps(req(alice, aliceSIF()), "CAP_KILL"))
	if !errors.As(err, &den) {
		t.Fatalf("Decide = %v", err)
	}
	den.Locate("p.toml", src)
	if den.Line != 4 {
		t.Errorf("capabilities.grant at line %d, want 4", den.Line)
	}
}
