package source

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

// TestRegistryTokenAuth plays a registry with Docker's token flow: a 401 naming a token
// realm, a token endpoint that takes basic credentials, then Bearer requests. kerr must get
// a token with the user's credentials and pull with it; wrong credentials are access denied.
func TestRegistryTokenAuth(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "test/img", imageOf(t, "amd64", nil, gzipLayer(t, file{"a", "1"})))
	const token = "kerr-test-token"
	var tokenCalls, bearerCalls int
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		tokenCalls++
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		if !strings.Contains(r.URL.Query().Get("scope"), "repository:test/img:pull") {
			http.Error(w, "scope "+r.URL.Query().Get("scope"), http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"token": token})
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="kerr-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
			return
		}
		bearerCalls++
		reg.srv.Config.Handler.ServeHTTP(w, r)
	})
	srv = httptest.NewServer(mux)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := resolveDocker(t, "docker://"+host+"/test/img:latest", Options{Cache: testCache(t), Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatalf("pull with a token: %v", err)
	}
	if err := img.Fetch(t.Context()); err != nil {
		t.Fatalf("fetch with a token: %v", err)
	}
	if tokenCalls == 0 || bearerCalls == 0 {
		t.Errorf("token endpoint called %d times, bearer requests %d: the token flow was not used", tokenCalls, bearerCalls)
	}
	_, err = resolveDocker(t, "docker://"+host+"/test/img:latest", Options{Cache: testCache(t), Username: "alice", Password: "wrong"})
	if !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("wrong password = %v, want ErrDenied", err)
	}
}
