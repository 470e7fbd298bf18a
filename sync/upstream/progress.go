package upstream

import "time"

// progress tells people how a long drain goes: while a backlog drains
// for longer than ProgressEvery, one log line each ProgressEvery with what
// was sent, what is left, the rate and about how long is left; and one line
// when the backlog is gone. A drain shorter than ProgressEvery logs nothing.
type progress struct {
	every time.Duration
	start time.Time // when this backlog began to drain; zero when idle
	last  time.Time // last line logged; zero when none for this backlog
	sent  int64
}

// sentBatch records n messages sent and, at most once per every, logs how
// the drain goes.
func (l *Link) sentBatch(p *progress, n int) {
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.last, p.sent = now, time.Time{}, 0
	}
	p.sent += int64(n)
	from := p.last
	if from.IsZero() {
		from = p.start
	}
	if now.Sub(from) < p.every {
		return
	}
	p.last = now
	left := l.backlog()
	elapsed := now.Sub(p.start)
	rate := float64(p.sent) / elapsed.Seconds()
	args := []any{"sent", p.sent, "left", left, "msg_per_s", int64(rate), "elapsed", elapsed.Round(time.Second)}
	if rate > 0 {
		args = append(args, "about_left", (time.Duration(float64(left)/rate) * time.Second).Round(time.Second))
	}
	l.log.Info("link draining the backlog", args...)
}

// idle is called when every queue is empty: it ends the backlog, with a
// line if the drain was long enough to have logged its progress.
func (l *Link) idle(p *progress) {
	if !p.last.IsZero() {
		elapsed := time.Since(p.start)
		l.log.Info("link drained the backlog", "sent", p.sent, "elapsed", elapsed.Round(time.Millisecond),
			"msg_per_s", int64(float64(p.sent)/elapsed.Seconds()))
	}
	*p = progress{every: p.every}
}
