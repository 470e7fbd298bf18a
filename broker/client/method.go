package client

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
)

// MethodHandler answers a direct method: payload is the request's JSON (or
// empty), status any integer (200 for success, by convention), response
// JSON (nil sends null).
type MethodHandler func(payload []byte) (status int, response []byte)

// OnMethod sets the handler of direct method name. Method requests run one
// at a time, in arrival order, apart from messages and twin changes.
// Requests for a method without a handler (and no OnAnyMethod) are
// answered 404 {"message":"method <name> not implemented"}.
func (c *Client) OnMethod(name string, h MethodHandler) {
	c.setHandler(func(hs *handlers) { hs.methods[name] = h })
}

// OnAnyMethod sets the handler of direct methods that have no OnMethod
// handler.
func (c *Client) OnAnyMethod(h func(name string, payload []byte) (status int, response []byte)) {
	c.setHandler(func(hs *handlers) { hs.anyMethod = h })
}

// method answers $iothub/methods/POST/{name}/?$rid=R on
// $iothub/methods/res/{status}/?$rid=R. It runs on the method queue.
func (c *Client) method(cn *conn, rest string, payload []byte) {
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		c.log.Warn("malformed method request topic ignored", "topic", prefixMethods+rest)
		return
	}
	name, err := url.PathUnescape(rest[:i])
	if err != nil {
		name = rest[:i]
	}
	rid := topicQuery(rest[i+1:])["$rid"]
	if rid == "" {
		c.log.Warn("method request without $rid ignored", "method", name)
		return
	}
	c.mu.Lock()
	h, fallback := c.h.methods[name], c.h.anyMethod
	c.mu.Unlock()
	var status int
	var resp []byte
	switch {
	case h != nil:
		status, resp = h(payload)
	case fallback != nil:
		status, resp = fallback(name, payload)
	default:
		status = 404
		resp, _ = json.Marshal(map[string]string{"message": "method " + name + " not implemented"})
	}
	if len(resp) == 0 {
		resp = []byte("null")
	}
	// The answer goes on the connection the request came on; if that one
	// is gone, on the current one (the broker pairs answers with requests
	// by identity and $rid), and if there is none the caller times out.
	if cn.isLost() {
		c.mu.Lock()
		cn = c.conn
		c.mu.Unlock()
		if cn == nil {
			return
		}
	}
	topic := "$iothub/methods/res/" + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
	cn.pc.Publish(topic, 0, false, resp)
}
