package harness

import (
	"io"
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

// StallingProxy is a reverse proxy in front of a registry that sends the first half of every
// layer-sized blob and then stalls until Release, so that a test can interrupt a pull in the
// middle of a download.
type StallingProxy struct {
	Addr string

	srv       *http.Server
	stalled   chan string
	release   chan struct{}
	closeOnce sync.Once
}

// StartStallingProxy listens on a loopback port and forwards everything to target.
func StartStallingProxy(target string) (*StallingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &StallingProxy{Addr: l.Addr().String(), stalled: make(chan string, 16), release: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := blobPath.FindStringSubmatch(r.URL.Path)
		if m == nil || r.Method != http.MethodGet {
			rp.ServeHTTP(w, r)
			return
		}
		p.serveStalling(w, r, "http://"+target+r.URL.Path, m[1])
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *StallingProxy) serveStalling(w http.ResponseWriter, r *http.Request, upstream, digest string) {
	resp, err := http.Get(upstream)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Length", "Content-Type", "Docker-Content-Digest", "Etag"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 64<<10 {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if _, err := io.CopyN(w, resp.Body, resp.ContentLength/2); err != nil {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case p.stalled <- digest:
	default:
	}
	select {
	case <-p.release:
		_, _ = io.Copy(w, resp.Body)
	case <-r.Context().Done():
	}
}

// Stalled delivers the digest of each blob download that stalled.
func (p *StallingProxy) Stalled() <-chan string { return p.stalled }

// Release lets the stalled downloads finish.
func (p *StallingProxy) Release() { p.closeOnce.Do(func() { close(p.release) }) }

// Close releases the downloads and stops the proxy.
func (p *StallingProxy) Close() error {
	p.Release()
	return p.srv.Close()
}
