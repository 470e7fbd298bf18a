package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// Client calls a running edge's local API. Token is empty for the open
// routes (status on loopback).
type Client struct {
	Addr  string
	Token string
}

// ErrNoToken: a request that needs the operator token was made without it.
var ErrNoToken = errors.New("this needs the operator token: pass --data DIR (the edge's data directory, which holds api-token)")

// ClientFromData reads an edge's API address from <dir>/ready.json and
// its operator token from <dir>/api-token. When only the token cannot be
// read, it returns the client with the address and the error.
func ClientFromData(dir string) (Client, error) {
	data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
	if err != nil {
		return Client{}, fmt.Errorf("read the edge's address: %w (is `outpost edge --data %s` running?)", err, dir)
	}
	var ready struct {
		API string `json:"api"`
	}
	if err := json.Unmarshal(data, &ready); err != nil {
		return Client{}, fmt.Errorf("%s: %w", filepath.Join(dir, "ready.json"), err)
	}
	if ready.API == "" {
		return Client{}, fmt.Errorf("the edge with data directory %s serves no local API (it runs with --api \"\")", dir)
	}
	// Without the token the address is still useful: status needs none on
	// loopback.
	tok, err := ReadToken(dir)
	return Client{Addr: ready.API, Token: tok}, err
}

// ReadToken reads the operator token of the edge with data directory dir.
func ReadToken(dir string) (string, error) {
	data, err := os.ReadFile(TokenPath(dir))
	if err != nil {
		return "", fmt.Errorf("read the local API token: %w (it is created at the edge's first start; run as the edge's user)", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// Do sends one request; body, when not nil, is sent as contentType.
func (c Client) Do(ctx context.Context, method, path, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("edge API at %s: %w (is `outpost edge --api %s` running?)", c.Addr, err, c.Addr)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, apiError(c.Addr, resp)
	}
	return resp, nil
}

// apiError reads an error answer of the edge's API, the {code,message}
// envelope (protocol.ReadError).
func apiError(addr string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return fmt.Errorf("edge API at %s: %s: %s", addr, resp.Status, protocol.ReadError(resp.StatusCode, data).Message)
}

// maxStatusBytes bounds what Status reads: --api may name something that
// is not an edge and answers without end.
const maxStatusBytes = 8 << 20

// Status reads GET /status.
func (c Client) Status() (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, http.MethodGet, "/status", "", nil)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBytes)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("edge API at %s: %w", c.Addr, err)
	}
	if st.DeviceID == "" {
		return Status{}, fmt.Errorf("%s answered /status without a deviceId: it is not an edge's local API (give the edge's --api address, or --data DIR)", c.Addr)
	}
	return st, nil
}

// FetchStatus reads GET /status from a running edge's API on loopback,
// where it needs no token.
func FetchStatus(addr string) (Status, error) { return Client{Addr: addr}.Status() }

// Logs copies a module's output to w until it ends (or ctx, with follow).
func (c Client) Logs(ctx context.Context, module string, tail int, follow bool, w io.Writer) error {
	if c.Token == "" {
		return ErrNoToken
	}
	path := fmt.Sprintf("/modules/%s/logs?tail=%d&follow=%t", url.PathEscape(module), tail, follow)
	resp, err := c.Do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// LoginURL asks the edge for a single-use login code and returns the URL
// that opens a browser session with it.
func (c Client) LoginURL(ctx context.Context) (string, error) {
	if c.Token == "" {
		return "", ErrNoToken
	}
	resp, err := c.Do(ctx, http.MethodPost, "/login-codes", "application/json", []byte("{}"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var lc LoginCode
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&lc); err != nil {
		return "", fmt.Errorf("edge API at %s: login code: %w", c.Addr, err)
	}
	return "http://" + browserAddr(c.Addr) + "/login?code=" + url.QueryEscape(lc.Code), nil
}

// browserAddr turns a wildcard listen address (0.0.0.0:18081, [::]:18081)
// into one a browser on the gateway can open; a browser elsewhere uses the
// edge's name or address instead (the API accepts IP literals and
// --hostname).
func browserAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// Restart restarts a module (POST /modules/{m}/restart).
func (c Client) Restart(ctx context.Context, module string) (ModuleRestart, error) {
	if c.Token == "" {
		return ModuleRestart{}, ErrNoToken
	}
	resp, err := c.Do(ctx, http.MethodPost, "/modules/"+url.PathEscape(module)+"/restart", "application/json", []byte("{}"))
	if err != nil {
		return ModuleRestart{}, err
	}
	defer resp.Body.Close()
	var mr ModuleRestart
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&mr); err != nil {
		return ModuleRestart{}, fmt.Errorf("edge API at %s: restart: %w", c.Addr, err)
	}
	return mr, nil
}
