package demo

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// endpointQueue is one endpoint's queues (all priorities) together.
type endpointQueue struct {
	Name   string
	Depth  int64
	Oldest float64 // seconds
}

var priority = regexp.MustCompile(`/p(\d+|default)$`)

// endpoints sums the edge's queues per endpoint, sorted by name.
func endpoints(s Snapshot) []endpointQueue {
	if s.Status == nil {
		return nil
	}
	by := map[string]*endpointQueue{}
	for _, q := range s.Status.Queues {
		name := priority.ReplaceAllString(q.Name, "")
		e := by[name]
		if e == nil {
			e = &endpointQueue{Name: name}
			by[name] = e
		}
		e.Depth += q.Depth
		e.Oldest = max(e.Oldest, q.OldestSeconds)
	}
	out := make([]endpointQueue, 0, len(by))
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

// linkState is the link as the edge sees it, and what the proxy does.
func linkState(s Snapshot) string {
	edge := "edge unreachable"
	if s.Status != nil {
		edge = s.Status.Link
	}
	if s.LinkCut {
		return edge + " (link cut by the demo: r restores it)"
	}
	return edge
}

// statusLine is one line for a log or a pipe.
func statusLine(s Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "link %s; ", linkState(s))
	for _, q := range endpoints(s) {
		if q.Name == "$upstream" || q.Depth > 0 {
			fmt.Fprintf(&b, "%s %d (oldest %.0fs); ", q.Name, q.Depth, q.Oldest)
		}
	}
	fmt.Fprintf(&b, "in %.1f/s, out %.1f/s; %s; twins %d/%d converged", s.InRate, s.OutRate, s.Figures.Running(), converged(s.Twins), len(s.Twins))
	if s.Status != nil {
		for _, m := range slices.Sorted(maps.Keys(s.Status.Modules)) {
			fmt.Fprintf(&b, "; %s %s", m, s.Status.Modules[m].RuntimeStatus)
		}
	}
	return b.String()
}

// header is what the live view shows above the figures.
type header struct {
	hub, dashboard, dir string
	keys                bool
}

// renderScreen writes the live view: one screenful, redrawn each second.
func renderScreen(w io.Writer, h header, s Snapshot) {
	fmt.Fprintf(w, "outpost demo  %s  (%s)\n", s.Elapsed.Truncate(time.Second), h.dir)
	fmt.Fprintf(w, "hub        %s\ndashboard  %s\n", h.hub, h.dashboard)
	if h.keys {
		fmt.Fprintln(w, "keys       c cut the link   r restore it   t edit a twin at the hub   q quit")
	}
	fmt.Fprintf(w, "\nlink       %s\n", linkState(s))
	if s.StatusErr != "" {
		fmt.Fprintf(w, "edge       %s\n", s.StatusErr)
	}
	fmt.Fprintf(w, "messages   in %.1f/s  out %.1f/s   leaf devices: %s\n\n", s.InRate, s.OutRate, s.Figures.Running())
	rows := [][]string{{"QUEUE", "DEPTH", "OLDEST"}}
	for _, q := range endpoints(s) {
		rows = append(rows, []string{q.Name, fmt.Sprint(q.Depth), fmt.Sprintf("%.0fs", q.Oldest)})
	}
	table(w, rows)
	rows = [][]string{{"TWIN", "CONVERGED", "PENDING"}}
	for _, t := range s.Twins {
		rows = append(rows, []string{t.Device, yesNo(t.Converged()), pending(t)})
	}
	table(w, rows)
	if s.Status != nil && len(s.Status.Modules) > 0 {
		rows = [][]string{{"MODULE", "STATUS", "RESTARTS"}}
		for _, m := range slices.Sorted(maps.Keys(s.Status.Modules)) {
			st := s.Status.Modules[m]
			rows = append(rows, []string{m, st.RuntimeStatus, fmt.Sprint(st.RestartCount)})
		}
		table(w, rows)
	}
}

// table writes rows in aligned columns, then an empty line.
func table(w io.Writer, rows [][]string) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	for _, line := range strings.Split(b.String(), "\n") {
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// pending says why a twin has not converged.
func pending(t TwinState) string {
	switch {
	case t.Err != "":
		return t.Err
	case len(t.Pending) > 0:
		return strings.Join(t.Pending, ", ")
	case !t.Followed:
		return "the device has not reported back its desired properties yet"
	}
	return ""
}
