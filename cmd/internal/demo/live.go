package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// Refresh intervals of the live view.
const (
	screenEvery = time.Second     // on a terminal
	lineEvery   = 2 * time.Second // a status line otherwise
)

// live shows the demo until q, Ctrl-C (ctx) or Duration: redrawn in place
// on a terminal, as status lines otherwise. Keys (from a terminal): c cuts
// the link, r restores it, t edits a twin at the hub, q quits.
func (s *session) live(ctx context.Context) error {
	if s.o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.Duration)
		defer cancel()
	}
	out, _ := s.o.Stdout.(*os.File)
	screen := cli.IsTerminal(out)
	var keys <-chan byte
	if cli.IsTerminal(s.o.Stdin) {
		k, err := openKeys(s.o.Stdin)
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer k.Close()
		keys = k.keys
	}
	every := lineEvery
	if screen {
		every = screenEvery
	}
	h := header{hub: s.hubURL, dashboard: s.dashboard, dir: s.o.Dir, keys: keys != nil}
	tick := time.NewTicker(every)
	defer tick.Stop()
	edits := 0
	for {
		snap := s.snapshot(ctx)
		if screen {
			var b bytes.Buffer
			b.WriteString("\x1b[H\x1b[2J")
			renderScreen(&b, h, snap)
			_, _ = s.o.Stdout.Write(b.Bytes())
		} else {
			fmt.Fprintln(s.o.Stdout, statusLine(snap))
		}
		select {
		case <-ctx.Done():
			return s.summary()
		case <-s.hub.done:
			return s.hub.died()
		case <-s.edge.done:
			return s.edge.died()
		case <-tick.C:
		case key := <-keys:
			if quit := s.key(ctx, key, &edits); quit {
				return s.summary()
			}
		}
	}
}

// key acts on one key of the live view; it reports whether to quit.
func (s *session) key(ctx context.Context, key byte, edits *int) (quit bool) {
	switch key {
	case 'q', 'Q':
		return true
	case 'c', 'C':
		s.cut()
		s.log.Info("link cut from the keyboard")
	case 'r', 'R':
		s.restore()
		s.log.Info("link restored from the keyboard")
	case 't', 'T':
		*edits++
		d := s.devices[*edits%len(s.devices)]
		err := patchDesired(ctx, s.hubc, d.id, map[string]any{"setpoint": 20 + float64(*edits%10)})
		if err != nil {
			s.log.Warn("twin edit", "err", err)
		}
	}
	return false
}

// summary is the live view's last line.
func (s *session) summary() error {
	f := s.tally.Figures(time.Time{})
	fmt.Fprintf(s.o.Stdout, "stopped after %s: leaf devices %s (the data stays in %s for the next run)\n",
		time.Since(s.start).Truncate(time.Second), f, s.o.Dir)
	return nil
}
