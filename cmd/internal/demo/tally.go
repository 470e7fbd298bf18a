package demo

import (
	"fmt"
	"sync"
	"time"
)

// Tally counts the simulated devices' messages of one run: those the
// edge acknowledged (Sent), those whose fate is unknown (Unsure: the
// publish failed or was cut short, so the edge may or may not hold them),
// and what the hub's event log holds (Seen), by message id.
type Tally struct {
	mu        sync.Mutex
	sent      map[string]time.Time // acknowledged by the edge, when
	unsure    map[string]bool
	seen      map[string]int       // copies in the hub's event log
	firstSeen map[string]time.Time // when the first copy was read
	events    int64                // every event of the log read, of any sender
	filtered  int                  // events of the filter module during this run
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{sent: map[string]time.Time{}, unsure: map[string]bool{}, seen: map[string]int{}, firstSeen: map[string]time.Time{}}
}

// Sent records that the edge acknowledged message id at time at.
func (t *Tally) Sent(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent[id] = at
	delete(t.unsure, id)
}

// Unsure records a publish that failed: the edge may hold the message or not.
func (t *Tally) Unsure(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.sent[id]; !ok {
		t.unsure[id] = true
	}
}

// Seen records one copy of message id in the hub's event log, read at at.
func (t *Tally) Seen(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[id] == 0 {
		t.firstSeen[id] = at
	}
	t.seen[id]++
}

// Event counts one event of the hub's log, whoever sent it.
func (t *Tally) Event() {
	t.mu.Lock()
	t.events++
	t.mu.Unlock()
}

// Filtered counts one reading the filter module passed to the hub.
func (t *Tally) Filtered() {
	t.mu.Lock()
	t.filtered++
	t.mu.Unlock()
}

// Figures are what a tally says at one moment.
type Figures struct {
	Sent       int // acknowledged by the edge
	Unsure     int // publishes that failed (not counted as sent)
	AtHub      int // distinct messages of this run in the hub's log
	Lost       int // acknowledged, not (yet) in the hub's log
	Duplicated int // copies beyond the first in the hub's log
	Unknown    int // in the hub's log, never published by this run
	// Drain is how long after the link came back (restored) the last
	// message acknowledged before it reached the hub; -1 while some have
	// not, 0 when nothing was waiting.
	Drain    time.Duration
	Events   int64 // events of any sender read from the hub's log
	Filtered int   // readings the filter module passed to the hub in this run
}

// Figures counts the tally; restored is when the link came back (zero:
// no drain is measured).
func (t *Tally) Figures(restored time.Time) Figures {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := Figures{Sent: len(t.sent), Unsure: len(t.unsure), Events: t.events, Filtered: t.filtered}
	for id, n := range t.seen {
		f.AtHub++
		f.Duplicated += n - 1
		if _, ok := t.sent[id]; !ok && !t.unsure[id] {
			f.Unknown++
		}
	}
	for id, at := range t.sent {
		first, ok := t.firstSeen[id]
		if !ok {
			f.Lost++
		}
		if restored.IsZero() || !at.Before(restored) || f.Drain < 0 {
			continue
		}
		if !ok {
			f.Drain = -1
			continue
		}
		f.Drain = max(f.Drain, first.Sub(restored))
	}
	return f
}

// Clean reports whether every acknowledged message is at the hub once and
// nothing else of this run is.
func (f Figures) Clean() bool { return f.Lost == 0 && f.Duplicated == 0 && f.Unknown == 0 }

// String is the figures as the demo's final line prints them: what is not
// at the hub by then is lost.
func (f Figures) String() string { return f.format("lost") }

// Running is the figures while the story goes on: what is not at the hub
// yet is on its way (queued at the edge, or in a batch on the link).
func (f Figures) Running() string { return f.format("on the way") }

func (f Figures) format(missing string) string {
	s := fmt.Sprintf("sent %d, at hub %d, %s %d, duplicated %d", f.Sent, f.AtHub, missing, f.Lost, f.Duplicated)
	if f.Unsure > 0 {
		s += fmt.Sprintf(", %d publishes failed (not counted as sent)", f.Unsure)
	}
	if f.Unknown > 0 {
		s += fmt.Sprintf(", %d at hub never sent", f.Unknown)
	}
	return s
}
