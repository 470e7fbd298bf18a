package scenario

import (
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// hubHost is the HostName of the connection strings in the scenarios.
const hubHost = "hub.local"

// dial connects as identity id ("d" or "d/m") with a SAS token from key.
// addr is host:port (plain MQTT) or a URL: ssl://host:port or
// wss://host:port/$iothub/websocket, verified against $CA.
func dial(addr, id, key string) (paho.Client, error) {
	return dialCA(addr, id, key, "")
}

// dialCA is dial with the CA file that verifies TLS listeners.
func dialCA(addr, id, key, ca string) (paho.Client, error) {
	k, host, err := credentials(key)
	if err != nil {
		return nil, err
	}
	d, m, _ := strings.Cut(id, "/")
	tok := sas.NewToken(sas.ResourceURI(host, d, m), k, "", time.Now().Add(time.Hour))
	broker := addr
	if !strings.Contains(addr, "://") {
		broker = "tcp://" + addr
	}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(id).
		SetUsername(host + "/" + id + "/?api-version=2021-04-12").SetPassword(tok).
		SetAutoReconnect(false).SetProtocolVersion(4).SetOrderMatters(true).SetConnectTimeout(5 * time.Second).
		// A publish racing a lost connection waits this long for the send
		// queue (paho's default is 30 s).
		SetWriteTimeout(3 * time.Second)
	if !strings.HasPrefix(broker, "tcp://") {
		pool, err := certs.LoadCAs(ca, "$CA (the edge's CA)")
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	return c, t.Error()
}

// credentials reads KEY: a base64 key (the identity is under hubHost) or a
// connection string (its key and HostName).
func credentials(key string) ([]byte, string, error) {
	if strings.Contains(key, "SharedAccessKey=") {
		cs, err := sas.ParseConnString(key)
		return cs.SharedAccessKey, cs.HostName, err
	}
	k, err := base64.StdEncoding.DecodeString(key)
	return k, hubHost, err
}

// mqtt pub [-q Q] [-n N] [-mids FIRST] ADDR ID KEY TOPIC PAYLOAD (with -mids, message i carries $.mid=FIRST+i and {mid} in PAYLOAD becomes it)
// mqtt sub [-n N] [-timeout D] ADDR ID KEY FILTER
// mqtt flood [-rate R] [-size B] [-count N] ADDR KEY ACKFILE ID... (starts QoS1
// publishers that run until the connection dies, or N messages each)
// mqtt hold NAME ADDR ID KEY (a connection kept open in the background)
// mqtt closed [-timeout D] NAME (waits until the edge closes it; with !, that it stays open for D)
func cmdMQTT(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: mqtt pub|sub|flood …")
	}
	fs := flag.NewFlagSet("mqtt "+args[0], flag.ContinueOnError)
	qos := fs.Int("q", 1, "QoS")
	n := fs.Int("n", 1, "messages")
	timeout := fs.Duration("timeout", 10*time.Second, "how long sub waits")
	rate := fs.Int("rate", 0, "flood: messages per second per publisher (0: as fast as PUBACKs come)")
	mids := fs.Int("mids", -1, "pub: message ids from this number on, in $.mid and for {mid} in the payload")
	size := fs.Int("size", 0, "flood: bytes of each message body (the message id, padded; 0: the id alone)")
	count := fs.Int("count", 0, "flood: messages per publisher (0: until the connection dies)")
	ts.Check(fs.Parse(args[1:]))
	a := fs.Args()
	switch args[0] {
	case "pub":
		if len(a) != 5 {
			ts.Fatalf("usage: mqtt pub [-q Q] [-n N] [-mids FIRST] ADDR ID KEY TOPIC PAYLOAD")
		}
		err := mqttPub(a[0], a[1], a[2], pubMessages(a[3], a[4], *n, *mids), byte(*qos), ts.Getenv("CA"))
		if neg != (err != nil) {
			ts.Fatalf("mqtt pub: %v", err)
		}
		if err == nil {
			fmt.Fprintf(ts.Stdout(), "published %d\n", *n)
		} else {
			fmt.Fprintf(ts.Stderr(), "%v\n", err)
		}
	case "sub":
		if len(a) != 4 {
			ts.Fatalf("usage: mqtt sub [-n N] [-timeout D] ADDR ID KEY FILTER")
		}
		lines, err := mqttSub(a[0], a[1], a[2], a[3], *n, *timeout)
		for _, l := range lines {
			fmt.Fprintln(ts.Stdout(), l)
		}
		if neg != (err != nil) {
			ts.Fatalf("mqtt sub: %v", err)
		}
	case "flood":
		if len(a) < 4 {
			ts.Fatalf("usage: mqtt flood [-rate R] [-size B] [-count N] ADDR KEY ACKFILE ID...")
		}
		mqttFlood(ts, a[0], a[1], ts.MkAbs(a[2]), a[3:], flood{rate: *rate, size: *size, count: *count})
	case "methods": // answer every direct method with 200 and {"echo": payload}, in the background
		if len(a) != 3 {
			ts.Fatalf("usage: mqtt methods ADDR ID KEY")
		}
		c, err := dial(a[0], a[1], a[2])
		ts.Check(err)
		t := c.Subscribe("$iothub/methods/POST/#", 0, func(cl paho.Client, m paho.Message) {
			rid := m.Topic()[strings.Index(m.Topic(), "$rid=")+5:]
			cl.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, `{"echo":`+string(m.Payload())+`}`)
		})
		t.WaitTimeout(10 * time.Second)
		ts.Check(t.Error())
		ts.Defer(func() { c.Disconnect(100) })
	case "hold": // connect NAME and keep the connection open in the background
		if len(a) != 4 {
			ts.Fatalf("usage: mqtt hold NAME ADDR ID KEY")
		}
		mqttHold(ts, a[0], a[1], a[2], a[3])
	case "closed": // wait until the edge closes the held connection NAME
		if len(a) != 1 {
			ts.Fatalf("usage: mqtt closed [-timeout D] NAME")
		}
		mqttClosed(ts, neg, a[0], *timeout)
	case "floodwait": // wait until the publishers of ACKFILE have stopped
		if len(a) != 1 {
			ts.Fatalf("usage: mqtt floodwait ACKFILE")
		}
		if wg, ok := floods.Load(ts.MkAbs(a[0])); ok {
			wg.(*sync.WaitGroup).Wait()
		}
	default:
		ts.Fatalf("mqtt: unknown subcommand %q", args[0])
	}
}

// pubMessages makes n (topic, payload) pairs; with firstMid >= 0 message i
// carries $.mid=firstMid+i, added to the topic's property bag, and each
// {mid} of the payload is replaced with it.
func pubMessages(topic, payload string, n, firstMid int) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		out[i] = [2]string{topic, payload}
		if firstMid < 0 {
			continue
		}
		mid := strconv.Itoa(firstMid + i)
		t := topic
		if !strings.HasSuffix(t, "/") {
			t += "&"
		}
		out[i] = [2]string{t + "%24.mid=" + mid, strings.ReplaceAll(payload, "{mid}", mid)}
	}
	return out
}

func mqttPub(addr, id, key string, msgs [][2]string, qos byte, ca string) error {
	c, err := dialCA(addr, id, key, ca)
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	for i, m := range msgs {
		t := c.Publish(m[0], qos, false, m[1])
		if !t.WaitTimeout(10 * time.Second) {
			return fmt.Errorf("publish %d: no PUBACK in 10s", i)
		}
		if err := t.Error(); err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		if !c.IsConnected() {
			return fmt.Errorf("publish %d: the broker closed the connection", i)
		}
	}
	time.Sleep(50 * time.Millisecond) // a refusal disconnects right after the publish
	if !c.IsConnected() {
		return fmt.Errorf("the broker closed the connection")
	}
	return nil
}

func mqttSub(addr, id, key, filter string, n int, timeout time.Duration) ([]string, error) {
	c, err := dial(addr, id, key)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(100)
	got := make(chan string, n+16)
	t := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) })
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("subscribe %s: %v", filter, t.Error())
	}
	if r := t.(*paho.SubscribeToken).Result(); r[filter] >= 0x80 {
		return nil, fmt.Errorf("subscribe %s: refused (code %#x)", filter, r[filter])
	}
	var lines []string
	deadline := time.After(timeout)
	for len(lines) < n {
		select {
		case l := <-got:
			lines = append(lines, l)
		case <-deadline:
			return lines, fmt.Errorf("got %d of %d messages in %v", len(lines), n, timeout)
		}
	}
	// paho sends the PUBACK after the handler returns; give it a moment, or
	// the edge rightly delivers the message again on the next connection.
	time.Sleep(100 * time.Millisecond)
	return lines, nil
}

// floods holds the WaitGroup of each running flood by its ack file.
var floods sync.Map

// flood is how mqtt flood publishes.
type flood struct {
	rate  int // messages per second per publisher; 0: as fast as PUBACKs come
	size  int // body bytes: the message id, padded; 0: the id alone
	count int // messages per publisher; 0: until the connection dies
}

// body is message mid's payload: its id, padded to size bytes.
func (fl flood) body(mid string) []byte {
	b := []byte(mid)
	if fl.size > len(b) {
		b = append(b, make([]byte, fl.size-len(b))...)
		for i := len(mid); i < len(b); i++ {
			b[i] = 'a' + byte(i%26)
		}
	}
	return b
}

// mqttFlood starts one QoS1 publisher per id, each with up to 16
// unacknowledged messages whose message ids are <id>-<n>; every PUBACKed id
// is appended to ackfile at once. They run until their connection dies (a
// refusal disconnects an MQTT 3.1.1 client), or fl.count messages each.
func mqttFlood(ts *testscript.TestScript, addr, key, ackfile string, ids []string, fl flood) {
	rate := fl.rate
	f, err := os.OpenFile(ackfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	ts.Check(err)
	var mu sync.Mutex
	wg := new(sync.WaitGroup)
	floods.Store(ackfile, wg)
	var stop atomic.Bool
	for _, id := range ids {
		c, err := dial(addr, id, key)
		ts.Check(err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, 16)
			var tick <-chan time.Time
			if rate > 0 {
				t := time.NewTicker(time.Second / time.Duration(rate))
				defer t.Stop()
				tick = t.C
			}
			for i := 0; c.IsConnected() && !stop.Load() && (fl.count == 0 || i < fl.count); i++ {
				if tick != nil {
					<-tick
				}
				sem <- struct{}{}
				mid := fmt.Sprintf("%s-%d", id, i)
				t := c.Publish("devices/"+id+"/messages/events/%24.mid="+mid, 1, false, fl.body(mid))
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if acked(c, t) {
						mu.Lock()
						fmt.Fprintln(f, mid)
						mu.Unlock()
					}
				}()
			}
		}()
	}
	ts.Defer(func() {
		stop.Store(true)
		wg.Wait()
		f.Close()
	})
}

// acked waits for a publish's PUBACK: up to 30 s while the connection
// lives, a moment more once it is gone (a refusal disconnects an MQTT 3.1.1
// client, and paho may not fail the tokens still in flight).
func acked(c paho.Client, t paho.Token) bool {
	deadline := time.Now().Add(30 * time.Second)
	for !t.WaitTimeout(100 * time.Millisecond) {
		if !c.IsConnected() || time.Now().After(deadline) {
			return t.WaitTimeout(200*time.Millisecond) && t.Error() == nil
		}
	}
	return t.Error() == nil
}

// mqtttwin ADDR ID KEY JSON: patch the reported properties of ID over MQTT
// and wait for the 204.
func cmdMQTTTwin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 4 {
		ts.Fatalf("usage: mqtttwin ADDR ID KEY JSON")
	}
	c, err := dialCA(args[0], args[1], args[2], ts.Getenv("CA"))
	ts.Check(err)
	defer c.Disconnect(100)
	res := make(chan string, 1)
	t := c.Subscribe("$iothub/twin/res/#", 1, func(_ paho.Client, m paho.Message) { res <- m.Topic() })
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		ts.Fatalf("subscribe: %v", t.Error())
	}
	c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 1, false, args[3]).WaitTimeout(10 * time.Second)
	select {
	case topic := <-res:
		if !strings.HasPrefix(topic, "$iothub/twin/res/204/") {
			ts.Fatalf("reported patch answered %s", topic)
		}
	case <-time.After(10 * time.Second):
		ts.Fatalf("no answer to the reported patch in 10s")
	}
}

// mqttgettwin ADDR ID KEY PATTERN: wait until ID's twin, as its device
// reads it over MQTT ($iothub/twin/GET), matches PATTERN; prints it.
func cmdMQTTGetTwin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 4 {
		ts.Fatalf("usage: mqttgettwin ADDR ID KEY PATTERN")
	}
	re := regexp.MustCompile(args[3])
	c, err := dialCA(args[0], args[1], args[2], ts.Getenv("CA"))
	ts.Check(err)
	defer c.Disconnect(100)
	res := make(chan paho.Message, 1)
	t := c.Subscribe("$iothub/twin/res/#", 1, func(_ paho.Client, m paho.Message) { res <- m })
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		ts.Fatalf("subscribe: %v", t.Error())
	}
	var last string
	poll(ts, "the twin "+args[1]+" reads over MQTT ~ "+args[3], func() string {
		c.Publish("$iothub/twin/GET/?$rid=1", 1, false, "").WaitTimeout(10 * time.Second)
		select {
		case m := <-res:
			last = string(m.Payload())
			if strings.HasPrefix(m.Topic(), "$iothub/twin/res/200/") && re.MatchString(last) {
				return ""
			}
			return m.Topic() + " " + last
		case <-time.After(10 * time.Second):
			return "no answer to the twin GET in 10s"
		}
	})
	fmt.Fprintln(ts.Stdout(), last)
}

// mqttrefused ADDR ID KEY: wait until the edge refuses ID's connection
// (the hub removed or disabled it).
func cmdMQTTRefused(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: mqttrefused ADDR ID KEY")
	}
	poll(ts, args[1]+" refused", func() string {
		c, err := dialCA(args[0], args[1], args[2], ts.Getenv("CA"))
		if err != nil {
			return ""
		}
		c.Disconnect(0)
		return "connected"
	})
}

// held are the connections of mqtt hold, by script and name.
var held sync.Map // heldKey → *heldConn

type heldKey struct {
	ts   *testscript.TestScript
	name string
}

type heldConn struct {
	c    paho.Client
	lost chan struct{} // closed when the connection is lost
	err  atomic.Value  // why (error)
}

// mqttHold connects id and keeps the connection open until the script
// ends, watching for the edge to close it (mqtt closed).
func mqttHold(ts *testscript.TestScript, name, addr, id, key string) {
	h := &heldConn{lost: make(chan struct{})}
	k, host, err := credentials(key)
	ts.Check(err)
	d, m, _ := strings.Cut(id, "/")
	tok := sas.NewToken(sas.ResourceURI(host, d, m), k, "", time.Now().Add(time.Hour))
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(host + "/" + id + "/?api-version=2021-04-12").SetPassword(tok).
		SetAutoReconnect(false).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { h.err.Store(err); close(h.lost) })
	h.c = paho.NewClient(o)
	t := h.c.Connect()
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		ts.Fatalf("mqtt hold %s: connect %s: %v", name, id, t.Error())
	}
	held.Store(heldKey{ts, name}, h)
	ts.Defer(func() {
		held.Delete(heldKey{ts, name})
		h.c.Disconnect(0)
	})
	fmt.Fprintf(ts.Stdout(), "%s connected\n", name)
}

// mqttClosed waits up to timeout for the edge to close the held
// connection name; negated, it checks that the connection stays open that
// long.
func mqttClosed(ts *testscript.TestScript, neg bool, name string, timeout time.Duration) {
	v, ok := held.Load(heldKey{ts, name})
	if !ok {
		ts.Fatalf("mqtt closed: no connection %q (mqtt hold NAME … first)", name)
	}
	h := v.(*heldConn)
	select {
	case <-h.lost:
		if neg {
			ts.Fatalf("%s was closed by the edge: %v", name, h.err.Load())
		}
		fmt.Fprintf(ts.Stdout(), "%s closed by the edge\n", name)
	case <-time.After(timeout):
		if !neg {
			ts.Fatalf("%s still open after %v", name, timeout)
		}
		fmt.Fprintf(ts.Stdout(), "%s still open after %v\n", name, timeout)
	}
}
