package runtimespec

import (
	"strings"
	"testing"
)

// TestAccountsAfterAnOverlongLineAreRead: a line longer than any scanner buffer must not end
// the parse silently (later users would then resolve wrongly).
func TestAccountsAfterAnOverlongLineAreRead(t *testing.T) {
	long := strings.Repeat("x", maxAccountsFile+1)
	users := parsePasswd([]byte("root:x:0:0::/root:/bin/sh\n" + long + "\nalice:x:1000:1000::/home/alice:/bin/sh\n"))
	if len(users) != 2 || users[1].Name != "alice" {
		t.Fatalf("users = %+v, want root and alice", users)
	}
}
