package harness

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
)

// CountingProxy is a reverse proxy in front of a registry that counts blob downloads, so a
// test can prove that a pull was served from the cache.
type CountingProxy struct {
	Addr string // host:port to pull from instead of the registry's

	srv *http.Server
	mu  sync.Mutex
	get map[string]int // blob digest -> GETs
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

// StartCountingProxy listens on a loopback port and forwards everything to target.
func StartCountingProxy(target string) (*CountingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{Addr: l.Addr().String(), get: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			p.mu.Lock()
			p.get[m[1]]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// BlobGets returns how many blob GETs went through since the last Reset, per digest.
func (p *CountingProxy) BlobGets() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.get))
	for k, v := range p.get {
		out[k] = v
	}
	return out
}

// Reset zeroes the counts.
func (p *CountingProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.get = map[string]int{}
}

// Close stops the proxy.
func (p *CountingProxy) Close() error { return p.srv.Close() }
