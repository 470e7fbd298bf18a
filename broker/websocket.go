package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket (subprotocol "mqtt") on a listener
// we bound ourselves, so ":0" works and Addr is the real address. IoT Hub
// SDKs use the path /$iothub/websocket; like edgeHub we accept any path and
// select by subprotocol.
type wsListener struct {
	id        string
	ln        net.Listener
	srv       *http.Server
	log       *slog.Logger
	establish listeners.EstablishFn
	once      sync.Once
	header    time.Duration // the pre-authentication deadline (--connect-timeout), which covers the upgrade
	// closeClients disconnects this listener's clients at Close, in place
	// of mochi's (Broker.closeListenerClients says why).
	closeClients func(id string)
	handoff      handoff // the upgraded connections (http.Server.Shutdown does not wait for them)
}

func newWebsocket(id string, ln net.Listener, connectTimeout time.Duration) *wsListener {
	return &wsListener{id: id, ln: ln, header: connectTimeout}
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	up := &websocket.Upgrader{Subprotocols: []string{"mqtt"}, CheckOrigin: func(*http.Request) bool { return true }}
	// The same limits as cmd/internal/httpserver (which broker may not
	// import); the connection's pre-auth deadline also bounds the upgrade.
	l.srv = &http.Server{
		ReadHeaderTimeout: l.header, // never shorter than the client's time to authenticate
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			u := c.UnderlyingConn()
			if !l.handoff.start(u) {
				return
			}
			defer l.handoff.end(u)
			if err := l.establish(l.id, guardUpgraded(&wsConn{Conn: u, c: c}, u)); err != nil {
				l.log.Debug("websocket client ended", "err", err)
			}
		}),
	}
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener", "err", err)
	}
}

func (l *wsListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
		l.closeClients(l.id)
		l.handoff.close()
	})
}

// wsConn carries MQTT bytes in binary WebSocket messages.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
}

var errTextFrame = errors.New("websocket: MQTT needs binary messages")

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
