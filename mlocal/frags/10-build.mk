# Building: kerr and kerr-runc (pure Go), starter and starter-suid (cgo, with the C stage in
# starter-c/). kerr-runc is the OCI runtime alone, with runc's command line: a lean binary,
# as containerd or podman start it for every container.
# Go's cache decides what to rebuild, so the binaries are always handed to `go build`.
TARGETS := $(BUILDDIR)/kerr $(BUILDDIR)/kerr-runc $(BUILDDIR)/starter $(if $(WITH_SUID),$(BUILDDIR)/starter-suid)

# The starters are hardened C+Go programs: PIE, full RELRO, stack protector, fortify.
STARTER_ENV := CGO_ENABLED=1 \
	CGO_CPPFLAGS="-I$(BUILDDIR) -DKERR_HAVE_CONFIG_H -DKERR_CONFIG_ID=$(CONFIG_ID) -D_FORTIFY_SOURCE=2" \
	CGO_CFLAGS="-O2 -g -fstack-protector-strong"
STARTER_BUILD := $(GO) build -trimpath -buildmode=pie \
	-ldflags "$(GO_LDFLAGS) -extldflags '-Wl,-z,relro,-z,now,-z,pack-relative-relocs'"

.PHONY: all kerr kerr-runc starter starter-suid FORCE
all: $(TARGETS)
kerr: $(BUILDDIR)/kerr
kerr-runc: $(BUILDDIR)/kerr-runc
starter: $(BUILDDIR)/starter
starter-suid: $(BUILDDIR)/starter-suid

$(BUILDDIR)/kerr: FORCE
	cd $(SRCDIR) && CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags "$(GO_LDFLAGS)" -o $@ ./cmd/kerr

$(BUILDDIR)/kerr-runc: FORCE
	cd $(SRCDIR) && CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags "$(GO_LDFLAGS)" -o $@ ./cmd/kerr-runc

$(BUILDDIR)/starter: FORCE
	cd $(SRCDIR) && $(STARTER_ENV) $(STARTER_BUILD) -o $@ ./cmd/starter

# starter-suid leaves out the root-only engines: they are built with `!suid`.
$(BUILDDIR)/starter-suid: FORCE
	cd $(SRCDIR) && $(STARTER_ENV) $(STARTER_BUILD) -tags suid -o $@ ./cmd/starter

FORCE:
