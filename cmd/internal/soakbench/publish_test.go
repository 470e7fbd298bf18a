package soakbench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

// publisher is one leaf device publishing QoS 1 telemetry, message ids
// <device>-<n> from n = 0. Its waiter takes the publishes' tokens in
// order and records the acknowledged n; it owns acked until it ends.
type publisher struct {
	id      string
	cli     paho.Client
	sent    atomic.Int64
	errors  atomic.Int64
	blocked atomic.Int64 // publishes that waited for a free inflight slot
	pending chan pending
	acked   []uint32
	done    chan struct{}
}

type pending struct {
	n   uint32
	tok paho.Token
}

// inflight bounds the unacknowledged publishes of one publisher: 4 s of
// its share of the load, far more than the edge needs to acknowledge
// (it acknowledges once stored, hub or no hub).
const inflight = 1000

func dial(addr, id string, key []byte) (*publisher, error) {
	tok := sas.NewToken(sas.ResourceURI(hostName, id, ""), key, "", time.Now().Add(24*time.Hour))
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(hostName + "/" + id + "/?api-version=2021-04-12").SetPassword(tok).
		SetAutoReconnect(false).SetProtocolVersion(4).SetOrderMatters(false).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second)
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	p := &publisher{id: id, cli: c, pending: make(chan pending, inflight), done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// dialRetry dials until the edge knows the device (its identity comes
// down the link from the hub) or a minute has passed.
func dialRetry(addr, id string, key []byte) (*publisher, error) {
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var p *publisher
		if p, err = dial(addr, id, key); err == nil {
			return p, nil
		}
	}
	return nil, err
}

// run publishes at rate msg/s on a fixed schedule until ctx ends (a late
// publish goes at once, so the offered load stays rate over the run),
// then closes pending; the waiter ends once every token has completed.
func (p *publisher) run(ctx context.Context, rate float64, body func(mid string) []byte) {
	defer close(p.pending)
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for n := uint32(0); ; n++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		next = next.Add(interval)
		if !p.cli.IsConnected() {
			p.errors.Add(1)
			return
		}
		mid := p.id + "-" + strconv.FormatUint(uint64(n), 10)
		t := p.cli.Publish("devices/"+p.id+"/messages/events/%24.mid="+mid, 1, false, body(mid))
		p.sent.Add(1)
		select {
		case p.pending <- pending{n, t}:
		default:
			p.blocked.Add(1)
			p.pending <- pending{n, t}
		}
	}
}

// wait records the acknowledged publishes, in the order they were sent.
func (p *publisher) wait() {
	defer close(p.done)
	for pd := range p.pending {
		if !pd.tok.WaitTimeout(time.Minute) || pd.tok.Error() != nil {
			p.errors.Add(1)
			continue
		}
		p.acked = append(p.acked, pd.n)
	}
}

// parseMid splits a message id <device>-<n>.
func parseMid(mid string) (dev string, n uint32, ok bool) {
	i := strings.LastIndexByte(mid, '-')
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(mid[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return mid[:i], uint32(v), true
}
