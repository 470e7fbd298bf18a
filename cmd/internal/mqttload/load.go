package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// config is one run's parameters; flags fill it in main.
type config struct {
	Broker   string
	CAFile   string
	Clients  int
	First    int // index substituted for %d in the first client's templates
	QoS      int
	Inflight int
	Size     int
	Duration time.Duration
	Warmup   time.Duration
	Drain    time.Duration
	Rate     float64
	PID      int
	Label    string

	ClientID, Topic, Username, Password, PasswordCmd string
	Subscribe                                        string

	Stamp       bool          // the send time in the first 8 bytes of each payload
	Receive     string        // receive on this filter instead of publishing
	Ready       string        // file the receiver creates once subscribed
	ReceiveWait time.Duration // how long the receiver waits for its first delivery
}

func (c *config) validate() error {
	switch {
	case c.Clients < 1:
		return errors.New("-clients must be at least 1")
	case c.QoS < 0 || c.QoS > 2:
		return errors.New("-qos must be 0, 1 or 2")
	case c.Inflight < 1:
		return errors.New("-inflight must be at least 1")
	case c.Size < 0:
		return errors.New("-size must not be negative")
	case c.Duration <= 0:
		return errors.New("-duration must be positive")
	case c.Warmup < 0 || c.Drain < 0:
		return errors.New("-warmup and -drain must not be negative")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("-rate must be a non-negative number")
	case c.Password != "" && c.PasswordCmd != "":
		return errors.New("-password and -password-cmd exclude each other")
	case c.Stamp && c.Size < stampSize:
		return fmt.Errorf("-stamp needs -size %d at least", stampSize)
	case c.Receive != "" && (c.Subscribe != "" || c.Stamp):
		return errors.New("-receive does not publish: no -subscribe or -stamp with it")
	case c.Receive == "" && c.Ready != "":
		return errors.New("-ready is for -receive")
	case c.ReceiveWait <= 0:
		return errors.New("-receive-wait must be positive")
	}
	if !strings.Contains(c.Broker, "://") {
		c.Broker = "tcp://" + c.Broker
	}
	return nil
}

// report is the JSON line the tool prints. Broker figures are null without
// -pid, delivered is null without -subscribe.
type report struct {
	Label           string   `json:"label"`
	Clients         int      `json:"clients"`
	QoS             int      `json:"qos"`
	Inflight        int      `json:"inflight"`
	Size            int      `json:"size"`
	Rate            float64  `json:"rate"`
	Seconds         float64  `json:"seconds"`
	Acked           uint64   `json:"acked"`
	MsgsPerS        float64  `json:"msgs_per_s"`
	PubackP50ms     float64  `json:"puback_p50_ms"`
	PubackP90ms     float64  `json:"puback_p90_ms"`
	PubackP99ms     float64  `json:"puback_p99_ms"`
	PubackMaxms     float64  `json:"puback_max_ms"`
	Errors          uint64   `json:"errors"`
	Disconnects     uint64   `json:"disconnects"`
	Delivered       *uint64  `json:"delivered"`
	BrokerCPUPct    *float64 `json:"broker_cpu_pct"`
	BrokerUsPerMsg  *float64 `json:"broker_us_per_msg"`
	BrokerRSSMB     *float64 `json:"broker_rss_mb"`
	BrokerRSSPeakMB *float64 `json:"broker_rss_peak_mb"`
	BrokerHWMMB     *float64 `json:"broker_hwm_mb"`
}

const (
	phaseWarmup int32 = iota
	phaseWindow
	phaseDrain
)

// load is the state of one run shared by its goroutines.
type load struct {
	cfg     config
	payload []byte
	start   time.Time

	phase   atomic.Int32
	stop    chan struct{} // closed at the end of the window: publish no more
	drained chan struct{} // closed when the drain time is up: stop waiting for acks

	closing     atomic.Bool // our own disconnects are not errors
	disconnects atomic.Uint64
	lost        atomic.Int64
	allLost     chan struct{}
	delivered   atomic.Uint64
}

type publisher struct {
	identity
	cli  mqtt.Client
	lost atomic.Bool
}

// stats belong to one publishing goroutine until it ends.
type stats struct {
	hist    histogram
	acked   uint64
	errors  uint64
	unacked uint64 // still unacknowledged when the drain time ran out
}

// run connects the publishers (and the subscriber), publishes through the
// warm-up and the window, drains, disconnects and reports. It starts
// Clients×Inflight publishing goroutines, each publishing and then waiting
// for its own ack, so each client has at most Inflight messages unacked and
// every ack is timed when it arrives, whatever the order the broker acks in.
func run(ctx context.Context, cfg config) (report, error) {
	if err := cfg.validate(); err != nil {
		return report{}, err
	}
	if cfg.PID > 0 {
		if _, err := readProc(cfg.PID); err != nil {
			return report{}, fmt.Errorf("broker pid %d: %w", cfg.PID, err)
		}
	}
	l := &load{
		cfg:     cfg,
		payload: make([]byte, cfg.Size),
		stop:    make(chan struct{}),
		drained: make(chan struct{}),
		allLost: make(chan struct{}),
	}
	for i := range l.payload {
		l.payload[i] = 'a' + byte(i%26)
	}
	pubs, sub, err := l.connect(ctx)
	if err != nil {
		return report{}, err
	}
	defer l.disconnect(pubs, sub)

	l.start = time.Now()
	all := make([]*stats, 0, cfg.Clients*cfg.Inflight)
	var wg sync.WaitGroup
	for ci, p := range pubs {
		var seq atomic.Int64
		for range cfg.Inflight {
			st := &stats{}
			all = append(all, st)
			wg.Go(func() { l.publish(ci, p, &seq, st) })
		}
	}
	w, err := l.measure(ctx)
	close(l.stop)
	drain := time.AfterFunc(cfg.Drain, func() { close(l.drained) })
	wg.Wait()
	drain.Stop()
	return l.summarize(w, all), err
}

// connect opens every publisher's connection (and the subscriber's), a few
// at a time. Any failure closes what was opened and fails the run.
func (l *load) connect(ctx context.Context) ([]*publisher, mqtt.Client, error) {
	tlsConf, err := tlsConfig(l.cfg.CAFile)
	if err != nil {
		return nil, nil, err
	}
	pubs := make([]*publisher, l.cfg.Clients)
	errs := make([]error, l.cfg.Clients)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pubs[i], errs[i] = l.connectPublisher(ctx, l.cfg.First+i, tlsConf)
		})
	}
	wg.Wait()
	var sub mqtt.Client
	if err = firstError(errs); err == nil && l.cfg.Subscribe != "" {
		sub, err = l.connectSubscriber(ctx, tlsConf)
	}
	if err != nil {
		l.disconnect(pubs, sub)
		return nil, nil, err
	}
	return pubs, sub, nil
}

func (l *load) connectPublisher(ctx context.Context, i int, tlsConf *tls.Config) (*publisher, error) {
	id, err := l.cfg.identity(ctx, i)
	if err != nil {
		return nil, err
	}
	p := &publisher{identity: id}
	p.cli = mqtt.NewClient(l.cfg.clientOptions(id, tlsConf, func(mqtt.Client, error) {
		p.lost.Store(true)
		l.connectionLost()
	}))
	if err := wait(p.cli.Connect()); err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", id.clientID, l.cfg.Broker, err)
	}
	return p, nil
}

// connectSubscriber connects the extra client counting deliveries. It takes
// the identity after the last publisher's and calls back in order: its
// handler only counts, and paho's unordered mode costs a goroutine per
// message.
func (l *load) connectSubscriber(ctx context.Context, tlsConf *tls.Config) (mqtt.Client, error) {
	id, err := l.cfg.identity(ctx, l.cfg.First+l.cfg.Clients)
	if err != nil {
		return nil, err
	}
	o := l.cfg.clientOptions(id, tlsConf, func(mqtt.Client, error) {
		if !l.closing.Load() {
			l.disconnects.Add(1)
		}
	})
	o.SetOrderMatters(true)
	cli := mqtt.NewClient(o)
	if err := wait(cli.Connect()); err != nil {
		return nil, fmt.Errorf("connect subscriber %s to %s: %w", id.clientID, l.cfg.Broker, err)
	}
	err = wait(cli.Subscribe(l.cfg.Subscribe, 1, func(mqtt.Client, mqtt.Message) {
		if l.phase.Load() == phaseWindow {
			l.delivered.Add(1)
		}
	}))
	if err != nil {
		cli.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s to %q: %w", id.clientID, l.cfg.Subscribe, err)
	}
	return cli, nil
}

// firstError returns the first of errs, saying how many more there are:
// when the broker is down, ten clients fail the same way.
func firstError(errs []error) error {
	var first error
	n := 0
	for _, err := range errs {
		if err != nil {
			if n == 0 {
				first = err
			}
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w (and %d more clients)", first, n-1)
	}
	return first
}

func wait(t mqtt.Token) error {
	if !t.WaitTimeout(30 * time.Second) {
		return errors.New("no answer within 30s")
	}
	return t.Error()
}

func (l *load) connectionLost() {
	if l.closing.Load() {
		return
	}
	l.disconnects.Add(1)
	if l.lost.Add(1) == int64(l.cfg.Clients) {
		close(l.allLost)
	}
}

func (l *load) disconnect(pubs []*publisher, sub mqtt.Client) {
	l.closing.Store(true)
	var wg sync.WaitGroup
	for _, p := range pubs {
		if p != nil {
			wg.Go(func() { p.cli.Disconnect(100) })
		}
	}
	if sub != nil {
		wg.Go(func() { sub.Disconnect(100) })
	}
	wg.Wait()
}
