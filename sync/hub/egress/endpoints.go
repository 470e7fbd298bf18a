package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DialOptions configure the endpoints Dial makes.
type DialOptions struct {
	// HubID prefixes JetStream's Nats-Msg-Id (<hub id>-<seq>), so the
	// stream drops what it already holds within its duplicate window.
	HubID string
	// CA is the extra CA (PEM) a webhook endpoint trusts, read from its ca
	// file by the caller.
	CA []byte
}

// Dial makes the endpoint ep describes. It connects lazily: an endpoint
// that is down at start is retried as deliveries fail.
func Dial(ep EndpointConfig, o DialOptions) (Endpoint, error) {
	switch ep.Type {
	case TypeNATS:
		return dialNATS(ep, o)
	case TypeKafka:
		return dialKafka(ep)
	case TypeWebhook:
		return dialWebhook(ep, o)
	}
	return nil, fmt.Errorf("endpoint %s: unknown type %q", ep.Name, ep.Type)
}

// natsEndpoint publishes to a JetStream stream, a bounded window of
// asynchronous publishes per batch, and waits for every PubAck.
type natsEndpoint struct {
	url, subject, hubID string
	nc                  *nats.Conn
	js                  jetstream.JetStream
}

func dialNATS(ep EndpointConfig, o DialOptions) (*natsEndpoint, error) {
	opts := []nats.Option{nats.Name("outpost hub route " + ep.Name), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// No buffering while reconnecting: a publish then fails at once and
		// the batch is retried whole, in order, after the reconnection.
		nats.ReconnectBufSize(-1)}
	if ep.Credentials != "" {
		opts = append(opts, nats.UserCredentials(ep.Credentials))
	}
	nc, err := nats.Connect(ep.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: nats %s: %w", ep.Name, ep.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxBatchEvents), jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("endpoint %s: jetstream: %w", ep.Name, err)
	}
	return &natsEndpoint{url: ep.URL, subject: ep.Subject, hubID: o.HubID, nc: nc, js: js}, nil
}

func (n *natsEndpoint) Deliver(ctx context.Context, evs []Event) error {
	if !n.nc.IsConnected() {
		return fmt.Errorf("not connected to %s (%s)", n.url, n.nc.Status())
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		m := nats.NewMsg(n.subject)
		m.Data = e.JSON
		seq := strconv.FormatUint(e.Seq, 10)
		m.Header.Set(jetstream.MsgIDHeader, n.hubID+"-"+seq)
		m.Header.Set("Outpost-Seq", seq)
		f, err := n.js.PublishMsgAsync(m)
		if err != nil {
			return n.explain(err, e.Seq)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return n.explain(err, evs[i].Seq)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (n *natsEndpoint) explain(err error, seq uint64) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("event %d: no JetStream stream on %s captures subject %q: create one that does (nats stream add OUTPOST --subjects %s): %w",
			seq, n.url, n.subject, n.subject, err)
	}
	return fmt.Errorf("event %d: publish to %s: %w", seq, n.subject, err)
}

func (n *natsEndpoint) Close() error {
	n.nc.Close()
	return nil
}

// kafkaEndpoint produces each event as a record keyed by its device (one
// partition per device: its order), acks from all in-sync replicas, one
// produce request in flight per broker (so a retry cannot reorder). The
// producer is not idempotent: an idempotent one holds records in flight
// through an outage, so a delivery would neither fail nor end; this one
// fails the batch after RecordDeliveryTimeout and the router sends it
// again (at least once: consumers de-duplicate by seq).
type kafkaEndpoint struct {
	cl *kgo.Client
}

func dialKafka(ep EndpointConfig) (*kafkaEndpoint, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(ep.Brokers...), kgo.DefaultProduceTopic(ep.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1),
		kgo.RecordDeliveryTimeout(10*time.Second), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: kafka: %w", ep.Name, err)
	}
	return &kafkaEndpoint{cl: cl}, nil
}

func (k *kafkaEndpoint) Deliver(ctx context.Context, evs []Event) error {
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Key: []byte(e.DeviceID), Value: e.JSON,
			Headers: []kgo.RecordHeader{{Key: "outpost-seq", Value: strconv.AppendUint(nil, e.Seq, 10)}}}
	}
	return k.cl.ProduceSync(ctx, recs...).FirstErr()
}

func (k *kafkaEndpoint) Close() error {
	k.cl.Close()
	return nil
}

// webhookEndpoint POSTs a JSON array of events; 2xx means delivered.
type webhookEndpoint struct {
	url     string
	headers map[string]string
	client  *http.Client
}

// WebhookTimeout bounds one webhook request.
const WebhookTimeout = 10 * time.Second

func dialWebhook(ep EndpointConfig, o DialOptions) (*webhookEndpoint, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(o.CA) > 0 && !pool.AppendCertsFromPEM(o.CA) {
		return nil, fmt.Errorf("endpoint %s: ca %s holds no PEM certificate", ep.Name, ep.CA)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: WebhookTimeout, Transport: tr,
		// A redirect is not a delivery, and must not carry the headers
		// (credentials) elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &webhookEndpoint{url: ep.URL, headers: ep.Headers, client: client}, nil
}

func (w *webhookEndpoint) Deliver(ctx context.Context, evs []Event) error {
	var body bytes.Buffer
	body.WriteByte('[')
	for i, e := range evs {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e.JSON)
	}
	body.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, &body)
	if err != nil {
		return err
	}
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Outpost-First-Seq", strconv.FormatUint(evs[0].Seq, 10))
	req.Header.Set("Outpost-Last-Seq", strconv.FormatUint(evs[len(evs)-1].Seq, 10))
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", w.url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s (want 2xx)", w.url, resp.Status)
	}
	return nil
}

func (w *webhookEndpoint) Close() error {
	w.client.CloseIdleConnections()
	return nil
}
