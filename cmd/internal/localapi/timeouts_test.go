package localapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// shortTimeouts shortens the server's timeouts for one test.
func shortTimeouts(t *testing.T) {
	old := []time.Duration{readHeaderTimeout, idleTimeout, handlerDeadline}
	readHeaderTimeout, idleTimeout, handlerDeadline = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { readHeaderTimeout, idleTimeout, handlerDeadline = old[0], old[1], old[2] })
}

// closedWithin reports whether the server closes conn within d.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	return err == nil // EOF: the server closed; a timeout: it did not
}

func TestStalledHeaderClosed(t *testing.T) {
	shortTimeouts(t)
	f := newFixture(t, nil)
	conn := f.dial(t)
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") // never ends
	if !closedWithin(conn, 3*time.Second) {
		t.Error("a connection that never finishes its header stays open")
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	shortTimeouts(t)
	f := newFixture(t, nil)
	conn := f.dial(t)
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(conn, 3*time.Second) {
		t.Error("an idle keep-alive connection stays open")
	}
}

func TestStalledBodyClosed(t *testing.T) {
	shortTimeouts(t)
	f := newFixture(t, nil)
	conn := f.dial(t)
	fmt.Fprintf(conn, "POST /devices/sensor1/messages/deviceBound HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nonly part", f.token)
	if !closedWithin(conn, 3*time.Second) {
		t.Error("a request whose body stalls holds its handler")
	}
	if f.depth("c2d/sensor1/p0") != 0 {
		t.Error("a half-sent C2D was queued")
	}
}

func TestHugeHeaderRefused(t *testing.T) {
	f := newFixture(t, nil)
	resp, _ := f.do(req{path: "/healthz", header: map[string]string{"X-Big": strings.Repeat("a", 64<<10)}})
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %d, want 431", resp.StatusCode)
	}
}

// dial opens a raw TCP connection to the fixture's API, closed with the test.
func (f *fixture) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
