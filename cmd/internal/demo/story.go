package demo

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Timing of the headless story.
const (
	settleTimeout   = 60 * time.Second // for the modules to run and the twins to agree before the story
	convergeTimeout = 60 * time.Second // for everything to arrive once the devices stop
	progressEvery   = 5 * time.Second  // a status line on stderr
)

// story is the headless run: steady state, link cut, twin edits on both
// sides while it is down, link restored, then the check. It returns nil
// only if every acknowledged message reached the hub exactly once and
// every twin converged.
func (s *session) story(ctx context.Context) error {
	steady, offline := s.o.Duration/4, s.o.Duration*2/5
	online := s.o.Duration - steady - offline
	s.phase("waiting (up to %s) for the link, the modules and the twins to settle", settleTimeout)
	if err := s.settle(ctx); err != nil {
		return err
	}
	s.phase("steady state for %s: %d leaf devices publish every %s; the sensor's readings go through the filter to the hub",
		steady, len(s.devices), defaultInterval)
	if err := s.pause(ctx, steady); err != nil {
		return err
	}
	s.cut()
	s.phase("link cut for %s: the edge keeps accepting messages and queues them for the hub", offline)
	edits := min(time.Second, offline/4)
	if err := s.pause(ctx, edits); err != nil {
		return err
	}
	if err := s.editTwins(ctx); err != nil {
		return err
	}
	if err := s.pause(ctx, offline-edits); err != nil {
		return err
	}
	s.restore()
	s.phase("link restored: the backlog drains and the twins merge; devices keep publishing for %s", online)
	if err := s.pause(ctx, online); err != nil {
		return err
	}
	for _, d := range s.devices {
		d.publishing.Store(false)
	}
	s.phase("devices stopped publishing; waiting up to %s for every message and twin to converge", convergeTimeout)
	return s.verdict(ctx)
}

// settle waits until the modules run and the twins agree, so the story
// starts from a steady state.
func (s *session) settle(ctx context.Context) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		snap := s.snapshot(ctx)
		why := unsettled(snap)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo did not reach a steady state within %s: %s (see the logs in %s)", settleTimeout, why, s.o.Dir)
		}
		if err := s.sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// unsettled says what keeps a snapshot from being a steady state.
func unsettled(s Snapshot) string {
	if s.Status == nil {
		return "edge status: " + s.StatusErr
	}
	if !strings.HasPrefix(s.Status.Link, "online") {
		return "link " + s.Status.Link
	}
	for _, m := range []string{"filter", "sensor"} {
		if st, ok := s.Status.Modules[m]; !ok || st.RuntimeStatus != "running" {
			return fmt.Sprintf("module %s is not running (%s: %s)", m, st.RuntimeStatus, st.StatusDescription)
		}
	}
	for _, t := range s.Twins {
		if !t.Converged() {
			return "twin of " + t.Device + ": " + pending(t)
		}
	}
	return ""
}

// editTwins changes every device's twin on both sides while the link is
// down: desired properties at the hub, reported ones by the device at the
// edge.
func (s *session) editTwins(ctx context.Context) error {
	for i, d := range s.devices {
		desired := map[string]any{"setpoint": 20 + float64(i) + 0.5, "editedAtHub": s.run}
		if i == 0 {
			desired["intervalMs"] = defaultInterval.Milliseconds() / 2
		}
		if err := patchDesired(ctx, s.hubc, d.id, desired); err != nil {
			return err
		}
		if err := d.report(ctx, map[string]any{"reportedAtEdge": s.run}); err != nil {
			return err
		}
	}
	s.phase("twins edited on both sides: desired at the hub (setpoint; %s publishes twice as often), reported by each device at the edge",
		s.devices[0].id)
	return nil
}

// verdict waits for convergence and prints the final line.
func (s *session) verdict(ctx context.Context) error {
	deadline := time.Now().Add(convergeTimeout)
	for {
		f := s.tally.Figures(s.restoredAt())
		twins := s.twins(ctx)
		done := f.Lost == 0 && converged(twins) == len(twins)
		if done || time.Now().After(deadline) {
			line := fmt.Sprintf("%s, drain %s, twins %d/%d equal; the filter module passed %d readings",
				f, drain(f.Drain), converged(twins), len(twins), f.Filtered)
			if done && f.Clean() {
				fmt.Fprintf(s.o.Stdout, "converged: %s\n", line)
				return nil
			}
			return fmt.Errorf("not converged: %s%s (logs in %s)", line, twinProblems(twins), s.o.Dir)
		}
		if err := s.sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

func drain(d time.Duration) string {
	if d < 0 {
		return "unfinished"
	}
	return d.Round(10 * time.Millisecond).String()
}

func twinProblems(twins []TwinState) string {
	var out []string
	for _, t := range twins {
		if !t.Converged() {
			out = append(out, t.Device+": "+pending(t))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

// pause lets d pass, with a status line on stderr every progressEvery.
func (s *session) pause(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if err := s.sleep(ctx, min(left, progressEvery)); err != nil {
			return err
		}
		if time.Until(end) > 0 {
			s.phase("%s", statusLine(s.snapshot(ctx)))
		}
	}
}

// sleep waits d. An interrupted story (ctx) is an error: it proved
// nothing; so is a hub or an edge that stopped by itself.
func (s *session) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted before the story ended: %w", ctx.Err())
	case <-s.hub.done:
		return s.hub.died()
	case <-s.edge.done:
		return s.edge.died()
	case <-t.C:
		return nil
	}
}
