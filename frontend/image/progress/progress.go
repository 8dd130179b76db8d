// Package progress reports long-running work: bars on a terminal, plain lines otherwise, and
// nothing at all when quiet. Everything goes to stderr so that stdout stays for data.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Reporter shows the progress of tasks that read a known number of bytes.
type Reporter struct {
	mode mode
	out  io.Writer
	mu   sync.Mutex
	bars *mpb.Progress
}

type mode int

const (
	quiet mode = iota
	plain
	bars
)

// New returns a reporter writing to stderr: bars if stderr is a terminal, lines otherwise,
// nothing when quiet.
func New(isQuiet bool) *Reporter {
	r := &Reporter{out: os.Stderr, mode: plain}
	switch {
	case isQuiet:
		r.mode = quiet
	case term.IsTerminal(int(os.Stderr.Fd())):
		r.mode = bars
	}
	return r
}

// Infof prints one line of information (not in quiet mode).
func (r *Reporter) Infof(format string, args ...any) {
	if r.mode == quiet {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bars != nil {
		// Printed above the bars, which keep their place.
		fmt.Fprintf(r.bars, "INFO:    "+format+"\n", args...)
		return
	}
	fmt.Fprintf(r.out, "INFO:    "+format+"\n", args...)
}

// Task is one reported piece of work.
type Task struct {
	bar *mpb.Bar
}

// Start begins a task that reads total bytes (or an unknown amount if total <= 0).
func (r *Reporter) Start(name string, total int64) *Task {
	switch r.mode {
	case quiet:
		return &Task{}
	case plain:
		if total > 0 {
			r.Infof("%s (%s)", name, HumanSize(total))
		} else {
			r.Infof("%s", name)
		}
		return &Task{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bars == nil {
		r.bars = mpb.New(mpb.WithOutput(r.out), mpb.WithWidth(40))
	}
	bar := r.bars.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Percentage(decor.WCSyncSpace)),
	)
	return &Task{bar: bar}
}

// Reader counts what is read through it towards the task.
func (t *Task) Reader(rd io.Reader) io.Reader {
	if t.bar == nil {
		return rd
	}
	pr, err := t.bar.ProxyReader(rd)
	if err != nil { // only for a nil reader
		return rd
	}
	return pr
}

// Done ends the task; a failed task's bar is dropped rather than shown complete.
func (t *Task) Done(err error) {
	if t.bar == nil {
		return
	}
	if err != nil {
		t.bar.Abort(true)
		return
	}
	t.bar.SetTotal(-1, true)
}

// Wait waits for the bars to be drawn for the last time; call it before printing results.
func (r *Reporter) Wait() {
	r.mu.Lock()
	b := r.bars
	r.bars = nil
	r.mu.Unlock()
	if b != nil {
		b.Wait()
	}
}

// HumanSize formats n bytes in binary units, as `ls -h` does.
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
