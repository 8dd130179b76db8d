package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// treeInfo describes a generated directory tree.
type treeInfo struct {
	FileBytes int64 `json:"file_bytes"`
	Files     int   `json:"files"` // regular files, hard links counted once
	Dirs      int   `json:"dirs"`
	Symlinks  int   `json:"symlinks"`
	HardLinks int   `json:"hard_links"`
}

// Shares of a tree's bytes: many small text files (compress about 3x), medium "binaries"
// (half random, half repetitive: about 2x) and large incompressible data files. With these
// shares, a squashfs of the tree is about 0.78 of its size.
const (
	smallShare  = 0.15
	mediumShare = 0.25
	// the rest is large files
	squashRatio = 0.78
)

// words make the text of the small files.
var words = []string{
	"import", "return", "self", "def", "class", "for", "in", "if", "else", "while", "None",
	"True", "False", "lambda", "yield", "with", "as", "try", "except", "raise", "from", "data",
	"value", "index", "result", "config", "buffer", "stream", "thread", "kernel", "vector",
	"matrix", "tensor", "sample", "weight", "layer", "model", "train", "batch", "epoch", "loss",
	"grad", "node", "rank", "mpi", "slurm", "job", "queue", "scratch", "home", "path", "file",
	"open", "close", "read", "write", "seek", "mmap", "alloc", "free", "lock", "wait", "signal",
}

// generator writes one tree deterministically from its seed.
type generator struct {
	ctx  context.Context
	root string
	rng  *rand.Rand
	info treeInfo
	buf  []byte
	// chown gives opt/app to uid 1000; only root can (the benchmark runs as root, its unit
	// test need not).
	chown bool
}

// generateTree writes a tree of about total bytes of file content into root (which must not
// exist): a system-like tree of small sources and docs, shared libraries with symlinks and
// hard links, an application owned by uid 1000, and large data files.
func generateTree(ctx context.Context, root string, total int64, seed uint64) (treeInfo, error) {
	g := &generator{ctx: ctx, root: root, rng: rand.New(rand.NewPCG(seed, 0x6b657272)), buf: make([]byte, 1<<20), chown: os.Geteuid() == 0}
	if err := os.Mkdir(root, 0o755); err != nil {
		return treeInfo{}, err
	}
	for _, d := range []string{"bin", "etc", "usr", "usr/lib", "usr/share", "usr/share/doc", "opt", "opt/app", "data", "tmp", "proc", "sys", "dev", "home", "var", "var/empty"} {
		if err := g.mkdir(d); err != nil {
			return treeInfo{}, err
		}
	}
	if err := g.small(int64(float64(total) * smallShare)); err != nil {
		return treeInfo{}, err
	}
	if err := g.medium(int64(float64(total) * mediumShare)); err != nil {
		return treeInfo{}, err
	}
	if err := g.large(total - g.info.FileBytes); err != nil {
		return treeInfo{}, err
	}
	return g.info, nil
}

func (g *generator) mkdir(rel string) error {
	if err := os.Mkdir(filepath.Join(g.root, rel), 0o755); err != nil {
		return err
	}
	g.info.Dirs++
	return nil
}

// small writes text files of 256 B to 16 KiB, 40 to a directory, under usr/share and, owned
// by uid 1000, opt/app.
func (g *generator) small(budget int64) error {
	written := int64(0)
	for dir := 0; written < budget; dir++ {
		parent := "usr/share/doc"
		uid := 0
		if dir%4 == 3 {
			parent, uid = "opt/app", 1000
		}
		rel := filepath.Join(parent, fmt.Sprintf("pkg%04d", dir))
		if err := g.mkdir(rel); err != nil {
			return err
		}
		for i := 0; i < 40 && written < budget; i++ {
			if err := g.ctx.Err(); err != nil {
				return err
			}
			size := int64(256 + g.rng.IntN(16<<10-256))
			name := filepath.Join(rel, fmt.Sprintf("mod%02d.py", i))
			if err := g.writeFile(name, size, g.text, uid); err != nil {
				return err
			}
			written += size
		}
	}
	return nil
}

// medium writes "shared libraries" of 64 KiB to 1 MiB in usr/lib, each with a symlink
// libNAME.so -> libNAME.so.1, and hard links of every tenth one in bin.
func (g *generator) medium(budget int64) error {
	written := int64(0)
	for i := 0; written < budget; i++ {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		size := int64(64<<10 + g.rng.IntN(1<<20-64<<10))
		name := fmt.Sprintf("usr/lib/libk%04d.so.1", i)
		if err := g.writeFile(name, size, g.binary, 0); err != nil {
			return err
		}
		written += size
		if err := os.Symlink(filepath.Base(name), filepath.Join(g.root, fmt.Sprintf("usr/lib/libk%04d.so", i))); err != nil {
			return err
		}
		g.info.Symlinks++
		if i%10 == 0 {
			if err := os.Link(filepath.Join(g.root, name), filepath.Join(g.root, fmt.Sprintf("bin/tool%04d", i))); err != nil {
				return err
			}
			g.info.HardLinks++
		}
	}
	return nil
}

// large writes incompressible data files of up to 64 MiB (an eighth of the budget for small
// trees) in data/.
func (g *generator) large(budget int64) error {
	chunk := min(int64(64<<20), max(budget/8, 1<<20))
	for i := 0; budget > 0; i++ {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		size := min(budget, chunk)
		if err := g.writeFile(fmt.Sprintf("data/part%03d.bin", i), size, g.random, 0); err != nil {
			return err
		}
		budget -= size
	}
	return nil
}

// writeFile writes size bytes that fill produces, piece by piece.
func (g *generator) writeFile(rel string, size int64, fill func([]byte), uid int) error {
	path := filepath.Join(g.root, rel)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for left := size; left > 0; {
		b := g.buf[:min(left, int64(len(g.buf)))]
		fill(b)
		if _, err := w.Write(b); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(b))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if uid != 0 && g.chown {
		if err := os.Lchown(path, uid, uid); err != nil {
			return err
		}
	}
	g.info.Files++
	g.info.FileBytes += size
	return nil
}

// text fills b with lines of words.
func (g *generator) text(b []byte) {
	i := 0
	for i < len(b) {
		w := words[g.rng.IntN(len(words))]
		n := copy(b[i:], w)
		i += n
		if i < len(b) {
			if g.rng.IntN(10) == 0 {
				b[i] = '\n'
			} else {
				b[i] = ' '
			}
			i++
		}
	}
}

// binary fills b with runs of random bytes and runs of one repeated byte, half each.
func (g *generator) binary(b []byte) {
	for i := 0; i < len(b); {
		n := min(len(b)-i, 256+g.rng.IntN(3840))
		if g.rng.IntN(2) == 0 {
			g.random(b[i : i+n])
		} else {
			c := byte(g.rng.IntN(4))
			for j := i; j < i+n; j++ {
				b[j] = c
			}
		}
		i += n
	}
}

// random fills b with incompressible bytes.
func (g *generator) random(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := g.rng.Uint64()
		b[i], b[i+1], b[i+2], b[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		b[i+4], b[i+5], b[i+6], b[i+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(g.rng.Uint64())
	}
}
