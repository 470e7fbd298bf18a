package hubclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Where FromEnv looks, besides the command-line flags.
const (
	EnvConnString = "OUTPOST_HUB_CONNECTION_STRING"
	EnvURL        = "OUTPOST_HUB_URL"
	EnvCA         = "OUTPOST_HUB_CA"        // PEM file of the CA that signed the hub's certificate
	EnvInsecure   = "OUTPOST_INSECURE_LINK" // 1: allow plain HTTP to a hub that is not on loopback
)

// Trust is how far the CLI trusts the way to the hub: the --hub-ca and
// --insecure-link flags (FromEnv falls back to OUTPOST_HUB_CA and
// OUTPOST_INSECURE_LINK=1).
type Trust struct {
	CAFile   string // the CA the hub's certificate must chain to, instead of the system's roots
	Insecure bool   // plain HTTP to a hub that is not on loopback is allowed
}

// APIVersion is sent with every request as IoT Hub clients do; the hub
// accepts and ignores it.
const APIVersion = "2021-04-12"

// Defaults of a Client and of Follow.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultWait       = 20 * time.Second // long-poll wait of Follow
	DefaultRetryMin   = time.Second
	DefaultRetryMax   = 5 * time.Second
	timeoutMargin     = 30 * time.Second // added to a server-side wait to get the HTTP timeout
	maxResponse       = 256 << 20
	tokenLifetime     = time.Hour
	emptyPollInterval = time.Second
	maxPage           = 1000 // events asked for in one request; the hub allows up to 10000
)

// ErrUnreachable is matched (errors.Is) by the errors of requests that never
// got an answer from the hub: connection refused or reset, DNS failure, a
// request that timed out. Follow retries these.
var ErrUnreachable = errors.New("hub is not reachable")

// Client talks to a hub, or to the nodes of a hub cluster, with the owner
// policy's key. A request that gets no answer from one node (or a 502, 503
// or 504) is sent to the next (see Send); a Client starts at a random node
// and stays with the last that answered.
type Client struct {
	// URL is the base of the REST API of the node tried first, without a
	// trailing slash (http://127.0.0.1:8080).
	URL string
	// URLs are the bases of every node, URL among them; nil means URL alone.
	URLs []string
	// HostName is the owner connection string's HostName: the SAS resource,
	// and the HostName of the device connection strings the hub hands out.
	HostName string
	// Timeout bounds a request that has no Timeout of its own.
	Timeout time.Duration
	// HTTP does the requests; http.DefaultClient's transport when nil.
	HTTP *http.Client
	// PlainRemote is set by FromEnv when the URL is plain HTTP to a hub
	// that is not on loopback (allowed by Trust.Insecure): the caller warns.
	PlainRemote bool

	cs  sas.ConnString
	now func() time.Time
	cur *atomic.Int32 // index in URLs of the node that answered last
}

// FromEnv builds a Client from the --hub-connection-string and --hub-url
// flag values (a URL or a comma-separated list of a cluster's nodes),
// falling back to OUTPOST_HUB_CONNECTION_STRING and OUTPOST_HUB_URL from
// getenv, and to https://<HostName> for the URL
// (http:// when HostName is loopback). Plain HTTP to a hub that is not on
// loopback is refused unless trust.Insecure (or OUTPOST_INSECURE_LINK=1):
// the owner's token would cross the network readable. The hub's
// certificate is always verified, against trust.CAFile (or OUTPOST_HUB_CA)
// when given, else the system's roots.
func FromEnv(flagCS, flagURL string, getenv func(string) string, trust Trust) (*Client, error) {
	where, s := "--hub-connection-string", flagCS
	if s == "" {
		where, s = EnvConnString, getenv(EnvConnString)
	}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("no hub connection string: set %s (the hub writes it to <data>/owner.connection-string) or pass --hub-connection-string", EnvConnString)
	}
	cs, err := sas.ParseConnString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if cs.SharedAccessKeyName == "" || len(cs.SharedAccessKey) == 0 {
		return nil, fmt.Errorf("%s is a device's or module's connection string (%s); the CLI needs the hub owner's, HostName=…;SharedAccessKeyName=owner;SharedAccessKey=…: set %s (the hub writes it to <data>/owner.connection-string)",
			where, cs.Redacted(), EnvConnString)
	}
	whereURL, u := "--hub-url", flagURL
	if u == "" {
		whereURL, u = EnvURL, getenv(EnvURL)
	}
	if u == "" {
		whereURL, u = "the connection string's HostName", huburl.Default(cs.HostName)
	}
	c, err := New(cs, u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", whereURL, err)
	}
	if err := c.trust(trust, getenv); err != nil {
		return nil, fmt.Errorf("%s: %w", whereURL, err)
	}
	return c, nil
}

// trust applies trust (with its environment fallbacks) to c: refuses plain
// HTTP to a remote hub unless insecure, and verifies the hub's certificate
// against the CA file when one is given.
func (c *Client) trust(trust Trust, getenv func(string) string) error {
	insecure := trust.Insecure || getenv(EnvInsecure) == "1"
	plain, err := huburl.Check(strings.Join(c.nodes(), ","), insecure) // every node, not only the first tried
	if errors.Is(err, huburl.ErrPlainRemote) {
		return fmt.Errorf("%w: the owner's token would cross the network readable; use https:// (the default for a remote hub; --hub-ca F or %s when its CA is your own), or pass --insecure-link (%s=1) to accept the risk",
			err, EnvCA, EnvInsecure)
	}
	if err != nil {
		return err
	}
	c.PlainRemote = plain
	where, file := "--hub-ca", trust.CAFile
	if file == "" {
		where, file = EnvCA, getenv(EnvCA)
	}
	if file == "" {
		return nil
	}
	pool, err := certs.LoadCAs(file, where)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(c.URLs) > 1 {
		tr = nodeTransport()
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.HTTP = &http.Client{Transport: tr}
	return nil
}

// New returns a Client for the hub at baseURL ("host:port" means
// http://host:port), or for the nodes of a hub cluster at a comma-separated
// list of URLs, signing with the owner policy connection string cs. The
// first node tried is picked at random, to spread the commands of many
// people over the cluster.
func New(cs sas.ConnString, baseURL string) (*Client, error) {
	if cs.SharedAccessKeyName == "" || len(cs.SharedAccessKey) == 0 {
		return nil, errors.New("the connection string is not a hub policy's (SharedAccessKeyName and SharedAccessKey)")
	}
	urls, err := huburl.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	start := rand.IntN(len(urls))
	c := &Client{URL: urls[start], URLs: urls, HostName: cs.HostName, Timeout: DefaultTimeout, cs: cs, now: time.Now, cur: new(atomic.Int32)}
	c.cur.Store(int32(start))
	if len(urls) > 1 {
		c.HTTP = &http.Client{Transport: nodeTransport()}
	}
	return c, nil
}

// Request is one call of the REST API.
type Request struct {
	Method string
	// Path is the escaped path (build it with PathOf), optionally with a
	// query; api-version is added.
	Path string
	// Body is nil (no body), []byte (sent as is with ContentType),
	// json.RawMessage (sent as is as JSON) or a value to encode as JSON.
	Body        any
	ContentType string // for []byte bodies; application/octet-stream by default
	// Header holds extra headers, sent with their names exactly as written.
	Header http.Header
	// Timeout bounds this request (the client's Timeout when 0).
	Timeout time.Duration
	// OnHeader, if set, is given the headers of a successful answer.
	OnHeader func(http.Header)
}

// Do sends method path with body (see Request.Body) and decodes a JSON
// answer into out when out is non-nil and the answer is not empty. An answer
// that is not 2xx is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.Send(ctx, Request{Method: method, Path: path, Body: body}, out)
}

// DoPage GETs one page of one of IoT Hub's paged listings: cont is the
// previous page's x-ms-continuation ("" for the first page), next this
// page's ("" when it was the last).
func (c *Client) DoPage(ctx context.Context, path, cont string, out any) (next string, err error) {
	r := Request{Method: http.MethodGet, Path: path, OnHeader: func(h http.Header) { next = h.Get("x-ms-continuation") }}
	if cont != "" {
		r.Header = http.Header{"x-ms-continuation": {cont}}
	}
	err = c.Send(ctx, r, out)
	return next, err
}

// Send is Do with headers and a timeout of the request's own. With several
// nodes, a request that one node did not answer goes to the next (see
// roundTrip): the error of a request no node answered names each and why.
func (c *Client) Send(ctx context.Context, r Request, out any) error {
	data, err := c.roundTrip(ctx, r)
	if err != nil {
		return err
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode the hub's answer: %w", r.Method, pathOnly(r.Path), err)
	}
	return nil
}

// tryNode sends r to the node at base once.
func (c *Client) tryNode(ctx context.Context, r Request, base string) ([]byte, error) {
	req, err := c.newRequest(r, base)
	if err != nil {
		return nil, err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = c.Timeout
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req.WithContext(rctx))
	if err != nil {
		return nil, transportError(ctx, rctx, base, timeout, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	switch {
	case err != nil:
		return nil, transportError(ctx, rctx, base, timeout, err)
	case len(data) > maxResponse:
		return nil, fmt.Errorf("%s %s: the hub's answer is larger than %d MiB", r.Method, pathOnly(r.Path), maxResponse>>20)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		e := ParseError(resp.StatusCode, data)
		e.RetryAfter = retryAfter(resp.Header)
		return nil, e
	}
	if r.OnHeader != nil {
		r.OnHeader(resp.Header)
	}
	return data, nil
}

func (c *Client) newRequest(r Request, base string) (*http.Request, error) {
	p, q, _ := strings.Cut(r.Path, "?")
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("hubclient: path %q does not start with /", r.Path)
	}
	query, err := url.ParseQuery(q)
	if err != nil {
		return nil, fmt.Errorf("hubclient: query of %q: %w", r.Path, err)
	}
	query.Set("api-version", APIVersion)
	var body io.Reader
	ctype := ""
	switch b := r.Body.(type) {
	case nil:
	case json.RawMessage:
		body, ctype = bytes.NewReader(b), "application/json"
	case []byte:
		body, ctype = bytes.NewReader(b), r.ContentType
		if ctype == "" {
			ctype = "application/octet-stream"
		}
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(b); err != nil {
			return nil, fmt.Errorf("encode the body of %s %s: %w", r.Method, p, err)
		}
		body, ctype = &buf, "application/json"
	}
	req, err := http.NewRequest(r.Method, base+p+"?"+query.Encode(), body)
	if err != nil {
		return nil, fmt.Errorf("hubclient: %s %s: %w", r.Method, p, err)
	}
	for k, vs := range r.Header {
		req.Header[k] = vs // as written: property names keep their case
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", c.Token())
	return req, nil
}

// Token returns a fresh owner SAS token valid for an hour.
func (c *Client) Token() string {
	return sas.NewToken(c.cs.Resource(), c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, c.clock().Add(tokenLifetime))
}

func (c *Client) clock() time.Time {
	if c.now == nil {
		return time.Now()
	}
	return c.now()
}

// transportError explains a request to the node at base that got no
// complete answer. ctx is the caller's context, rctx the request's (with
// its timeout).
func transportError(ctx, rctx context.Context, base string, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL (with the query) says nothing the message needs
	}
	if rctx.Err() != nil {
		return &unreachableError{url: base, err: fmt.Errorf("no answer within %s", timeout)}
	}
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return &unreachableError{url: base, err: err}
	}
	return fmt.Errorf("hub at %s: %w", base, err)
}

type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("hub at %s is not reachable: %v (is the hub running there? set --hub-url or %s if it listens elsewhere)", e.url, e.err, EnvURL)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// APIError is an answer of the hub outside 2xx, decoded from its JSON error
// body {"code","message"}.
type APIError struct {
	Status  int
	Code    string // e.g. DeviceNotFound; the HTTP status text when the body had none
	Message string
	// RetryAfter is the answer's Retry-After in seconds (a 503 while a hub
	// cluster elects its leader); 0 when absent.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("hub: %d %s", e.Status, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Status == http.StatusUnauthorized {
		s += " (is the connection string this hub's <data>/owner.connection-string?)"
	}
	return s
}

// ParseError builds the *APIError of an answer with status and body, read
// as every Outpost client reads the {code,message} envelope
// (protocol.ReadError): a body that is not the envelope yields the status
// text and a short excerpt of the body.
func ParseError(status int, body []byte) *APIError {
	e := protocol.ReadError(status, body)
	return &APIError{Status: e.Status, Code: e.Code, Message: e.Message}
}

// StatusOf is the HTTP status of an *APIError in err's chain, 0 otherwise.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// PathOf joins escaped segments: PathOf("devices", d, "modules", m) is
// /devices/<d>/modules/<m> with the ids path-escaped.
func PathOf(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// ConnectionString is the identity's connection string on this hub with
// its primary key (x509=true for certificate identities), "" when the
// identity carries neither.
func (c *Client) ConnectionString(d identity.JSON) string {
	s := "HostName=" + c.HostName + ";DeviceId=" + d.DeviceID
	if d.ModuleID != "" {
		s += ";ModuleId=" + d.ModuleID
	}
	a := d.Authentication
	switch {
	case a != nil && a.SymmetricKey != nil && len(a.SymmetricKey.PrimaryKey) > 0:
		return s + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString(a.SymmetricKey.PrimaryKey)
	case a != nil && (a.Type == identity.AuthSelfSigned || a.Type == identity.AuthCA):
		return s + ";x509=true"
	}
	return ""
}

// InvokeMethod calls direct method name on device d (module m when not "")
// and returns the hub's {"status","payload"} answer as received. payload
// nil sends null. The HTTP timeout outlasts the method's timeouts, so a
// method that times out is reported by the hub (504), not by the client.
func (c *Client) InvokeMethod(ctx context.Context, d, m, name string, payload json.RawMessage, response, connect time.Duration) (json.RawMessage, error) {
	if payload == nil {
		payload = json.RawMessage("null")
	}
	body := struct {
		MethodName      string          `json:"methodName"`
		Payload         json.RawMessage `json:"payload"`
		ResponseTimeout int64           `json:"responseTimeoutInSeconds"`
		ConnectTimeout  int64           `json:"connectTimeoutInSeconds"`
	}{name, payload, int64(response / time.Second), int64(connect / time.Second)}
	p := PathOf("twins", d)
	if m != "" {
		p = PathOf("twins", d, "modules", m)
	}
	var out json.RawMessage
	err := c.Send(ctx, Request{Method: http.MethodPost, Path: p + "/methods", Body: body, Timeout: response + connect + timeoutMargin}, &out)
	return out, err
}

// C2D is a cloud-to-device message.
type C2D struct {
	MessageID  string
	Properties [][2]string // application properties, in order
	Payload    []byte
}

// SendC2D queues a cloud-to-device message for device d.
func (c *Client) SendC2D(ctx context.Context, d string, msg C2D) error {
	h := http.Header{}
	if msg.MessageID != "" {
		h["iothub-messageid"] = []string{msg.MessageID}
	}
	for _, p := range msg.Properties {
		h["iothub-app-"+p[0]] = append(h["iothub-app-"+p[0]], p[1])
	}
	payload := msg.Payload
	if payload == nil {
		payload = []byte{}
	}
	return c.Send(ctx, Request{
		Method: http.MethodPost, Path: PathOf("devices", d, "messages", "deviceBound"),
		Body: payload, ContentType: "application/octet-stream", Header: h,
	}, nil)
}

// Event is one device-to-cloud event of the hub's event log.
type Event struct {
	Seq          uint64 `json:"seq"`
	DeviceID     string `json:"deviceId"`
	ModuleID     string `json:"moduleId,omitempty"`
	EnqueuedTime string `json:"enqueuedTime,omitempty"`
	MessageID    string `json:"messageId,omitempty"`
	BodyBase64   string `json:"body,omitempty"`
	// Raw is the event exactly as the hub sent it.
	Raw json.RawMessage `json:"-"`
}

// Body decodes the event's base64 body.
func (e Event) Body() ([]byte, error) { return base64.StdEncoding.DecodeString(e.BodyBase64) }

// Events reads one page of the event log: events with seq >= from (0: from
// the start), at most limit of them (0: the hub's default), waiting up to
// wait for the first one to arrive (0: answer at once).
func (c *Client) Events(ctx context.Context, from uint64, limit int, wait time.Duration) ([]Event, error) {
	q := url.Values{}
	q.Set("from", strconv.FormatUint(from, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("wait", strconv.FormatInt(int64(wait/time.Second), 10))
	var raws []json.RawMessage
	r := Request{Method: http.MethodGet, Path: "/messages/events?" + q.Encode(), Timeout: wait + timeoutMargin}
	if err := c.Send(ctx, r, &raws); err != nil {
		return nil, err
	}
	return DecodeEvents(raws)
}

// DecodeEvents decodes the events of one page, keeping each one's raw JSON.
func DecodeEvents(raws []json.RawMessage) ([]Event, error) {
	evs := make([]Event, 0, len(raws))
	for i, raw := range raws {
		var e Event
		var seq struct {
			Seq *uint64 `json:"seq"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("event %d of the hub's answer: %w", i, err)
		}
		if json.Unmarshal(raw, &seq) != nil || seq.Seq == nil {
			return nil, fmt.Errorf("event %d of the hub's answer has no seq", i)
		}
		e.Raw = raw
		evs = append(evs, e)
	}
	return evs, nil
}

// FollowOptions says which events Follow reads and how.
type FollowOptions struct {
	From  uint64 // first seq to read; 0 is the start of the log
	Limit int    // stop after this many events; 0 for no limit
	// Follow keeps long-polling for new events until ctx ends; without it
	// Follow returns once the hub has no more events.
	Follow bool
	Wait   time.Duration // long-poll wait while following; DefaultWait when 0
	// RetryMin and RetryMax bound the backoff after a hub that is not
	// reachable while following (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// OnRetry, if set, hears of each failed poll before the wait.
	OnRetry func(err error, delay time.Duration)
}

// Follow reads the event log from o.From in order and calls fn with each
// event; the next page starts after the last seq seen, and events at or
// below it (a repeated answer) are skipped. While following, a hub that is
// not reachable (it may be restarting) is retried with backoff. Follow
// returns nil when done, ctx.Err() when ctx ends, or fn's error.
func (c *Client) Follow(ctx context.Context, o FollowOptions, fn func(Event) error) error {
	o = o.withDefaults()
	from, seen := o.From, 0
	var delay time.Duration
	for {
		limit, wait := 0, time.Duration(0)
		if o.Limit > 0 {
			limit = min(o.Limit-seen, maxPage)
		}
		if o.Follow {
			wait = o.Wait
		}
		start := c.clock()
		evs, err := c.Events(ctx, from, limit, wait)
		if err != nil {
			if delay, err = o.retry(ctx, err, delay); err != nil {
				return err
			}
			continue
		}
		delay = 0
		n := 0
		for _, e := range evs {
			if e.Seq < from {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
			from, n, seen = e.Seq+1, n+1, seen+1
			if o.Limit > 0 && seen >= o.Limit {
				return nil
			}
		}
		if n > 0 {
			continue
		}
		if !o.Follow {
			return nil
		}
		// A hub that answers an empty long poll at once (it ignored wait)
		// must not make this loop spin.
		if err := sleep(ctx, emptyPollInterval-c.clock().Sub(start)); err != nil {
			return err
		}
	}
}

// retry waits out the backoff after a failed poll and returns the next
// delay, or the error that ends Follow.
func (o FollowOptions) retry(ctx context.Context, err error, delay time.Duration) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if !o.Follow || !Retryable(err) {
		return 0, err
	}
	delay = min(max(2*delay, o.RetryMin), o.RetryMax)
	if o.OnRetry != nil {
		o.OnRetry(err, delay)
	}
	return delay, sleep(ctx, delay)
}

func (o FollowOptions) withDefaults() FollowOptions {
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	return o
}

// Retryable reports whether err is worth retrying: the hub was not
// reachable, or a proxy in front of it said it is unavailable.
func Retryable(err error) bool {
	switch StatusOf(err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return errors.Is(err, ErrUnreachable)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
