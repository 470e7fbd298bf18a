package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogLevelMapping(t *testing.T) {
	for _, tc := range []struct {
		hc   hclog.Level
		want slog.Level
	}{
		{hclog.Trace, slog.LevelDebug - 4},
		{hclog.Debug, slog.LevelDebug},
		{hclog.Info, slog.LevelInfo},
		{hclog.NoLevel, slog.LevelInfo},
		{hclog.Warn, slog.LevelWarn},
		{hclog.Error, slog.LevelError},
	} {
		if got := slogLevel(tc.hc); got != tc.want {
			t.Errorf("slogLevel(%v) = %v, want %v", tc.hc, got, tc.want)
		}
	}
}

func TestHclogQuietAtInfo(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Trace("trace line")
	l.Debug("debug line", "k", 1)
	l.Info("info line", "peer", "n2")
	l.Named("raft").Warn("warn line")
	l.Error("error line")
	out := buf.String()
	for _, hidden := range []string{"trace line", "debug line"} {
		if strings.Contains(out, hidden) {
			t.Errorf("%q logged at INFO:\n%s", hidden, out)
		}
	}
	for _, shown := range []string{"level=INFO msg=\"info line\" peer=n2", "level=WARN msg=\"warn line\" component=raft", "level=ERROR msg=\"error line\""} {
		if !strings.Contains(out, shown) {
			t.Errorf("missing %q in:\n%s", shown, out)
		}
	}
	if l.IsDebug() || l.IsTrace() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("at INFO: IsDebug %v IsTrace %v IsInfo %v GetLevel %v", l.IsDebug(), l.IsTrace(), l.IsInfo(), l.GetLevel())
	}
}

func TestHclogDebugHidesTrace(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Trace("trace line")
	l.With("term", 3).Debug("debug line")
	if out := buf.String(); strings.Contains(out, "trace line") || !strings.Contains(out, "level=DEBUG msg=\"debug line\" term=3") {
		t.Errorf("at DEBUG got:\n%s", out)
	}
	if !l.IsDebug() || l.IsTrace() {
		t.Errorf("at DEBUG: IsDebug %v IsTrace %v", l.IsDebug(), l.IsTrace())
	}
	l.StandardLogger(nil).Print("from std log")
	if !strings.Contains(buf.String(), `msg="from std log"`) {
		t.Errorf("standard logger line missing:\n%s", buf.String())
	}
}

// Raft repeats its warnings while a peer is down: each is logged once per
// period, the next one with the count held back; info is never held.
func TestHclogRepeatedWarningsHeldBack(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewTextHandler(&buf, nil))).Named("raft")
	for range 5 {
		h.Error("failed to appendEntries to", "peer", "n2")
	}
	h.With("x", 1).Error("failed to appendEntries to", "peer", "n3") // derived loggers share the limit
	h.Warn("failed to contact", "server-id", "n2")
	h.Info("entering follower state")
	h.Info("entering follower state")
	out := buf.String()
	if n := strings.Count(out, "failed to appendEntries to"); n != 1 {
		t.Errorf("the repeated error logged %d times, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "failed to contact") || strings.Count(out, "entering follower state") != 2 {
		t.Errorf("another warning or an info line held back:\n%s", out)
	}
}

// TestHclogFormatsFmt: raft logs some values as hclog.Fmt (a format and
// its operands); they read as hclog prints them, not as a Go slice.
func TestHclogFormatsFmt(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Info("snapshot network transfer progress", "read-bytes", 10, "percent-complete", hclog.Fmt("%0.2f%%", 12.5))
	if out := buf.String(); !strings.Contains(out, `percent-complete=12.50%`) {
		t.Errorf("got:\n%s", out)
	}
}
