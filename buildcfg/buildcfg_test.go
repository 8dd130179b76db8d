package buildcfg

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"testing"
)

// The Makefile sets these variables with -X; the linker silently ignores a name that does
// not exist, so a rename here without one in mlocal/ would ship unconfigured paths.
func TestMakefileSetsOnlyExistingVariables(t *testing.T) {
	frag, err := os.ReadFile("../mlocal/frags/00-env.mk")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`-X \$\(KERR_PKG\)/buildcfg\.(\w+)=`).FindAllStringSubmatch(string(frag), -1) {
		set[m[1]] = true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "buildcfg.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
			for _, s := range g.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					declared[n.Name] = true
				}
			}
		}
	}
	for name := range set {
		if !declared[name] {
			t.Errorf("mlocal/frags/00-env.mk sets buildcfg.%s, which buildcfg does not declare", name)
		}
	}
	for name := range declared {
		if !set[name] {
			t.Errorf("buildcfg.%s is never set by the Makefile", name)
		}
	}
}

// mconfig's defaults (PREFIX/etc, PREFIX/libexec) and C's fallbacks in starter-c/starter.h
// must match these, so that an unconfigured test build agrees with itself.
func TestDefaultsFollowPrefix(t *testing.T) {
	if SysconfDir != Prefix+"/etc" || LibexecDir != Prefix+"/libexec" || LocalstateDir != Prefix+"/var" {
		t.Errorf("defaults %q %q %q do not follow prefix %q", SysconfDir, LibexecDir, LocalstateDir, Prefix)
	}
	if PolicyFile() != SysconfDir+"/kerr/kerr.toml" {
		t.Errorf("PolicyFile() = %q", PolicyFile())
	}
}
