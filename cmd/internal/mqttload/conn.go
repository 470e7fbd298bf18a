package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// expand substitutes the client index for every %d in a template. It is
// not fmt.Sprintf so that templates without %d (a fixed password) and with
// other % signs stay as written.
func expand(tmpl string, i int) string {
	return strings.ReplaceAll(tmpl, "%d", strconv.Itoa(i))
}

// identity is who one connection claims to be.
type identity struct {
	clientID, topic, username, password string
}

func (c *config) identity(ctx context.Context, i int) (identity, error) {
	id := identity{
		clientID: expand(c.ClientID, i),
		topic:    expand(c.Topic, i),
		username: expand(c.Username, i),
		password: expand(c.Password, i),
	}
	if c.PasswordCmd == "" {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", expand(c.PasswordCmd, i))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return id, fmt.Errorf("password command for %s: %w: %s", id.clientID, err, strings.TrimSpace(stderr.String()))
	}
	id.password = strings.TrimSpace(string(out))
	return id, nil
}

func tlsConfig(caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	conf.RootCAs = x509.NewCertPool()
	if !conf.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", caFile)
	}
	return conf, nil
}

// clientOptions sets paho up for measuring, not for surviving: no
// reconnect, no persistence, no ordering of callbacks.
func (c *config) clientOptions(id identity, tlsConf *tls.Config, onLost mqtt.ConnectionLostHandler) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(c.Broker).
		SetClientID(id.clientID).
		SetUsername(id.username).
		SetPassword(id.password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(false).
		SetMaxResumePubInFlight(c.Inflight).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetTLSConfig(tlsConf).
		SetStore(nullStore{}).
		SetConnectionLostHandler(onLost)
	o.SetCustomOpenConnectionFn(dialBuffered(tlsConf))
	return o
}

// dialBuffered opens the connection like paho does for tcp:// and ssl://
// but reads through a bufio.Reader: paho's packet reader issues a read
// system call per header byte, three per PUBACK, which at tens of
// thousands of acks per second makes the load tool the bottleneck.
func dialBuffered(tlsConf *tls.Config) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		d := &net.Dialer{Timeout: o.ConnectTimeout}
		var conn net.Conn
		var err error
		switch u.Scheme {
		case "tcp", "mqtt":
			conn, err = d.Dial("tcp", u.Host)
		case "ssl", "tls", "mqtts", "tcps":
			conn, err = tls.DialWithDialer(d, "tcp", u.Host, tlsConf)
		default:
			return nil, fmt.Errorf("broker scheme %q: want tcp:// or ssl://", u.Scheme)
		}
		if err != nil {
			return nil, err
		}
		return &bufConn{Conn: conn, r: bufio.NewReaderSize(conn, 32<<10)}, nil
	}
}

// bufConn is a net.Conn whose reads are buffered. Only paho's single
// reading goroutine reads from it.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// nullStore keeps nothing: with a clean session and no reconnect, paho's
// default memory store only adds a map insert and delete per message.
type nullStore struct{}

func (nullStore) Open()                             {}
func (nullStore) Put(string, packets.ControlPacket) {}
func (nullStore) Get(string) packets.ControlPacket  { return nil }
func (nullStore) All() []string                     { return nil }
func (nullStore) Del(string)                        {}
func (nullStore) Close()                            {}
func (nullStore) Reset()                            {}
