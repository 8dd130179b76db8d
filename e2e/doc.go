// Package e2e holds kerr's end-to-end tests. They build and install kerr into a temporary
// prefix and run the installed binaries as root and as an unprivileged account, against
// registries and images the suite makes itself (see internal/harness and internal/fixture).
//
// The tests carry the build tag e2e and must run as root, from the repository root:
//
//	go test -tags e2e -count=1 ./e2e/...
//
// KERR_E2E_PREFIX=/some/prefix skips the build and tests that install instead;
// KERR_E2E_KEEP=1 keeps the temporary tree for a look after the run.
package e2e
