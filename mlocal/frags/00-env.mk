# Environment for every recipe: the configured Go first in PATH (tests run `go build`, the
# e2e harness runs ./mconfig), GOTOOLCHAIN when mconfig needed it, the C compiler for cgo.
SHELL := /bin/sh
export PATH := $(GOROOT_DIR)/bin:$(PATH)
export CC := $(CC_CMD)
ifneq ($(GOTOOLCHAIN_SETTING),)
export GOTOOLCHAIN := $(GOTOOLCHAIN_SETTING)
endif

KERR_PKG := github.com/kerr-hpc/kerr
# The paths reach Go only through these -X flags (buildcfg), and C only through config.h.
GO_LDFLAGS := -X $(KERR_PKG)/buildcfg.Version=$(VERSION) \
	-X $(KERR_PKG)/buildcfg.Prefix=$(PREFIX) \
	-X $(KERR_PKG)/buildcfg.SysconfDir=$(SYSCONFDIR) \
	-X $(KERR_PKG)/buildcfg.LibexecDir=$(LIBEXECDIR) \
	-X $(KERR_PKG)/buildcfg.LocalstateDir=$(LOCALSTATEDIR)

DESTDIR ?=
