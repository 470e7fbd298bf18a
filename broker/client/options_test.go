package client

import (
	"strings"
	"testing"
	"time"
)

const key = "c2VjcmV0c2VjcmV0c2VjcmV0"

func TestBrokerAddress(t *testing.T) {
	for _, tc := range []struct {
		cs, broker   string
		addr, server string // server: TLS ServerName, "" for plain TCP
		err          bool
	}{
		{cs: "HostName=hub.example;DeviceId=d;SharedAccessKey=" + key, addr: "hub.example:8883", server: "hub.example"},
		{cs: "HostName=hub.example:8080;DeviceId=d;SharedAccessKey=" + key, addr: "hub.example:8883", server: "hub.example"},
		{cs: "HostName=hub:8080;DeviceId=d;SharedAccessKey=" + key + ";GatewayHostName=edge.local", addr: "edge.local:8883", server: "edge.local"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key + ";GatewayHostName=edge.local:9883", addr: "edge.local:9883", server: "edge.local"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key + ";GatewayHostName=[::1]:9883", addr: "[::1]:9883", server: "::1"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key + ";GatewayHostName=edge", broker: "tcp://127.0.0.1:1883", addr: "127.0.0.1:1883"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key, broker: "mqtt://localhost", addr: "localhost:1883"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key, broker: "mqtts://other", addr: "other:8883", server: "other"},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key, broker: "ws://other", err: true},
		{cs: "HostName=hub;DeviceId=d;SharedAccessKey=" + key, broker: "127.0.0.1:1883", err: true},
	} {
		c, err := FromConnectionString(tc.cs, WithBroker(tc.broker))
		if tc.err {
			if err == nil {
				t.Errorf("%s %s: accepted", tc.cs, tc.broker)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.cs, err)
		}
		server := ""
		if c.tls != nil {
			server = c.tls.ServerName
		}
		if c.addr != tc.addr || server != tc.server {
			t.Errorf("%s %s: %s (TLS name %q), want %s (%q)", tc.cs, tc.broker, c.addr, server, tc.addr, tc.server)
		}
	}
}

func TestIdentityAndTopics(t *testing.T) {
	c, err := FromConnectionString("HostName=hub.example;DeviceId=gw;ModuleId=filter;SharedAccessKey=" + key + ";GatewayHostName=gw.local")
	if err != nil {
		t.Fatal(err)
	}
	if c.clientID != "gw/filter" || c.username != "hub.example/gw/filter/?api-version=2021-04-12" ||
		c.events != "devices/gw/modules/filter/messages/events/" || c.inputs != "devices/gw/modules/filter/inputs/" {
		t.Errorf("%q %q %q %q", c.clientID, c.username, c.events, c.inputs)
	}
	d, err := FromConnectionString("HostName=hub.example;DeviceId=dev;SharedAccessKey=" + key)
	if err != nil {
		t.Fatal(err)
	}
	if d.clientID != "dev" || d.username != "hub.example/dev/?api-version=2021-04-12" || d.events != "devices/dev/messages/events/" || d.inputs != "" {
		t.Errorf("%q %q %q %q", d.clientID, d.username, d.events, d.inputs)
	}
	for _, bad := range []string{"HostName=h;SharedAccessKeyName=owner;SharedAccessKey=" + key, "HostName=h;DeviceId=d;x509=true", "nonsense"} {
		if _, err := FromConnectionString(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestOptionBounds(t *testing.T) {
	cfg := defaults()
	for _, o := range []Option{WithBackoff(-1, 0), WithTokenTTL(0), WithKeepAlive(-1), WithConnectTimeout(0), WithLogger(nil)} {
		o(&cfg)
	}
	if cfg.minBackoff != DefaultMinBackoff || cfg.maxBackoff != DefaultMaxBackoff || cfg.tokenTTL != DefaultTokenTTL || cfg.log == nil {
		t.Errorf("nonsense options changed the defaults: %+v", cfg)
	}
	WithBackoff(time.Second, time.Millisecond)(&cfg) // max below min: min only
	if cfg.minBackoff != time.Second || cfg.maxBackoff != DefaultMaxBackoff {
		t.Errorf("backoff %v..%v", cfg.minBackoff, cfg.maxBackoff)
	}
	if !strings.Contains(ErrNoEnvironment.Error(), "EdgeModuleCACertificateFile") {
		t.Error(ErrNoEnvironment)
	}
}
