package egress

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/broker/route"
)

const goodConfig = `
[[endpoint]]
name = "js"
type = "nats"
url = "nats://127.0.0.1:4222"
subject = "outpost.events"
credentials = "file.creds"
[[endpoint]]
name = "k"
type = "kafka"
brokers = ["127.0.0.1:9092"]
topic = "outpost-events"
[[endpoint]]
name = "hook"
type = "webhook"
url = "https://example.test/ingest"
ca = "hook-ca.pem"
headers = { Authorization = "Bearer x" }
[[route]]
name = "all-to-js"
query = "FROM /messages/* INTO js"
[[route]]
name = "hot"
query = "FROM /messages/* WHERE $body.temp > 30 AND $connectionDeviceId = 'sensor1' INTO hook"
[[route]]
name = "modules"
query = "from /messages/modules/sim/* where {$outputName} = 'into k' into k"
`

func TestParseConfig(t *testing.T) {
	cfg, routes, err := ParseConfig("routes.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Endpoints) != 3 || cfg.Endpoints[2].Headers["Authorization"] != "Bearer x" || cfg.Endpoints[1].Brokers[0] != "127.0.0.1:9092" {
		t.Fatalf("endpoints %+v", cfg.Endpoints)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.Name+"→"+r.Endpoint)
	}
	if want := "all-to-js→js hot→hook modules→k"; strings.Join(got, " ") != want {
		t.Fatalf("routes %v, want %s", got, want)
	}
	m := &route.Message{Source: route.Source{Device: "sensor1"}, Sys: map[string]string{"connectionDeviceId": "sensor1", "contentType": "application/json"},
		Body: []byte(`{"temp":31}`)}
	if !routes[1].r.Matches(m) {
		t.Fatal("the hot route does not take a 31° event from sensor1")
	}
	m.Body = []byte(`{"temp":30}`)
	if routes[1].r.Matches(m) {
		t.Fatal("the hot route takes a 30° event")
	}
}

// TestParseConfigRefuses: each bad file is refused with one line naming
// the file, the line when the TOML parser gives one, the endpoint or
// route, and what to do.
func TestParseConfigRefuses(t *testing.T) {
	ep := "[[endpoint]]\nname = \"js\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"s\"\n"
	for _, c := range []struct {
		name, text string
		want       []string
		is         error
	}{
		{"unknown endpoint", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /messages/* INTO kafka1\"\n",
			[]string{"routes.toml: ", `route "r": INTO kafka1: no endpoint of that name`, `add an [[endpoint]] with name = "kafka1"`}, nil},
		{"bad condition", ep + "[[route]]\nname = \"hot\"\nquery = \"FROM /messages/* WHERE $body.temp >> 30 INTO js\"\n",
			[]string{`routes.toml: route "hot": at offset 35 near ">"`}, route.ErrSyntax},
		{"string property compared as a number", ep + "[[route]]\nname = \"t\"\nquery = \"FROM /messages/* WHERE temperature > 30 INTO js\"\n",
			[]string{`route "t": at offset`, "as_number(prop)"}, route.ErrSyntax},
		{"TOML syntax", ep + "[[route]]\nname = \"r\"\nquery = FROM\n",
			[]string{"routes.toml:8: "}, nil},
		{"unknown key", ep + "sujbect = \"x\"\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO js\"\n",
			[]string{"routes.toml: unknown key endpoint.sujbect"}, nil},
		{"unknown type", strings.Replace(ep, `"nats"`, `"amqp"`, 1) + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO js\"\n",
			[]string{`endpoint 1 "js": type "amqp": want nats, kafka or webhook`}, nil},
		{"plain http off loopback", "[[endpoint]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"http://example.test/x\"\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO h\"\n",
			[]string{`endpoint 1 "h": url "http://example.test/x": plain http only to a loopback host`}, nil},
		{"field of another type", ep + "topic = \"t\"\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO js\"\n",
			[]string{`endpoint 1 "js": topic is for kafka endpoints, this one is nats`}, nil},
		{"twin source", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /twinChangeNotifications INTO js\"\n",
			[]string{`route "r": FROM /twinChangeNotifications: the hub routes device-to-cloud events`}, nil},
		{"no INTO", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /messages/*\"\n",
			[]string{`route "r": query "FROM /messages/*": want FROM /messages/… [WHERE <condition>] INTO <endpoint name>`}, nil},
		{"duplicate endpoint", ep + ep + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO js\"\n",
			[]string{`endpoint 2: the name "js" is taken`}, nil},
		{"no routes", ep, []string{"a routes file needs at least one of each"}, nil},
		{"header with a line break", "[[endpoint]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"https://x.test\"\nheaders = { A = \"b\\r\\nEvil: 1\" }\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO h\"\n",
			[]string{"header A: a value cannot hold a line break"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseConfig("routes.toml", []byte(c.text))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is not one line", msg)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
		})
	}
}

func FuzzRoutesConfig(f *testing.F) {
	f.Add(goodConfig)
	f.Add("[[endpoint]]\nname = \"js\"\ntype = \"nats\"\nurl = \"nats://h:1\"\nsubject = \"s\"\n[[route]]\nname = \"r\"\nquery = \"FROM /* WHERE $body.a = 'x\\ny' INTO js\"\n")
	f.Add("[[route]]\nname = \"r\"\nquery = \"FROM /messages/* WHERE 'INTO x' INTO \"\n")
	f.Add("x = [\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, routes, err := ParseConfig("routes.toml", []byte(text))
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		for _, r := range routes {
			if r.r == nil || r.Endpoint == "" {
				t.Fatalf("route %+v compiled without a condition or endpoint", r)
			}
		}
	})
}
