package broker

import (
	"context"
	"strings"
)

// PurgeQueues removes what waits for an identity the hub deleted: a
// device's cloud-to-device queues, a module's input queues. Its connection
// should be closed first (Disconnect). It returns how many messages it
// removed, for the caller to count and log.
func (b *Broker) PurgeQueues(ctx context.Context, id string) (int, error) {
	device, module, isModule := strings.Cut(id, "/")
	prefix := "c2d/" + device + "/"
	if isModule {
		if device != b.opts.EdgeID {
			return 0, nil // only this edge's modules have input queues here
		}
		prefix = "modules/" + module + "/inputs/"
	}
	n := 0
	for _, name := range b.opts.Queues.Queues() {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		q, err := b.queueNamed(name)
		if err != nil {
			return n, err
		}
		c, err := q.Purge(ctx)
		n += c
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
