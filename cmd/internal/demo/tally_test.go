package demo

import (
	"testing"
	"time"
)

// TestTally: the figures of the headless story's verdict, from what the
// devices had acknowledged and what the hub's event log holds.
func TestTally(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	restored := at(10)
	for _, tt := range []struct {
		name  string
		fill  func(*Tally)
		want  Figures
		clean bool
	}{
		{"each once", func(tl *Tally) {
			tl.Sent("a", at(1))
			tl.Seen("a", at(1.1))
			tl.Sent("b", at(5)) // queued while the link was down
			tl.Seen("b", at(11.5))
			tl.Sent("c", at(12))
			tl.Seen("c", at(12.1))
		}, Figures{Sent: 3, AtHub: 3, Drain: 1500 * time.Millisecond}, true},
		{"lost", func(tl *Tally) {
			tl.Sent("a", at(1))
			tl.Seen("a", at(1.1))
			tl.Sent("b", at(5))
		}, Figures{Sent: 2, AtHub: 1, Lost: 1, Drain: -1}, false},
		{"lost after the restore", func(tl *Tally) {
			tl.Sent("a", at(5))
			tl.Seen("a", at(10.2))
			tl.Sent("b", at(11))
		}, Figures{Sent: 2, AtHub: 1, Lost: 1, Drain: 200 * time.Millisecond}, false},
		{"duplicated", func(tl *Tally) {
			tl.Sent("a", at(1))
			tl.Seen("a", at(1.1))
			tl.Seen("a", at(10.5))
			tl.Seen("a", at(10.6))
		}, Figures{Sent: 1, AtHub: 1, Duplicated: 2}, false},
		{"a failed publish may or may not arrive", func(tl *Tally) {
			tl.Unsure("a")
			tl.Unsure("b")
			tl.Seen("b", at(2))
		}, Figures{Unsure: 2, AtHub: 1}, true},
		{"acknowledged on a retry", func(tl *Tally) {
			tl.Unsure("a")
			tl.Sent("a", at(2))
			tl.Unsure("a")
			tl.Seen("a", at(3))
		}, Figures{Sent: 1, AtHub: 1}, true},
		{"at the hub, never sent", func(tl *Tally) {
			tl.Seen("x", at(3))
		}, Figures{AtHub: 1, Unknown: 1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tl := NewTally()
			tt.fill(tl)
			got := tl.Figures(restored)
			if got != tt.want {
				t.Errorf("figures %+v, want %+v", got, tt.want)
			}
			if got.Clean() != tt.clean {
				t.Errorf("clean %v, want %v", got.Clean(), tt.clean)
			}
		})
	}
}

// TestTallyWithoutRestore: a run whose link was never restored measures
// no drain.
func TestTallyWithoutRestore(t *testing.T) {
	tl := NewTally()
	tl.Sent("a", time.Now())
	if f := tl.Figures(time.Time{}); f.Drain != 0 || f.Lost != 1 {
		t.Errorf("figures %+v", f)
	}
}
