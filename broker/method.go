package broker

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MethodResult is a device's or module's answer to a direct method.
type MethodResult struct {
	Status  int
	Payload []byte
}

// methods pairs method requests with their responses by request id.
type methods struct {
	next    atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan MethodResult // key: identity + "\x00" + rid
}

func newMethods() *methods { return &methods{waiting: map[string]chan MethodResult{}} }

func (m *methods) register(id string) (string, chan MethodResult) {
	rid := strconv.FormatUint(m.next.Add(1), 16)
	ch := make(chan MethodResult, 1)
	m.mu.Lock()
	m.waiting[id+"\x00"+rid] = ch
	m.mu.Unlock()
	return rid, ch
}

func (m *methods) forget(id, rid string) {
	m.mu.Lock()
	delete(m.waiting, id+"\x00"+rid)
	m.mu.Unlock()
}

// answer delivers a response; one that nobody waits for (late, or for
// another identity) is dropped here, which is what IoT Hub does too.
func (m *methods) answer(id, rid string, status int, payload []byte) {
	m.mu.Lock()
	ch := m.waiting[id+"\x00"+rid]
	delete(m.waiting, id+"\x00"+rid)
	m.mu.Unlock()
	if ch != nil {
		ch <- MethodResult{Status: status, Payload: append([]byte(nil), payload...)}
	}
}

// InvokeMethod calls direct method name on the connected device or module
// id and waits up to timeout for its answer. It fails at once with
// ErrNotConnected when the target is not connected and subscribed to
// methods, and with ErrTimeout when no answer comes.
func (b *Broker) InvokeMethod(ctx context.Context, id, name string, payload []byte, timeout time.Duration) (MethodResult, error) {
	s := b.sessionOf(id)
	if s == nil || !s.has("methods") {
		return MethodResult{}, fmt.Errorf("invoke %s on %s: %w", name, id, ErrNotConnected)
	}
	if len(payload) == 0 {
		payload = []byte("null") // the SDKs parse the request body as JSON
	}
	rid, ch := b.methods.register(id)
	defer b.methods.forget(id, rid)
	topic := fmt.Sprintf("$iothub/methods/POST/%s/?$rid=%s", url.PathEscape(name), rid)
	if err := s.publish(topic, payload); err != nil {
		return MethodResult{}, fmt.Errorf("invoke %s on %s: %w", name, id, ErrNotConnected)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		return MethodResult{}, fmt.Errorf("invoke %s on %s: no answer in %v: %w", name, id, timeout, ErrTimeout)
	case <-ctx.Done():
		return MethodResult{}, ctx.Err()
	}
}
