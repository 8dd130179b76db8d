# Lint: gofmt, go vet and staticcheck, once with the default build tags and once with every
# optional tag (suid: starter-suid; kerrtest: the starter's test engine; e2e: the e2e tests).
# gofmt sees the files git knows (ignored work directories such as bench/out/ are skipped).
LINT_TAGS := e2e,suid,kerrtest
GO_FILES := { git ls-files -co --exclude-standard -- '*.go' 2>/dev/null || find . -name '*.go'; }

.PHONY: lint
lint:
	@cd $(SRCDIR) && out=$$($(GO_FILES) | xargs -r $(GOROOT_DIR)/bin/gofmt -l) && \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt:"; echo "$$out"; exit 1; fi
	cd $(SRCDIR) && $(GO) vet ./... && $(GO) vet -tags $(LINT_TAGS) ./...
	@if [ -z "$(STATICCHECK)" ]; then \
		echo "staticcheck not found (run scripts/install-deps.sh, then ./mconfig again)"; exit 1; fi
	cd $(SRCDIR) && $(STATICCHECK) ./... && $(STATICCHECK) -tags $(LINT_TAGS) ./...
