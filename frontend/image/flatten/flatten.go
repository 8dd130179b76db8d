// Package flatten merges the layers of an OCI image into one tar stream of the final root
// filesystem, so that kerr can pipe it straight into tar2sqfs without unpacking on disk.
//
// The stream is a consistent tree, because tar2sqfs aborts on anything else: every path
// appears at most once, nothing appears below a non-directory, and every name is a clean
// relative path. The merge follows the OCI image-spec changeset rules as an overlay would
// see them. Layers are read top first and the first writer of a path wins, so a single
// streaming pass decides every entry and the only memory used is a map of path states.
//
// Rules (the tests prove each one):
//   - Names: a leading "/" or "./" is dropped and the rest cleaned with path.Clean; an empty
//     name, one with a NUL, or one that escapes the root ("..", "../x", "a/../../x") is
//     dropped with a warning.
//   - Whiteouts: ".wh.NAME" hides NAME from lower layers only; ".wh..wh..opq" in directory D
//     hides D's children in lower layers but keeps D. Markers are never written. Other AUFS
//     metadata (".wh..wh.*", e.g. ".wh..wh.plnk") is dropped, as is anything below a
//     component that starts with ".wh.".
//   - A non-directory in an upper layer replaces a lower directory with all its children; a
//     path below a non-directory of the same or a higher layer is dropped. A directory
//     (explicit, or implied by entries below it) in an upper layer wins over a lower
//     non-directory, as in an overlay mount.
//   - Root: the root directory entry ("." or "/") of the topmost source that has one is
//     written as "./", which tar2sqfs uses for the root inode's mode, owner and mtime.
//   - Duplicates within one layer: the first entry wins and later ones are dropped with a
//     warning. Tar itself would let the last one win; doing that would need a second pass
//     over the (compressed) layer, and real image layers do not carry duplicates, so this is
//     a known limit.
//   - Hard links: written only when the target was written earlier in the stream by the same
//     layer. A link to a target that a higher layer shadowed, that another layer wrote, or
//     that comes later in the layer is dropped with a warning, because tar2sqfs aborts on a
//     link it cannot resolve and the layer's data for the target is gone once streamed.
//   - Devices: character and block nodes are dropped with a warning unless
//     Options.KeepDevices.
//   - Sparse files (GNU formats) are dropped with a warning: archive/tar expands their holes,
//     so a tiny hostile layer could stream terabytes of zeros, and image builders do not
//     write them.
//   - A dropped device, sparse file or hard link, or an entry whose header cannot be
//     written, still hides what lower layers have at its path, as it would in an overlay,
//     so an older version of the file never resurfaces.
//   - Metadata: mode (permission, setuid/setgid/sticky bits), uid/gid, uname/gname, mtime,
//     symlink targets (verbatim: a target is only data inside the image) and PAX records
//     such as SCHILY.xattr.* are kept. Mtimes are cut to whole seconds and atime/ctime
//     dropped: squashfs keeps only seconds, and sub-second times would force a PAX header
//     (1 KiB) onto every entry. Symlinks with an empty target are dropped (tar2sqfs writes a
//     broken inode for them). The output uses the PAX format where USTAR is not enough.
//   - Shadowed entries (hidden by a whiteout or an upper layer) are counted in
//     Stats.Skipped without a warning: an ordinary image shadows thousands of them.
package flatten

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/kerr-hpc/kerr/errdefs"
)

// Layer opens one layer's uncompressed tar stream; the caller decompresses. Flatten calls
// it once, when it reaches the layer, and closes the reader when done with it. The reader
// should be buffered (decompressors are): archive/tar reads in 512-byte blocks.
type Layer func() (io.ReadCloser, error)

// Entry is an in-memory entry kerr adds to the image, such as a /.singularity.d file.
// For a regular file the size written is len(Data), whatever Header.Size says.
type Entry struct {
	Header *tar.Header
	Data   []byte
}

// Options tunes Flatten. The zero value flattens layers alone and drops device nodes.
type Options struct {
	// Top entries override anything in the layers; they go through the same rules as a
	// layer above the topmost one (a ".wh.NAME" entry here deletes NAME from the image).
	Top []Entry
	// Bottom entries are added only where the layers leave nothing at that path, and not
	// below a path the layers made a non-directory (a Bottom "var/tmp" is dropped when the
	// image has "var" as a symlink). Whiteouts in the layers do not remove them: they are
	// mount points kerr needs even when an image deleted the directory.
	Bottom []Entry
	// Warn is called once for each odd entry that is dropped or changed. May be nil.
	Warn func(format string, args ...any)
	// KeepDevices writes character and block device nodes; without it they are dropped,
	// as an unprivileged build could not create them anyway.
	KeepDevices bool
}

// Stats counts what Flatten did.
type Stats struct {
	Written   int   // entries written to the output
	Skipped   int   // entries read but not written (shadowed, invalid or dropped)
	Whiteouts int   // whiteout and opaque markers consumed
	Bytes     int64 // size of the output tar stream
}

// Sizes of the output buffer and of the copy buffer: big enough that tar's 512-byte header
// and padding writes do not each cost a syscall on a pipe to tar2sqfs.
const (
	outBufSize  = 256 << 10
	copyBufSize = 256 << 10
)

// Flatten writes the flattened tree of layers (given bottom to top, the OCI manifest order)
// to w as one tar stream, followed by the Bottom entries; Top entries come first. It
// returns when the stream is complete (the tar end marker written and flushed), on the
// first read or write error, or when ctx is done. Errors for corrupt or truncated layers
// wrap errdefs.ErrInvalidImage. After an error, w holds a partial stream.
//
// Reads block on the layers' readers; a caller that wants cancellation to interrupt a
// stalled download should make the reader honour ctx as well.
func Flatten(ctx context.Context, w io.Writer, layers []Layer, opts Options) (Stats, error) {
	bw := bufio.NewWriterSize(w, outBufSize)
	cw := &countingWriter{w: bw}
	f := &flattener{
		done:   ctx.Done(),
		ctx:    ctx,
		tw:     tar.NewWriter(cw),
		cw:     cw,
		opts:   opts,
		nodes:  make(map[string]node, 1024),
		buf:    make([]byte, copyBufSize),
		layers: len(layers),
	}
	err := f.run(layers)
	f.stats.Bytes = cw.n
	if err != nil {
		return f.stats, err
	}
	if err := f.tw.Close(); err != nil {
		return f.stats, fmt.Errorf("finishing flattened stream: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return f.stats, fmt.Errorf("writing flattened stream: %w", err)
	}
	f.stats.Bytes = cw.n
	return f.stats, nil
}

// run feeds every source through add, top first.
func (f *flattener) run(layers []Layer) error {
	top := int32(len(layers) + 1)
	if err := f.entries(f.opts.Top, top); err != nil {
		return err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		if err := f.layer(layers[i], int32(i+1)); err != nil {
			return err
		}
	}
	return f.entries(f.opts.Bottom, bottom)
}

// Sources are numbered so that a higher number is a higher layer: the Bottom entries are 0,
// layer i of the slice is i+1 and the Top entries are len(layers)+1. A whiteout or opaque
// mark records the number of the source that set it and hides the path from every source
// with a lower number; 0 therefore means "no mark".
const bottom int32 = 0

type kind uint8

const (
	absent      kind = iota // nothing written; the node only carries whiteout marks
	dir                     // a directory entry was written
	implicitDir             // only entries below it were written; tar2sqfs makes it
	nondir                  // a non-directory was written
	blocked                 // a non-directory was dropped; it still hides lower layers
)

// node is the state of one path. It is kept small: images have about 10^5 paths.
type node struct {
	kind   kind
	src    int32 // source that set kind
	hidden int32 // whiteout: the path is hidden from sources below this one
	opaque int32 // the path's children are hidden from sources below this one
}

type flattener struct {
	done   <-chan struct{}
	ctx    context.Context
	tw     *tar.Writer
	cw     *countingWriter
	opts   Options
	nodes  map[string]node
	root   node // state of "." kept apart: every path has it as an ancestor
	buf    []byte
	stats  Stats
	layers int

	// The parent directory most recently found open for entries of source okSrc. Entries
	// of a layer come grouped by directory, so this skips most ancestor walks. It stays
	// valid for the whole source: once something was written below a directory, all its
	// ancestors are directories in the map, and nothing later in the same source can
	// turn them into non-directories or hide them from that source.
	okParent string
	okSrc    int32
	okValid  bool
}

// label names a source in warnings and errors, with the caller's layer index.
func (f *flattener) label(src int32) string {
	switch {
	case src == bottom:
		return "bottom entries"
	case int(src) == f.layers+1:
		return "top entries"
	}
	return fmt.Sprintf("layer %d", src-1)
}

func (f *flattener) warn(src int32, format string, args ...any) {
	if f.opts.Warn == nil {
		return
	}
	f.opts.Warn("%s: "+format, append([]any{f.label(src)}, args...)...)
}

func (f *flattener) cancelled() error {
	select {
	case <-f.done:
		return fmt.Errorf("flattening layers: %w", f.ctx.Err())
	default:
		return nil
	}
}

// entries feeds in-memory entries; their headers are copied, never changed.
func (f *flattener) entries(es []Entry, src int32) error {
	for i, e := range es {
		if err := f.cancelled(); err != nil {
			return err
		}
		if e.Header == nil {
			return fmt.Errorf("%s: entry %d has no header", f.label(src), i)
		}
		h := *e.Header
		h.Size = int64(len(e.Data))
		if err := f.add(&h, bytes.NewReader(e.Data), src); err != nil {
			return err
		}
	}
	return nil
}

func (f *flattener) layer(open Layer, src int32) error {
	rc, err := open()
	if err != nil {
		return fmt.Errorf("opening %s: %w", f.label(src), err)
	}
	err = f.readLayer(tar.NewReader(rc), src)
	cerr := rc.Close()
	switch {
	case cerr == nil:
	case err == nil,
		// The layer's own check (a digest mismatch found when closing) explains a failed
		// read better than the symptom the tar reader saw.
		f.ctx.Err() == nil && errors.Is(cerr, errdefs.ErrInvalidImage) && !errors.Is(err, errdefs.ErrInvalidImage):
		err = fmt.Errorf("closing %s: %w", f.label(src), cerr)
	}
	return err
}

func (f *flattener) readLayer(tr *tar.Reader, src int32) error {
	for {
		if err := f.cancelled(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		// ErrInsecurePath (only with GODEBUG=tarinsecurepath=0) still returns a usable
		// header; add checks names itself.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return f.readErr(src, err)
		}
		if err := f.add(hdr, tr, src); err != nil {
			return err
		}
	}
}

// readErr wraps an error reading a layer; damage in the tar itself makes the image invalid.
func (f *flattener) readErr(src int32, err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading %s: %w: %w", f.label(src), errdefs.ErrInvalidImage, err)
	}
	return fmt.Errorf("reading %s: %w", f.label(src), err)
}

const (
	whPrefix = ".wh."
	whMeta   = ".wh..wh."
	whOpaque = ".wh..wh..opq"
)

// add decides one entry and writes it if it survives. body yields the entry's data. Only
// read and write errors are returned; a dropped entry is not an error.
func (f *flattener) add(hdr *tar.Header, body io.Reader, src int32) error {
	typ := hdr.Typeflag
	if typ == tar.TypeXGlobalHeader {
		// Global PAX records (git archive writes a commit id) describe the archive, not a file.
		f.stats.Skipped++
		return nil
	}

	name, ok := CleanName(hdr.Name)
	if !ok {
		f.skip(src, "dropped entry with invalid name %q", hdr.Name)
		return nil
	}
	if name == "." {
		return f.addRoot(hdr, typ, src)
	}
	slash := strings.LastIndexByte(name, '/')
	parent, base := "", name
	if slash >= 0 {
		parent, base = name[:slash], name[slash+1:]
	}
	if strings.Contains(name, whPrefix) {
		if strings.Contains(parent, whPrefix) && whiteoutInPath(parent) {
			f.skip(src, "dropped %q: below a whiteout name", name)
			return nil
		}
		if strings.HasPrefix(base, whPrefix) {
			f.whiteout(name, parent, base, src)
			return nil
		}
	}

	switch f.parentState(parent, src) {
	case shadowed:
		f.stats.Skipped++
		return nil
	case belowNondir:
		f.skip(src, "dropped %q: a parent is not a directory", name)
		return nil
	}

	n := f.nodes[name]
	if src != bottom && n.hidden > src {
		f.stats.Skipped++
		return nil
	}
	switch n.kind {
	case implicitDir:
		if typ == tar.TypeDir {
			break // the explicit entry sets the directory's metadata
		}
		fallthrough
	case dir, nondir, blocked:
		if typ != tar.TypeDir && (n.kind == dir || n.kind == implicitDir) && n.opaque < src {
			// This non-directory replaced whatever lower layers had below the path.
			n.opaque = src
			f.nodes[name] = n
		}
		if n.src == src {
			f.skip(src, "dropped duplicate entry %q: the layer already wrote that path (the first one wins)", name)
		} else {
			f.stats.Skipped++
		}
		return nil
	}

	var linkTarget string
	switch typ {
	case tar.TypeReg, tar.TypeGNUSparse:
		if typ == tar.TypeGNUSparse || sparse(hdr) {
			f.block(name, n, src, "dropped sparse file %q", name)
			return nil
		}
	case tar.TypeDir, tar.TypeFifo:
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			f.block(name, n, src, "dropped symlink %q with an empty target", name)
			return nil
		}
	case tar.TypeLink:
		t, ok := CleanName(hdr.Linkname)
		tn := f.nodes[t]
		if !ok || t == name || tn.kind != nondir || tn.src != src {
			f.block(name, n, src, "dropped hard link %q to %q: target not written earlier by the same layer", name, hdr.Linkname)
			return nil
		}
		linkTarget = t
	case tar.TypeChar, tar.TypeBlock:
		if !f.opts.KeepDevices {
			f.block(name, n, src, "dropped device node %q", name)
			return nil
		}
	default:
		f.skip(src, "dropped %q of unsupported type %q", name, typ)
		return nil
	}

	out := name
	if typ == tar.TypeDir {
		out = dirName(hdr.Name, name)
	}
	if ok, err := f.write(hdr, typ, out, linkTarget, body, src); err != nil || !ok {
		switch {
		case err != nil:
		case typ == tar.TypeDir:
			// Entries below may still make it an implicit directory.
			f.skip(src, "dropped %q: header cannot be written", name)
		default:
			f.block(name, n, src, "dropped %q: header cannot be written", name)
		}
		return err
	}

	n.src = src
	n.kind = nondir
	if typ == tar.TypeDir {
		n.kind = dir
	}
	f.nodes[name] = n
	f.markParents(parent, src)
	return nil
}

// addRoot writes the first root directory entry seen and drops the rest.
func (f *flattener) addRoot(hdr *tar.Header, typ byte, src int32) error {
	if typ != tar.TypeDir {
		f.skip(src, "dropped root entry %q: not a directory", hdr.Name)
		return nil
	}
	if f.root.kind != absent {
		f.stats.Skipped++
		return nil
	}
	if ok, err := f.write(hdr, typ, "./", "", nil, src); err != nil || !ok {
		if err == nil {
			f.skip(src, "dropped root entry: header cannot be written")
		}
		return err
	}
	f.root.kind, f.root.src = dir, src
	return nil
}

// whiteout records a ".wh." marker; it hides paths from lower sources only.
func (f *flattener) whiteout(name, parent, base string, src int32) {
	f.stats.Whiteouts++
	if base == whOpaque {
		if parent == "" {
			f.root.opaque = max(f.root.opaque, src)
			return
		}
		n := f.nodes[parent]
		if n.opaque < src {
			n.opaque = src
			f.nodes[parent] = n
		}
		return
	}
	target := base[len(whPrefix):]
	if strings.HasPrefix(base, whMeta) || target == "" || target == "." || target == ".." {
		f.warn(src, "ignored whiteout %q: AUFS metadata or no target", name)
		return
	}
	if parent != "" {
		target = parent + "/" + target
	}
	n := f.nodes[target]
	if n.hidden < src {
		n.hidden = src
		f.nodes[target] = n
	}
}

type verdict uint8

const (
	open        verdict = iota // entries may be written below the parent
	shadowed                   // a higher source hides the parent or made it a non-directory
	belowNondir                // the same source made an ancestor a non-directory
)

// parentState tells whether src may write below parent. Bottom entries ignore whiteouts.
func (f *flattener) parentState(parent string, src int32) verdict {
	if f.okValid && f.okSrc == src && f.okParent == parent {
		return open
	}
	if src != bottom && f.root.opaque > src {
		return shadowed
	}
	if parent == "" {
		return open
	}
	for i := 0; ; {
		j := strings.IndexByte(parent[i:], '/')
		p := parent
		if j >= 0 {
			p = parent[:i+j]
		}
		n := f.nodes[p]
		if src != bottom && (n.hidden > src || n.opaque > src) {
			return shadowed
		}
		if n.kind == nondir || n.kind == blocked {
			if n.src == src {
				return belowNondir
			}
			return shadowed
		}
		if j < 0 {
			return open
		}
		i += j + 1
	}
}

// markParents records parent and its ancestors as directories after an entry below them
// was written, so that lower layers cannot put a non-directory there.
func (f *flattener) markParents(parent string, src int32) {
	f.okParent, f.okSrc, f.okValid = parent, src, true
	for p := parent; p != ""; {
		n := f.nodes[p]
		if n.kind != absent {
			return // set when something was first written below it: so are its ancestors
		}
		n.kind, n.src = implicitDir, src
		f.nodes[p] = n
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return
		}
		p = p[:i]
	}
}

// skip counts a dropped entry and warns about it.
func (f *flattener) skip(src int32, format string, args ...any) {
	f.stats.Skipped++
	f.warn(src, format, args...)
}

// block drops a non-directory entry that still hides its path from lower sources.
func (f *flattener) block(name string, n node, src int32, format string, args ...any) {
	f.skip(src, format, args...)
	n.kind, n.src = blocked, src
	f.nodes[name] = n
}

// write emits one entry. It reports false without an error when archive/tar cannot encode
// the header (nothing is written then), and an error when reading or writing failed.
func (f *flattener) write(hdr *tar.Header, typ byte, name, linkTarget string, body io.Reader, src int32) (bool, error) {
	hdr.Name = name
	hdr.Typeflag = typ
	hdr.Mode &= 0o7777
	hdr.Format = tar.FormatPAX
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if ns := hdr.ModTime.Nanosecond(); ns != 0 {
		hdr.ModTime = hdr.ModTime.Add(-time.Duration(ns))
	}
	switch typ {
	case tar.TypeReg:
	case tar.TypeLink:
		hdr.Linkname = linkTarget
		hdr.Size = 0
	default:
		hdr.Size = 0
	}
	if typ != tar.TypeSymlink && typ != tar.TypeLink {
		hdr.Linkname = ""
	}
	if typ != tar.TypeChar && typ != tar.TypeBlock {
		hdr.Devmajor, hdr.Devminor = 0, 0
	}

	// Flush the previous entry's padding first, so that a header archive/tar refuses to
	// encode is recognisable: it writes nothing.
	if err := f.tw.Flush(); err != nil {
		return false, f.writeErr(err)
	}
	before := f.cw.n
	if err := f.tw.WriteHeader(hdr); err != nil {
		if f.cw.err == nil && f.cw.n == before {
			return false, nil
		}
		return false, f.writeErr(err)
	}
	if typ == tar.TypeReg && hdr.Size > 0 {
		if err := f.copyData(body, hdr.Size, src); err != nil {
			return false, err
		}
	}
	f.stats.Written++
	return true, nil
}

// copyData streams size bytes of body into the tar writer, checking ctx between chunks so
// that a huge file does not delay cancellation.
func (f *flattener) copyData(body io.Reader, size int64, src int32) error {
	for size > 0 {
		if err := f.cancelled(); err != nil {
			return err
		}
		b := f.buf
		if int64(len(b)) > size {
			b = b[:size]
		}
		n, rerr := body.Read(b)
		if n > 0 {
			if _, err := f.tw.Write(b[:n]); err != nil {
				return f.writeErr(err)
			}
			size -= int64(n)
		}
		if rerr == io.EOF && size > 0 {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && size > 0 {
			return f.readErr(src, rerr)
		}
	}
	return nil
}

func (f *flattener) writeErr(err error) error {
	return fmt.Errorf("writing flattened stream: %w", err)
}

// CleanName turns a tar entry name into the clean relative path Flatten writes, "." for the
// root. It reports false for names Flatten drops: empty, with a NUL, or escaping the root.
// It is exported so that consumers of the stream (the sandbox extractor) read names by the
// same rule as the stream was written.
func CleanName(raw string) (string, bool) {
	if raw == "" || strings.IndexByte(raw, 0) >= 0 {
		return "", false
	}
	s := raw
	for {
		if strings.HasPrefix(s, "/") {
			s = s[1:]
		} else if strings.HasPrefix(s, "./") {
			s = s[2:]
		} else {
			break
		}
	}
	if s == "" {
		return ".", true
	}
	s = path.Clean(s) // returns a substring, no copy, when only a trailing "/" goes
	if s == ".." || strings.HasPrefix(s, "../") {
		return "", false
	}
	return s, true
}

// dirName is name with a trailing slash, reusing raw when it already ends in exactly that.
func dirName(raw, name string) string {
	if n := len(raw) - 1; n >= len(name) && raw[n] == '/' && raw[n-len(name):n] == name {
		return raw[n-len(name):]
	}
	return name + "/"
}

// sparse reports whether hdr is a GNU sparse file in PAX form. archive/tar reads such files
// with their holes filled with zeros, so a layer of a few bytes could expand into terabytes.
func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// whiteoutInPath reports whether a component of p starts with ".wh.".
func whiteoutInPath(p string) bool {
	for {
		if strings.HasPrefix(p, whPrefix) {
			return true
		}
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[i+1:]
	}
}

// countingWriter counts accepted bytes and keeps the first write error, so that write can
// tell an encoding refusal from an I/O failure.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}
