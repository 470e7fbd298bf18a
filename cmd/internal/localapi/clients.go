package localapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// MQTTClient is one connected MQTT client, as GET /clients lists it.
type MQTTClient struct {
	ClientID       string    `json:"clientId"`
	DeviceID       string    `json:"deviceId"`
	ModuleID       string    `json:"moduleId,omitempty"`
	Listener       string    `json:"listener"` // mqtt, mqtts, ws or wss
	RemoteAddr     string    `json:"remoteAddr"`
	Protocol       string    `json:"protocol"` // 3.1.1 or 5
	ConnectedSince time.Time `json:"connectedSince"`
	Subscriptions  int       `json:"subscriptions"`
	Inflight       int       `json:"inflight"`
	// Received is the PUBLISH packets the client sent on this connection;
	// Delivered the queued messages (inputs, C2D) it acknowledged.
	Received  int64 `json:"received"`
	Delivered int64 `json:"delivered"`
}

// Clients is what GET /clients answers.
type Clients struct {
	Clients []MQTTClient `json:"clients"`
}

// clients serves GET /clients (operator only: it tells who is connected
// and from where). Options.Clients bounds the list (the broker lists at
// most its connection cap) and sorts it by client id.
func (s *Server) clients(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Clients == nil {
		writeError(w, http.StatusNotFound, "NotFound", "this edge does not list its MQTT clients")
		return
	}
	list := s.opts.Clients()
	if list == nil {
		list = []MQTTClient{}
	}
	writeJSON(w, http.StatusOK, Clients{Clients: list})
}

// maxClientsBytes bounds what Client.Clients reads (4096 clients of a few
// hundred bytes each, with room).
const maxClientsBytes = 8 << 20

// Clients reads GET /clients: the connected MQTT clients.
func (c Client) Clients(ctx context.Context) (Clients, error) {
	if c.Token == "" {
		return Clients{}, ErrNoToken
	}
	resp, err := c.Do(ctx, http.MethodGet, "/clients", "", nil)
	if err != nil {
		return Clients{}, err
	}
	defer resp.Body.Close()
	var cs Clients
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxClientsBytes)).Decode(&cs); err != nil {
		return Clients{}, fmt.Errorf("edge API at %s: clients: %w", c.Addr, err)
	}
	return cs, nil
}
