package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Twin is the device-side view of a twin: desired and reported properties
// with their versions. The maps hold decoded JSON (numbers are float64)
// without "$version" and "$metadata".
type Twin struct {
	Desired         map[string]any
	DesiredVersion  int64
	Reported        map[string]any
	ReportedVersion int64
}

// StatusError is a twin request the broker answered with an error status.
type StatusError struct {
	Op      string // "get twin", "patch reported properties"
	Status  int    // e.g. 400, 503
	Message string // the broker's explanation, if it gave one
	Body    []byte
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = string(e.Body)
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if msg == "" {
		return fmt.Sprintf("%s: status %d", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: status %d: %s", e.Op, e.Status, msg)
}

func statusError(op string, r response) error {
	e := &StatusError{Op: op, Status: r.status, Body: r.body}
	var body struct{ Message string }
	if json.Unmarshal(r.body, &body) == nil {
		e.Message = body.Message
	}
	return e
}

// response is a twin answer: $iothub/twin/res/{status}/?$rid=R[&$version=n].
type response struct {
	status  int
	version int64
	body    []byte
}

// answer hands a twin response to the request waiting for its $rid.
func (cn *conn) answer(rest string, payload []byte) {
	status, query, _ := strings.Cut(rest, "/")
	q := topicQuery(query)
	code, err := strconv.Atoi(status)
	if err != nil {
		return
	}
	v, _ := strconv.ParseInt(q["$version"], 10, 64)
	cn.mu.Lock()
	ch := cn.pending[q["$rid"]]
	delete(cn.pending, q["$rid"])
	cn.mu.Unlock()
	if ch != nil {
		ch <- response{status: code, version: v, body: append([]byte(nil), payload...)}
	}
}

// request publishes topic + "?$rid=R" on cn and waits for the response.
func (c *Client) request(ctx context.Context, cn *conn, topic string, body []byte) (response, error) {
	rid := strconv.FormatUint(c.rid.Add(1), 10)
	ch := make(chan response, 1)
	cn.mu.Lock()
	cn.pending[rid] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, rid)
		cn.mu.Unlock()
	}()
	tok := cn.pc.Publish(topic+"?$rid="+rid, 0, false, body)
	sent := tok.Done()
	for {
		select {
		case <-sent:
			if err := tok.Error(); err != nil {
				return response{}, err
			}
			sent = nil
		case r := <-ch:
			return r, nil
		case <-cn.lost:
			return response{}, ErrConnectionLost
		case <-ctx.Done():
			return response{}, ctx.Err()
		}
	}
}

// GetTwin reads the twin's desired and reported properties. Without a
// connection it waits for one until ctx is done. A status other than 200
// is a *StatusError.
func (c *Client) GetTwin(ctx context.Context) (Twin, error) {
	cn, err := c.current(ctx)
	if err != nil {
		return Twin{}, fmt.Errorf("get twin: %w", err)
	}
	return c.getTwin(ctx, cn)
}

func (c *Client) getTwin(ctx context.Context, cn *conn) (Twin, error) {
	r, err := c.request(ctx, cn, "$iothub/twin/GET/", nil)
	if err != nil {
		return Twin{}, fmt.Errorf("get twin: %w", err)
	}
	if r.status != 200 {
		return Twin{}, statusError("get twin", r)
	}
	var doc struct{ Desired, Reported map[string]any }
	if err := json.Unmarshal(r.body, &doc); err != nil {
		return Twin{}, fmt.Errorf("get twin: the answer is not twin JSON: %w", err)
	}
	var t Twin
	t.Desired, t.DesiredVersion = section(doc.Desired)
	t.Reported, t.ReportedVersion = section(doc.Reported)
	return t, nil
}

// section takes $version and $metadata out of a twin section.
func section(m map[string]any) (map[string]any, int64) {
	if m == nil {
		m = map[string]any{}
	}
	var v int64
	if f, ok := m["$version"].(float64); ok {
		v = int64(f)
	}
	delete(m, "$version")
	delete(m, "$metadata")
	return m, v
}

// PatchReported merges patch (a value that marshals to a JSON object, or
// the JSON itself as []byte or json.RawMessage) into the reported
// properties; null deletes a property. It returns the new reported
// $version (0 if the broker does not say, as edgeHub does not). Without a
// connection it waits for one until ctx is done.
func (c *Client) PatchReported(ctx context.Context, patch any) (int64, error) {
	var body []byte
	switch p := patch.(type) {
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		b, err := json.Marshal(patch)
		if err != nil {
			return 0, fmt.Errorf("patch reported properties: %w", err)
		}
		body = b
	}
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		return 0, fmt.Errorf("patch reported properties: %w: the patch must be a JSON object", ErrBadMessage)
	}
	cn, err := c.current(ctx)
	if err != nil {
		return 0, fmt.Errorf("patch reported properties: %w", err)
	}
	r, err := c.request(ctx, cn, "$iothub/twin/PATCH/properties/reported/", body)
	if err != nil {
		return 0, fmt.Errorf("patch reported properties: %w", err)
	}
	if r.status != 204 && r.status != 200 {
		return 0, statusError("patch reported properties", r)
	}
	return r.version, nil
}

// OnDesired sets the handler of desired-property changes. It is called
// one change at a time, in order, with the patch (null values are deleted
// properties) and its $version. On every connection, after subscribing,
// the client reads the whole twin and calls h with the full desired
// properties if their $version is newer than the last one delivered, so a
// change made while disconnected is not missed; a patch whose $version is
// not newer than the last delivered is ignored.
func (c *Client) OnDesired(h func(desired map[string]any, version int64)) {
	c.setHandler(func(hs *handlers) { hs.desired = h })
}

// desiredState orders desired deliveries. While a connection reads the
// full twin, patches are held back and queued after it, so that a patch
// racing the GET cannot hide older changes the GET would have brought.
type desiredState struct {
	mu      sync.Mutex
	syncing int // connections reading the full twin
	held    []desiredEvent
	last    int64 // version last delivered; owned by the desired queue
}

type desiredEvent struct {
	doc     map[string]any
	version int64
	ack     func()
}

func (d *desiredState) beginSync() {
	d.mu.Lock()
	d.syncing++
	d.mu.Unlock()
}

// endSync queues the full desired properties (nil if the GET failed)
// and then the patches held meanwhile.
func (d *desiredState) endSync(c *Client, full *desiredEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncing--
	if full != nil {
		c.queueDesired(*full)
	}
	if d.syncing == 0 {
		for _, ev := range d.held {
			c.queueDesired(ev)
		}
		d.held = nil
	}
}

// desiredPatch receives $iothub/twin/PATCH/properties/desired/?$version=n.
func (c *Client) desiredPatch(cn *conn, topic string, m paho.Message) {
	var doc map[string]any
	if err := json.Unmarshal(m.Payload(), &doc); err != nil || doc == nil {
		c.log.Warn("desired properties patch is not a JSON object; ignored", "err", err)
		m.Ack()
		return
	}
	_, query, _ := strings.Cut(strings.TrimPrefix(topic, prefixDesired), "?")
	v, _ := strconv.ParseInt(topicQuery(query)["$version"], 10, 64)
	doc, bodyVersion := section(doc)
	if bodyVersion != 0 {
		v = bodyVersion
	}
	ev := desiredEvent{doc: doc, version: v, ack: m.Ack}
	c.ds.mu.Lock()
	defer c.ds.mu.Unlock()
	if c.ds.syncing > 0 {
		c.ds.held = append(c.ds.held, ev)
		return
	}
	c.queueDesired(ev)
}

func (c *Client) queueDesired(ev desiredEvent) {
	c.desiredQ.push(func() { c.deliverDesired(ev) })
}

// deliverDesired runs on the desired queue.
func (c *Client) deliverDesired(ev desiredEvent) {
	if ev.version > c.ds.last || ev.version == 0 { // 0: a broker that gives no version
		c.mu.Lock()
		h := c.h.desired
		c.mu.Unlock()
		if h != nil {
			h(ev.doc, ev.version)
			c.ds.last = max(c.ds.last, ev.version)
		}
	}
	if ev.ack != nil {
		ev.ack()
	}
}

// syncDesired reads the twin on a new connection and queues its desired
// section; patches wait meanwhile. The caller called beginSync.
func (c *Client) syncDesired(ctx context.Context, cn *conn) {
	t, err := c.getTwin(ctx, cn)
	if err != nil {
		c.ds.endSync(c, nil)
		if !cn.isLost() && ctx.Err() == nil {
			c.log.Warn("reading the twin after connecting failed; desired changes made while disconnected arrive with the next patch or connection", "err", err)
		}
		return
	}
	c.ds.endSync(c, &desiredEvent{doc: t.Desired, version: t.DesiredVersion})
}
