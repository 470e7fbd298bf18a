package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

// deployPoll is how often deploy --wait reads the system modules' twins.
const deployPoll = 250 * time.Millisecond

// systemTwin is what deploy --wait reads of a system module's twin: the
// version of the desired properties the hub holds, and what the edge last
// reported of the deployment it applied.
type systemTwin struct {
	Properties struct {
		Desired struct {
			Version int64 `json:"$version"`
		} `json:"desired"`
		Reported struct {
			LastDesiredVersion *int64 `json:"lastDesiredVersion"`
			LastDesiredStatus  *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"lastDesiredStatus"`
		} `json:"reported"`
	} `json:"properties"`
}

// waitApplied waits until each of mods of edge d reports the deployment
// just sent applied: lastDesiredVersion at least the desired $version the
// hub holds now, with lastDesiredStatus 200. A 400 (or any code but 500,
// which the edge retries) ends the wait with the edge's reason; so does
// timeout, with what was last seen.
func waitApplied(ctx context.Context, h *hubCall, c *hubclient.Client, d string, mods []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := map[string]int64{}
	for _, m := range mods {
		var tw systemTwin
		if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("twins", d, "modules", m), nil, &tw); err != nil {
			return fmt.Errorf("read the %s twin of %q: %w", m, d, err)
		}
		want[m] = tw.Properties.Desired.Version
	}
	fmt.Fprintf(h.env.Stderr, "waiting up to %s for %q to apply the deployment\n", timeout, d)
	last := map[string]string{}
	for len(want) > 0 {
		for _, m := range mods {
			v, ok := want[m]
			if !ok {
				continue
			}
			done, seen, err := checkApplied(ctx, c, d, m, v)
			if err != nil {
				return err
			}
			last[m] = seen
			if done {
				fmt.Fprintf(h.env.Stderr, "%s: %s\n", m, seen)
				delete(want, m)
			}
		}
		if len(want) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return timedOut(d, timeout, want, last)
		case <-time.After(deployPoll):
		}
	}
	return nil
}

// checkApplied reads module m's twin once: done when it reports version v
// (or later) applied; an error when it reports it refused.
func checkApplied(ctx context.Context, c *hubclient.Client, d, m string, v int64) (done bool, seen string, err error) {
	var tw systemTwin
	if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("twins", d, "modules", m), nil, &tw); err != nil {
		if ctx.Err() != nil {
			return false, "", nil // the caller reports the timeout
		}
		return false, "", fmt.Errorf("read the %s twin of %q: %w", m, d, err)
	}
	r := tw.Properties.Reported
	if r.LastDesiredVersion == nil || r.LastDesiredStatus == nil {
		return false, "nothing reported yet (is the edge online?)", nil
	}
	st := r.LastDesiredStatus
	seen = fmt.Sprintf("version %d: %d %s", *r.LastDesiredVersion, st.Code, st.Description)
	switch {
	case *r.LastDesiredVersion < v:
		return false, seen + fmt.Sprintf(" (waiting for version %d)", v), nil
	case st.Code == http.StatusOK:
		return true, strings.TrimSpace(seen), nil
	case st.Code == http.StatusInternalServerError:
		return false, seen, nil // not applied yet; the edge retries
	}
	return false, seen, fmt.Errorf("edge %q refused the deployment: %s reports %d: %s", d, m, st.Code, st.Description)
}

func timedOut(d string, timeout time.Duration, want map[string]int64, last map[string]string) error {
	var parts []string
	for _, m := range []string{"$edgeAgent", "$edgeHub"} {
		if _, ok := want[m]; ok {
			parts = append(parts, fmt.Sprintf("%s last reported %s", m, last[m]))
		}
	}
	return fmt.Errorf("edge %q did not apply the deployment within %s (--timeout): %s", d, timeout, strings.Join(parts, "; "))
}
