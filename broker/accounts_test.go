package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/store/queue"
)

func (p passwords) Known(id string) bool { _, ok := p[id]; return ok }

func hash(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// mqttBroker is a $edgeHub desired document with accounts and a policy
// that lets plc1 use factory/# but not factory/secret, and anonymous
// clients use open/#.
func mqttBroker(t testing.TB, anonymous string) string {
	return fmt.Sprintf(`{"mqttBroker":{"anonymous":%q,
	  "accounts":[{"name":"plc1","passwordHash":%q,"clientIds":"plc1-*"},{"name":"plc2","passwordHash":%q}],
	  "authorizations":[
	    {"identities":["plc1"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["factory/#"]}],
	     "deny":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["factory/secret"]}]},
	    {"identities":["anonymous"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["open/#"]}]}]}}`,
		anonymous, hash(t, "s3cret"), hash(t, "other"))
}

func newGenericEnv(t *testing.T, anonymous string) *env {
	return newMQTTBrokerEnv(t, []byte(mqttBroker(t, anonymous)))
}

// newMQTTBrokerEnv starts a broker with the accounts and policy of a
// $edgeHub desired document.
func newMQTTBrokerEnv(t *testing.T, doc []byte) *env {
	accts, err := ParseAccounts(doc)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy(doc)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, "", queue.Options{}, func(o *Options) { o.Accounts, o.Policy = accts, pol })
}

// dial311 connects an MQTT 3.1.1 client with a plain user name.
func (e *env) dial311(id, user, password string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).SetUsername(user).SetPassword(password).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if tok.Error() == nil {
		e.t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, tok.Error()
}

// connect5 connects an MQTT 5 client and returns the CONNACK reason code.
func (e *env) connect5(id, user, password string) (byte, *paho5.Client) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho5.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if password != "" {
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	ca, err := c.Connect(ctx, cp)
	if ca == nil {
		e.t.Fatalf("connect %s: no CONNACK: %v", id, err)
	}
	if ca.ReasonCode == 0 {
		e.t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	}
	return ca.ReasonCode, c
}

// Each refusal of a generic client gets its own reason, in MQTT 5 and
// 3.1.1, and is counted under it.
func TestGenericLoginRefusalReasons(t *testing.T) {
	e := newGenericEnv(t, "off")
	for _, c := range []struct {
		name, id, user, pw string
		v5                 byte
		v3                 string
		reason             AuthReason
	}{
		{"wrong password", "plc1-a", "plc1", "nope", 0x86, "bad user name or password", AuthBadCredentials},
		{"unknown account", "x", "nobody", "s3cret", 0x86, "bad user name or password", AuthBadCredentials},
		{"client id outside pattern", "robot", "plc1", "s3cret", 0x85, "identifier rejected", AuthClientID},
		{"client id of an IoT identity", "dev1", "plc2", "other", 0x85, "identifier rejected", AuthClientID},
		{"client id of the edge's module", edgeID + "/a", "plc2", "other", 0x85, "identifier rejected", AuthClientID},
		{"anonymous off", "anon", "", "", 0x87, "not Authorized", AuthNotAuthorized},
		// An IoT Hub identity's refusal stays what IoT Hub answers (3.1.1: 5).
		{"IoT identity, wrong key", "dev1", "hub.example/dev1/?api-version=2021-04-12", "nope", 0x86, "not Authorized", AuthBadCredentials},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.b.Stats().AuthRefusedBy[c.reason].Load()
			if code, _ := e.connect5(c.id, c.user, c.pw); code != c.v5 {
				t.Errorf("MQTT 5: CONNACK %#x, want %#x", code, c.v5)
			}
			_, err := e.dial311(c.id, c.user, c.pw)
			if err == nil || !strings.Contains(err.Error(), c.v3) {
				t.Errorf("MQTT 3.1.1: %v, want %q", err, c.v3)
			}
			if n := e.b.Stats().AuthRefusedBy[c.reason].Load() - before; n != 2 {
				t.Errorf("counted %d under %s, want 2", n, c.reason)
			}
		})
	}
}

// A generic client with its password uses the free topics its account is
// allowed, never another's or an IoT Hub identity's; anonymous clients
// come in from loopback only when allowed.
func TestGenericClientsUseFreeTopicsByPolicy(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	sub, err := e.dial311("plc1-sub", "plc1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan paho.Message, 4)
	tok := sub.SubscribeMultiple(map[string]byte{"factory/#": 1, "factory/secret": 1, "devices/#": 1, "open/#": 1},
		func(_ paho.Client, m paho.Message) { got <- m })
	wait(t, tok)
	res := tok.(*paho.SubscribeToken).Result()
	if res["factory/#"] >= 0x80 || res["factory/secret"] < 0x80 || res["devices/#"] < 0x80 || res["open/#"] < 0x80 {
		t.Fatalf("SUBACK %v: want only factory/# granted", res)
	}
	pub, err := e.dial311("plc1-pub", "plc1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("factory/line1/temp", 1, false, "21.5"))
	if m := recv(t, got); m.Topic() != "factory/line1/temp" || string(m.Payload()) != "21.5" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}
	// Anonymous (from 127.0.0.1) is its own account: open/# only.
	if code, c := e.connect5("anon", "", ""); code != 0 {
		t.Fatalf("anonymous from loopback: CONNACK %#x", code)
	} else if r, err := c.Publish(context.Background(), &paho5.Publish{Topic: "factory/line1/temp", QoS: 1, Payload: []byte("x")}); err == nil && r.ReasonCode < 0x80 {
		t.Fatalf("anonymous published on factory/: reason %#x", r.ReasonCode)
	}
	// A generic client is no IoT Hub identity: telemetry on its "own"
	// device topic is refused (3.1.1: disconnected).
	tel, err := e.dial311("plc1-x", "plc1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	c2d := tel.Subscribe("devices/plc1-x/messages/devicebound/#", 1, nil)
	wait(t, c2d)
	if c2d.(*paho.SubscribeToken).Result()["devices/plc1-x/messages/devicebound/#"] < 0x80 {
		t.Fatal("a generic client got the C2D topic of a device named as its client id")
	}
	tel.Publish("devices/plc1-x/messages/events/", 1, false, "spoof")
	expectDisconnected(t, tel, "telemetry from a generic client")
	if n := e.b.Stats().Received.Load(); n != 0 {
		t.Fatalf("%d telemetry messages accepted from generic clients", n)
	}
}

// Changing an account ends the sessions that rest on it; turning
// anonymous off ends anonymous sessions.
func TestAccountChangeEndsSessions(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	c, err := e.dial311("plc2", "plc2", "other")
	if err != nil {
		t.Fatal(err)
	}
	stay, err := e.dial311("plc1-a", "plc1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	anon, err := e.dial311("anon", "", "")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(mqttBroker(t, "off"), `"name":"plc2","passwordHash":`, `"name":"plc2","clientIds":"x","passwordHash":`, 1)
	accts, err := ParseAccounts([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := e.b.accounts.Load().Named("plc1")
	accts.byName["plc1"] = keep // same hash: the regenerated one would differ
	e.b.SetAccounts(accts)
	expectDisconnected(t, c, "session of a changed account")
	expectDisconnected(t, anon, "anonymous session after anonymous was turned off")
	if !stay.IsConnectionOpen() {
		t.Fatal("the session of an unchanged account was ended")
	}
}

// After failLimit wrong passwords from one address, even the right one is
// refused unchecked until the window ends; a success is cached, so a
// saturated checker does not refuse a known-good login.
func TestPasswordChecksLimitedAndCached(t *testing.T) {
	now := time.Unix(1e9, 0)
	p := newPwChecks(1)
	p.now = func() time.Time { return now }
	p.wait = 50 * time.Millisecond
	acct := &Account{Name: "plc1", PasswordHash: []byte(hash(t, "s3cret"))}
	if err := p.check(acct, []byte("s3cret"), "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	p.slots <- struct{}{} // every slot busy
	if err := p.check(acct, []byte("s3cret"), "10.0.0.1"); err != nil {
		t.Fatalf("cached success: %v", err)
	}
	if err := p.check(acct, []byte("guess"), "10.0.0.1"); reason(err) != AuthBusy {
		t.Fatalf("uncached check with no free slot: %v, want busy", err)
	}
	<-p.slots
	for i := range failLimit {
		if err := p.check(acct, []byte(fmt.Sprint("guess", i)), "10.0.0.2"); reason(err) != AuthBadCredentials {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	p.ok = map[[32]byte]time.Time{} // forget the success
	if err := p.check(acct, []byte("s3cret"), "10.0.0.2"); reason(err) != AuthRateLimited {
		t.Fatalf("after %d failures: %v, want rate limited", failLimit, err)
	}
	if err := p.check(acct, []byte("s3cret"), "10.0.0.3"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(failWindow)
	if err := p.check(acct, []byte("s3cret"), "10.0.0.2"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestParseAccountsErrors(t *testing.T) {
	h := hash(t, "x")
	for _, c := range []struct{ doc, want string }{
		{`{"mqttBroker":{"anonymous":"all"}}`, `want "off"`},
		{`{"mqttBroker":{"accounts":[{"name":"a","password":"x"}]}}`, "clear-text password"},
		{`{"mqttBroker":{"accounts":[{"name":"a","passwordHash":"x"}]}}`, "not a bcrypt hash"},
		{`{"mqttBroker":{"accounts":[{"name":"a"}]}}`, "neither passwordHash nor certThumbprint"},
		{`{"mqttBroker":{"accounts":[{"name":"a/b","passwordHash":"` + h + `"}]}}`, "holds one of"},
		{`{"mqttBroker":{"accounts":[{"name":"anonymous","passwordHash":"` + h + `"}]}}`, "reserved"},
		{`{"mqttBroker":{"accounts":[{"name":"a","certThumbprint":"xyz"}]}}`, "not the hex SHA-1"},
		{`{"mqttBroker":{"accounts":[{"name":"a","passwordHash":"` + h + `"},{"name":"a","passwordHash":"` + h + `"}]}}`, "used twice"},
		{`{"mqttBroker":{"accounts":[{"name":"a","passwordHash":"` + h + `","clientIds":7}]}}`, "neither a pattern"},
	} {
		if _, err := ParseAccounts([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.doc, err, c.want)
		}
	}
	a, err := ParseAccounts([]byte(`{"mqttBroker":{"accounts":[{"name":"cam","certThumbprint":"ab:cd:` + strings.Repeat("0", 36) + `","clientIds":["cam-1","cam-?"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	cam, ok := a.ByThumbprint("ABCD" + strings.Repeat("0", 36))
	if !ok || !cam.AllowsClientID("cam-9") || cam.AllowsClientID("cam-10") || a.Anonymous() {
		t.Fatalf("parsed %+v", a)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.8.9.10:1": true, "[::1]:1883": true, "[::ffff:127.0.0.1]:5": true,
		"10.0.0.1:1883": false, "[::2]:1": false, "": false, "localhost:1883": false,
	} {
		if loopback(addr) != want {
			t.Errorf("loopback(%q) = %v", addr, !want)
		}
	}
}

// globMatch agrees with the regular expression its pattern stands for.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{{"plc-*", "plc-1"}, {"a*b*c", "aXbYc"}, {"?", ""}, {"**", "x"}, {"a?c", "abc"}, {"*x", "xxxx"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 64 || len(s) > 64 || !isASCII(p) || !isASCII(s) {
			return // regexp's '.' matches a rune, globMatch's '?' a byte
		}
		var re strings.Builder
		re.WriteString(`(?s)\A`)
		for _, c := range []byte(p) {
			switch c {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string([]byte{c})))
			}
		}
		re.WriteString(`\z`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp says %v", p, s, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Any document either parses or says what is wrong; a parsed one never
// holds a clear-text password or an unusable account.
func FuzzParseAccounts(f *testing.F) {
	f.Add([]byte(`{"mqttBroker":{"anonymous":"loopback","accounts":[{"name":"a","passwordHash":"$2a$04$abcdefghijklmnopqrstuu5Zs9Gp1D7d0tRZcJqEw2GGXqe5D6M3e","clientIds":["x*"]}]}}`))
	f.Add([]byte(`{"mqttBroker":{"accounts":[{"name":"cam","certThumbprint":"` + strings.Repeat("A", 40) + `"}]}}`))
	f.Add([]byte(`{"mqttBroker":{"accounts":[{"name":"a","password":"x"}]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		a, err := ParseAccounts(doc)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for name, acct := range a.byName {
			if name != acct.Name || checkAccountName(name) != nil || acct.PasswordHash == nil && acct.CertThumbprint == "" {
				t.Fatalf("parsed an unusable account %+v", acct)
			}
		}
	})
}

func reason(err error) AuthReason {
	if err == nil {
		return NumAuthReasons
	}
	r, _ := reasonOf(err)
	return r
}

// A generic client may hold # or +/+ when the policy grants it: it gets
// free-topic messages, never IoT Hub traffic (telemetry, twin answers).
func TestGenericWildcardFirstFilterSeesNoIoTTraffic(t *testing.T) {
	doc := []byte(`{"mqttBroker":{"anonymous":"loopback","authorizations":[
	  {"identities":["anonymous"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["#"]}]}]}}`)
	e := newMQTTBrokerEnv(t, doc)
	sub, err := e.dial311("anon-sub", "", "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan paho.Message, 16)
	tok := sub.SubscribeMultiple(map[string]byte{"#": 2, "+/+": 1, "$iothub/#": 1, "devices/#": 1}, func(_ paho.Client, m paho.Message) { got <- m })
	wait(t, tok)
	res := tok.(*paho.SubscribeToken).Result()
	if res["#"] != 2 || res["+/+"] != 1 || res["$iothub/#"] < 0x80 || res["devices/#"] < 0x80 {
		t.Fatalf("SUBACK %v: want # (QoS 2) and +/+ granted, $iothub/# and devices/# refused", res)
	}
	dev := e.client("dev1", "pw") // an IoT Hub identity: telemetry and a twin request
	wait(t, dev.Publish("devices/dev1/messages/events/", 1, false, "telemetry"))
	wait(t, dev.Subscribe("$iothub/twin/res/#", 0, nil))
	wait(t, dev.Publish("$iothub/twin/GET/?$rid=1", 0, false, ""))
	pub, err := e.dial311("anon-pub", "", "")
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("open/x", 1, false, "free"))
	seen := map[string]int{}
	for m := recv(t, got); ; m = recv(t, got) {
		seen[m.Topic()]++
		if m.Topic() != "open/x" {
			t.Fatalf("a generic # subscriber got %s %q", m.Topic(), m.Payload())
		}
		if seen["open/x"] == 2 { // through # and through +/+
			break
		}
	}
	select {
	case m := <-got:
		t.Fatalf("then got %s %q", m.Topic(), m.Payload())
	case <-time.After(200 * time.Millisecond):
	}
}

// A client id that holds a session of one account (live or kept for it)
// is refused to another account: it would get that session's
// subscriptions and queued messages.
func TestGenericClientIDOfAnotherAccountsSessionRefused(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	c, err := e.dial311("plc1-sub", "plc1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []struct{ user, pw string }{{"plc2", "other"}, {"", ""}} {
		if _, err := e.dial311("plc1-sub", who.user, who.pw); err == nil || !strings.Contains(err.Error(), "identifier rejected") {
			t.Fatalf("account %q on plc1's live session: %v", who.user, err)
		}
	}
	c.Disconnect(0)
	e.b.setAccount("plc1-sub", "plc1") // as a persistent session kept for plc1 records it
	if _, err := e.dial311("plc1-sub", "plc2", "other"); err == nil || !strings.Contains(err.Error(), "identifier rejected") {
		t.Fatalf("plc2 on plc1's kept session: %v", err)
	}
	if _, err := e.dial311("plc1-sub", "plc1", "s3cret"); err != nil {
		t.Fatalf("plc1 back to its own session: %v", err)
	}
}

// An unknown account costs a password check, counts as a failure and is
// rate limited like a wrong password: no account names to learn.
func TestUnknownAccountLikeAWrongPassword(t *testing.T) {
	e := newGenericEnv(t, "off")
	for i := range failLimit {
		if _, err := e.dial311("x", "nobody", fmt.Sprint(i)); err == nil || !strings.Contains(err.Error(), "bad user name or password") {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	for _, user := range []string{"nobody", "plc1"} {
		if code, _ := e.connect5("plc1-a", user, "s3cret"); code != 0x9F {
			t.Errorf("%s after %d failures from the address: CONNACK %#x, want 0x9F", user, failLimit, code)
		}
	}
}
