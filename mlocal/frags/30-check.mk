# Testing, from the source directory. The e2e tests install kerr into a temporary prefix by
# themselves (./mconfig -b TMP/build && make -C TMP/build install).
GO_TEST_UNIT := cd $(SRCDIR) && $(GO) test ./...
GO_TEST_E2E := cd $(SRCDIR) && $(GO) test -tags e2e -count=1 -timeout 45m ./e2e/...

.PHONY: check check-unit check-e2e demo
check:
	$(GO_TEST_UNIT)
	$(GO_TEST_E2E)
check-unit:
	$(GO_TEST_UNIT)
check-e2e:
	$(GO_TEST_E2E)

# The demo runs the installed kerr: `kerr oci` needs the starter at its compile-time path.
demo: install
	KERR=$(DESTDIR)$(BINDIR)/kerr $(SRCDIR)/scripts/demo.sh
