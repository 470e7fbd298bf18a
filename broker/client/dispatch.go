package client

import (
	"context"
	"fmt"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Subscription filters (CONTRACT.md §4).
const (
	filterTwinRes = "$iothub/twin/res/#"
	filterDesired = "$iothub/twin/PATCH/properties/desired/#"
	filterMethods = "$iothub/methods/POST/#"

	prefixTwinRes = "$iothub/twin/res/"
	prefixDesired = "$iothub/twin/PATCH/properties/desired/"
	prefixMethods = "$iothub/methods/POST/"
)

// OnInput sets the handler of a module input. Messages of one client are
// handled one at a time, in the order they arrive; a message is
// acknowledged (PUBACK) only after its handler returns, so one whose
// handler never finished (the process crashed, the connection dropped) is
// delivered again. Handlers may call the client (SendOutput, PatchReported
// …). Messages for an input with no handler (and no OnAnyInput) are
// acknowledged and dropped, with a warning.
func (c *Client) OnInput(input string, h func(Message)) {
	c.setHandler(func(hs *handlers) { hs.inputs[input] = h })
}

// OnAnyInput sets the handler of module inputs that have no OnInput
// handler; Message.InputName tells which input.
func (c *Client) OnAnyInput(h func(Message)) {
	c.setHandler(func(hs *handlers) { hs.anyInput = h })
}

// OnC2D sets the handler of cloud-to-device messages (devices only), with
// the same ordering and acknowledgement rules as OnInput.
func (c *Client) OnC2D(h func(Message)) {
	c.setHandler(func(hs *handlers) { hs.c2d = h })
}

func (c *Client) setHandler(set func(*handlers)) {
	c.mu.Lock()
	set(&c.h)
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		c.refresh(cn)
	}
}

// wanted lists the filters the registered handlers need.
func (c *Client) wanted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := []string{filterTwinRes}
	if c.h.desired != nil {
		f = append(f, filterDesired)
	}
	if len(c.h.methods) > 0 || c.h.anyMethod != nil {
		f = append(f, filterMethods)
	}
	if len(c.h.inputs) > 0 || c.h.anyInput != nil {
		if c.inputs == "" {
			c.log.Warn("input handlers set on a device client: devices have no inputs (use OnC2D)")
		} else {
			f = append(f, strings.TrimSuffix(c.inputs, "inputs/")+"#")
		}
	}
	if c.h.c2d != nil {
		f = append(f, c.c2d+"#")
	}
	return f
}

// subscribeMissing subscribes cn to the wanted filters it lacks, in one
// SUBSCRIBE, and returns them.
func (c *Client) subscribeMissing(ctx context.Context, cn *conn) ([]string, error) {
	cn.subMu.Lock()
	defer cn.subMu.Unlock()
	filters := map[string]byte{}
	var added []string
	for _, f := range c.wanted() {
		if !cn.subs[f] {
			filters[f] = 1
			added = append(added, f)
		}
	}
	if len(filters) == 0 {
		return nil, nil
	}
	tok := cn.pc.SubscribeMultiple(filters, nil)
	select {
	case <-tok.Done():
	case <-cn.lost:
		return nil, fmt.Errorf("subscribe: %w", ErrConnectionLost)
	case <-ctx.Done():
		return nil, fmt.Errorf("subscribe: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code >= 0x80 {
			return nil, fmt.Errorf("%w: subscription to %q (this identity may not use it)", ErrRefused, f)
		}
	}
	for _, f := range added {
		cn.subs[f] = true
	}
	return added, nil
}

// refresh subscribes a live connection to the filters of handlers
// registered after it was set up, in the background.
func (c *Client) refresh(cn *conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.requestTimeout)
		defer cancel()
		added, err := c.subscribeMissing(ctx, cn)
		if err != nil {
			if !cn.isLost() && c.ctx.Err() == nil {
				c.log.Warn("subscribing for a new handler failed", "err", err)
			}
			return
		}
		for _, f := range added {
			if f == filterDesired {
				c.ds.beginSync()
				c.syncDesired(ctx, cn)
			}
		}
	}()
}

// route sorts an incoming PUBLISH. It runs on paho's dispatch goroutine
// and must not block: handlers run on the client's own queues.
func (c *Client) route(cn *conn, m paho.Message) {
	t := m.Topic()
	switch {
	case strings.HasPrefix(t, prefixTwinRes):
		cn.answer(strings.TrimPrefix(t, prefixTwinRes), m.Payload())
		m.Ack()
	case strings.HasPrefix(t, prefixDesired):
		c.desiredPatch(cn, t, m)
	case strings.HasPrefix(t, prefixMethods):
		m.Ack() // the request is void once its connection is gone: nothing to redeliver
		c.methodQ.push(func() { c.method(cn, strings.TrimPrefix(t, prefixMethods), m.Payload()) })
	case c.inputs != "" && strings.HasPrefix(t, c.inputs):
		c.msgQ.push(func() { c.input(cn, strings.TrimPrefix(t, c.inputs), m) })
	case strings.HasPrefix(t, c.c2d):
		c.msgQ.push(func() { c.cloudToDevice(cn, strings.TrimPrefix(t, c.c2d), m) })
	default:
		c.log.Debug("message on an unexpected topic ignored", "topic", t)
		m.Ack()
	}
}

func (c *Client) input(cn *conn, rest string, pm paho.Message) {
	if cn.isLost() {
		return // its acknowledgement could not be sent: it comes again
	}
	msg, err := parseInput(rest)
	if err != nil {
		c.log.Warn("malformed input topic; message dropped", "topic", pm.Topic(), "err", err)
		pm.Ack()
		return
	}
	msg.Body = pm.Payload()
	c.mu.Lock()
	h := c.h.inputs[msg.InputName]
	if h == nil {
		h = c.h.anyInput
	}
	warn := h == nil && !c.h.unhandled[msg.InputName]
	if warn {
		c.h.unhandled[msg.InputName] = true
	}
	c.mu.Unlock()
	if h != nil {
		h(msg)
	} else if warn {
		c.log.Warn("messages on an input without a handler are dropped", "input", msg.InputName)
	}
	pm.Ack()
}

func (c *Client) cloudToDevice(cn *conn, bag string, pm paho.Message) {
	if cn.isLost() {
		return
	}
	var msg Message
	if err := decodeBag(bag, &msg); err != nil {
		c.log.Warn("malformed C2D property bag; properties dropped", "err", err)
	}
	msg.Body = pm.Payload()
	c.mu.Lock()
	h := c.h.c2d
	c.mu.Unlock()
	if h != nil {
		h(msg)
	}
	pm.Ack()
}

// serial runs jobs one at a time in order on one goroutine, started by
// start and ended by stop (which waits for the running job; jobs not
// started are dropped). Pushing never blocks: paho's reader must never
// wait for a handler, or a handler waiting for a PUBACK would deadlock.
type serial struct {
	mu      sync.Mutex
	jobs    []func()
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	started bool
	once    sync.Once
}

func newSerial() *serial {
	return &serial{wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

func (s *serial) push(f func()) {
	s.mu.Lock()
	s.jobs = append(s.jobs, f)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *serial) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		go s.run()
	}
}

func (s *serial) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		var f func()
		if len(s.jobs) > 0 {
			f = s.jobs[0]
			s.jobs[0] = nil
			s.jobs = s.jobs[1:]
		}
		s.mu.Unlock()
		select {
		case <-s.quit:
			return
		default:
		}
		if f != nil {
			f()
			continue
		}
		select {
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}

func (s *serial) stop() {
	s.once.Do(func() { close(s.quit) })
	s.mu.Lock()
	started := s.started
	s.started = true // a later start must not run
	s.mu.Unlock()
	if started {
		<-s.done
	}
}
