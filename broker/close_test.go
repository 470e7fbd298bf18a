package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
)

// TestCloseWhileClientsComeAndGo: the broker closes while clients keep
// connecting and leaving. mochi's own way of disconnecting a listener's
// clients takes its client map's read lock twice, and a client attaching
// or leaving in between deadlocked Close for good (a CI run hung on it);
// Close must return, every time.
func TestCloseWhileClientsComeAndGo(t *testing.T) {
	const rounds, churners = 8, 6
	for round := range rounds {
		var ids []string
		for i := range churners {
			ids = append(ids, fmt.Sprintf("d%d", i))
		}
		h := brokertest.New(t, brokertest.Options{Identities: ids})
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c := h.Client(id, client.WithLogger(nil))
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_ = c.Connect(cctx)
					cancel()
					c.Close()
				}
			}()
		}
		time.Sleep(50 * time.Millisecond) // clients in every phase: connecting, connected, leaving
		closed := make(chan struct{})
		go func() { h.Broker.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(20 * time.Second):
			stop()
			t.Fatalf("round %d: Close did not return within 20 s with clients connecting and leaving", round)
		}
		stop()
		wg.Wait()
	}
}
