package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/store/disk"
)

// progressEvery is the least time between two progress updates: a few a
// second are all a person can read.
const progressEvery = 250 * time.Millisecond

// progress reports a transfer of total bytes on w (stderr): on a terminal
// a line rewritten in place at most every progressEvery, otherwise
// nothing until one plain final line.
type progress struct {
	w     io.Writer
	tty   bool
	what  string
	total int64
	now   func() time.Time

	done        int64
	start, last time.Time
	shown       bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	f, _ := w.(*os.File)
	p := &progress{w: w, tty: cli.IsTerminal(f), what: what, total: total, now: time.Now}
	p.start = p.now()
	return p
}

// reader counts what is read through r.
func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(int64(n))
	return n, err
}

func (p *progress) add(n int64) {
	p.done += n
	if !p.tty {
		return
	}
	if now := p.now(); !p.shown || now.Sub(p.last) >= progressEvery {
		p.last, p.shown = now, true
		fmt.Fprintf(p.w, "\r%s: %s", p.what, p.figures())
	}
}

func (p *progress) figures() string {
	if p.total <= 0 {
		return disk.FormatSize(p.done)
	}
	return fmt.Sprintf("%s of %s (%d%%)", disk.FormatSize(p.done), disk.FormatSize(p.total), p.done*100/p.total)
}

// end prints the final line, what was sent and how long it took; after a
// failure only the caller's error line follows.
func (p *progress) end(err error) {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K") // the line rewritten in place makes way
	}
	if err == nil {
		fmt.Fprintf(p.w, "%s: %s in %s\n", p.what, disk.FormatSize(p.done), p.now().Sub(p.start).Round(time.Millisecond))
	}
}
