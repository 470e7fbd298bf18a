package protocol

import (
	"io"
	"time"
)

// Progress passes reads through to R and pushes the Stall timer back by
// After whenever a read brings bytes: a large transfer over a slow link is
// never cut off by an overall timeout, only one that stops moving.
type Progress struct {
	R     io.Reader
	Stall *time.Timer
	After time.Duration
}

func (p *Progress) Read(b []byte) (int, error) {
	n, err := p.R.Read(b)
	if n > 0 {
		p.Stall.Reset(p.After)
	}
	return n, err
}
