package main

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"
)

// The benchmark image looks like a typical HPC application image: a base system (binaries,
// shared libraries, docs), a Python environment (thousands of small sources and some
// extension modules), data (large incompressible blobs and a compressible table), the
// application, and a small update layer that deletes and replaces things from the layers
// below it with whiteouts. Everything is derived from the seed, so two runs push the same
// digest.

// epoch is the mtime of every entry: fixed, so that layers are reproducible.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// layerSpec is one layer of the benchmark image.
type layerSpec struct {
	name  string // for the image history and the report
	build func(g *gen) error
}

// layerFile is a generated layer: its gzip file and what went into it.
type layerFile struct {
	name              string
	path              string // .tar.gz
	compressedBytes   int64
	uncompressedBytes int64 // sum of file contents
	files             int
	whiteouts         int
}

var layerSpecs = []layerSpec{
	{"base system", buildBase},
	{"python environment", buildPython},
	{"data", buildData},
	{"application", buildApp},
	{"update with whiteouts", buildUpdate},
}

// generateLayers writes every layer as a gzip-compressed tar into dir, in parallel; each
// layer has its own random stream, so the parallelism does not change the bytes.
func generateLayers(ctx context.Context, dir string, seed uint64, scale float64) ([]layerFile, error) {
	out := make([]layerFile, len(layerSpecs))
	g, ctx := errgroup.WithContext(ctx)
	for i, spec := range layerSpecs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			lf, err := writeLayer(filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i+1)), spec, seed+uint64(i)+1, scale)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, spec.name, err)
			}
			out[i] = lf
			return nil
		})
	}
	return out, g.Wait()
}

func writeLayer(file string, spec layerSpec, seed uint64, scale float64) (layerFile, error) {
	f, err := os.Create(file)
	if err != nil {
		return layerFile{}, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	gz, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return layerFile{}, err
	}
	g := newGen(tar.NewWriter(gz), seed, scale)
	if err := spec.build(g); err != nil {
		return layerFile{}, err
	}
	if err := g.tw.Close(); err != nil {
		return layerFile{}, err
	}
	if err := gz.Close(); err != nil {
		return layerFile{}, err
	}
	if err := bw.Flush(); err != nil {
		return layerFile{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return layerFile{}, err
	}
	if err := f.Close(); err != nil {
		return layerFile{}, err
	}
	return layerFile{name: spec.name, path: file, compressedBytes: fi.Size(),
		uncompressedBytes: g.bytesWritten, files: g.files, whiteouts: g.whiteouts}, nil
}

// gen writes one layer's entries with deterministic content.
type gen struct {
	tw     *tar.Writer
	rng    *rand.Rand
	stream *rand.ChaCha8 // bulk random bytes; fast
	zipf   *rand.Zipf
	vocab  [][]byte
	pool   [][]byte // chunks that recur in "binary" content, as code and tables do
	dirs   map[string]bool
	scale  float64
	buf    []byte

	files, whiteouts int
	bytesWritten     int64
}

func newGen(tw *tar.Writer, seed uint64, scale float64) *gen {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	cc := rand.NewChaCha8(key)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &gen{tw: tw, rng: rng, stream: cc, dirs: map[string]bool{}, scale: scale}
	// Word frequencies in text follow Zipf's law; a vocabulary of a few thousand words
	// gives gzip the 3-4x ratio that source code and documentation get.
	g.zipf = rand.NewZipf(rng, 1.2, 2, 3999)
	g.vocab = make([][]byte, 4000)
	const letters = "abcdefghijklmnopqrstuvwxyz_"
	for i := range g.vocab {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			w[j] = letters[rng.IntN(len(letters))]
		}
		g.vocab[i] = w
	}
	g.pool = make([][]byte, 64)
	for i := range g.pool {
		g.pool[i] = make([]byte, 256)
		_, _ = g.stream.Read(g.pool[i])
	}
	return g
}

// n scales a count, keeping at least one.
func (g *gen) n(count int) int {
	return max(1, int(math.Round(float64(count)*g.scale)))
}

// size draws a log-normally distributed size around median, clamped to [lo, hi]; file
// sizes in real images are spread that way.
func (g *gen) size(median, lo, hi int) int {
	s := float64(median) * math.Exp(g.rng.NormFloat64()*0.9)
	return min(hi, max(lo, int(s)))
}

func (g *gen) header(h *tar.Header) error {
	h.ModTime = epoch
	h.Format = tar.FormatPAX
	if h.Uname == "" && h.Uid == 0 {
		h.Uname, h.Gname = "root", "root"
	}
	return g.tw.WriteHeader(h)
}

// dir writes name and its parents, once each per layer.
func (g *gen) dir(name string) error {
	if name == "." || name == "/" || g.dirs[name] {
		return nil
	}
	if err := g.dir(path.Dir(name)); err != nil {
		return err
	}
	g.dirs[name] = true
	return g.header(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755})
}

func (g *gen) file(name string, mode int64, content []byte) error {
	return g.fileOwned(name, mode, 0, content)
}

func (g *gen) fileOwned(name string, mode int64, uid int, content []byte) error {
	if err := g.dir(path.Dir(name)); err != nil {
		return err
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), Uid: uid, Gid: uid}
	if uid != 0 {
		h.Uname, h.Gname = "app", "app"
	}
	if err := g.header(h); err != nil {
		return err
	}
	if _, err := g.tw.Write(content); err != nil {
		return err
	}
	g.files++
	g.bytesWritten += int64(len(content))
	return nil
}

func (g *gen) symlink(name, target string) error {
	if err := g.dir(path.Dir(name)); err != nil {
		return err
	}
	return g.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777})
}

func (g *gen) hardlink(name, target string) error {
	if err := g.dir(path.Dir(name)); err != nil {
		return err
	}
	return g.header(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o755})
}

// whiteout deletes name from the layers below.
func (g *gen) whiteout(name string) error {
	return g.marker(path.Join(path.Dir(name), ".wh."+path.Base(name)))
}

// opaque hides everything the layers below have in dir.
func (g *gen) opaque(dir string) error {
	return g.marker(path.Join(dir, ".wh..wh..opq"))
}

// marker writes an empty whiteout file.
func (g *gen) marker(name string) error {
	if err := g.dir(path.Dir(name)); err != nil {
		return err
	}
	g.whiteouts++
	return g.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600})
}

// text returns n bytes of word salad: compresses about as well as prose and source code.
func (g *gen) text(n int) []byte {
	const indent = "                "
	b := g.buf[:0]
	col := 0
	for len(b) < n {
		if col == 0 {
			// Indented lines, as in code and config files.
			col = 4 * g.rng.IntN(4)
			b = append(b, indent[:col]...)
		}
		w := g.vocab[g.zipf.Uint64()]
		b = append(b, w...)
		col += len(w) + 1
		if col > 72 {
			b = append(b, '\n')
			col = 0
		} else {
			b = append(b, ' ')
		}
	}
	g.buf = b
	return b[:n]
}

// binary returns n bytes shaped like executables: runs of unique bytes, zero padding and
// recurring chunks; gzip gets about 2x out of it.
func (g *gen) binary(n int) []byte {
	b := g.grow(n)
	for off := 0; off < n; off += 256 {
		c := b[off:min(n, off+256)]
		switch p := g.rng.IntN(100); {
		case p < 30:
			_, _ = g.stream.Read(c)
		case p < 60:
			clear(c)
		default:
			copy(c, g.pool[g.rng.IntN(len(g.pool))])
		}
	}
	return b
}

// random returns n incompressible bytes, like compressed archives, images or model weights.
func (g *gen) random(n int) []byte {
	b := g.grow(n)
	_, _ = g.stream.Read(b)
	return b
}

func (g *gen) grow(n int) []byte {
	if cap(g.buf) < n {
		g.buf = make([]byte, n)
	}
	return g.buf[:n]
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

func buildBase(g *gen) error {
	for i := range g.n(250) {
		if err := g.file(fmt.Sprintf("etc/conf%03d.d/settings.conf", i), 0o644, g.text(g.size(1*kib, 100, 16*kib))); err != nil {
			return err
		}
	}
	if err := g.file("etc/app.conf", 0o644, g.text(2*kib)); err != nil {
		return err
	}
	for i := range g.n(350) {
		name := fmt.Sprintf("usr/bin/tool%03d", i)
		if err := g.file(name, 0o755, g.binary(g.size(40*kib, 4*kib, 2*mib))); err != nil {
			return err
		}
		if i%50 == 0 {
			if err := g.hardlink(name+"-alias", name); err != nil {
				return err
			}
		}
	}
	for i := range g.n(500) {
		lib := fmt.Sprintf("usr/lib/x86_64-linux-gnu/libpkg%03d.so", i)
		if err := g.file(lib+".1.2.3", 0o644, g.binary(g.size(60*kib, 8*kib, 4*mib))); err != nil {
			return err
		}
		if err := g.symlink(lib+".1", path.Base(lib)+".1.2.3"); err != nil {
			return err
		}
	}
	for i := range g.n(1500) {
		d := fmt.Sprintf("usr/share/doc/pkg%04d", i)
		if err := g.file(d+"/copyright", 0o644, g.text(g.size(3*kib, 200, 64*kib))); err != nil {
			return err
		}
		// Debian ships changelogs gzipped: incompressible.
		if err := g.file(d+"/changelog.gz", 0o644, g.random(g.size(3*kib, 200, 64*kib))); err != nil {
			return err
		}
	}
	return nil
}

const sitePackages = "opt/conda/lib/python3.11/site-packages"

func buildPython(g *gen) error {
	for p := range g.n(120) {
		d := fmt.Sprintf("%s/pkg%03d", sitePackages, p)
		for i := range 80 {
			if err := g.file(fmt.Sprintf("%s/mod%02d/m%03d.py", d, i%8, i), 0o644, g.text(g.size(4*kib, 100, 256*kib))); err != nil {
				return err
			}
		}
		for i := range 2 + p%3 {
			if err := g.file(fmt.Sprintf("%s/_ext%d.cpython-311-x86_64-linux-gnu.so", d, i), 0o755, g.binary(g.size(150*kib, 16*kib, 8*mib))); err != nil {
				return err
			}
		}
	}
	return g.symlink("opt/conda/bin/python", "python3.11")
}

func buildData(g *gen) error {
	for i := range 3 {
		if err := g.file(fmt.Sprintf("opt/data/model-%d.bin", i), 0o644, g.random(int(20*mib*g.scale))); err != nil {
			return err
		}
	}
	return g.file("opt/data/train.csv", 0o644, g.text(int(24*mib*g.scale)))
}

func buildApp(g *gen) error {
	for i := range g.n(1500) {
		if err := g.fileOwned(fmt.Sprintf("opt/app/src/dir%02d/f%04d.c", i%30, i), 0o644, 1000, g.text(g.size(3*kib, 100, 128*kib))); err != nil {
			return err
		}
	}
	for i := range g.n(400) {
		if err := g.fileOwned(fmt.Sprintf("opt/app/static/img%04d.png", i), 0o644, 1000, g.random(g.size(20*kib, 1*kib, 1*mib))); err != nil {
			return err
		}
	}
	return g.file("opt/app/bin/app", 0o755, g.binary(int(20*mib*g.scale)))
}

// buildUpdate is the kind of layer a `RUN apt-get remove && rm -rf` leaves: whiteouts for a
// file, a directory and a large file below, an opaque directory refilled, replaced files.
func buildUpdate(g *gen) error {
	for _, wh := range []string{
		"usr/share/doc/pkg0010/copyright",
		sitePackages + "/pkg007",
		"opt/data/model-2.bin",
	} {
		if err := g.whiteout(wh); err != nil {
			return err
		}
	}
	if err := g.opaque("opt/app/static"); err != nil {
		return err
	}
	for i := range g.n(50) {
		if err := g.fileOwned(fmt.Sprintf("opt/app/static/new%03d.png", i), 0o644, 1000, g.random(g.size(20*kib, 1*kib, 1*mib))); err != nil {
			return err
		}
	}
	if err := g.file("etc/app.conf", 0o644, g.text(3*kib)); err != nil {
		return err
	}
	return g.file("opt/app/bin/app", 0o755, g.binary(int(20*mib*g.scale)))
}

// removedPaths are the paths buildUpdate deletes: neither output may contain them.
var removedPaths = []string{
	"usr/share/doc/pkg0010/copyright",
	sitePackages + "/pkg007",
	"opt/data/model-2.bin",
	"opt/app/static/img0000.png",
}
