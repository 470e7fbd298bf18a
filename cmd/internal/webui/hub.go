package webui

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/store/twin"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// HubCookie is the hub dashboard's session cookie.
const HubCookie = "outpost_hub_session"

// Hub dashboard defaults.
const (
	DefaultSessionTTL = 12 * time.Hour
	maxHubSessions    = 64
	recentEvents      = 50  // events a new stream starts with
	eventsPerRead     = 100 // events read per step of a stream
	maxLoginBody      = 4 << 10
)

// HubOptions configure the hub dashboard (mounted at /ui/).
type HubOptions struct {
	Hub      *synchub.Hub
	OwnerKey []byte // the owner policy's key: a pasted connection string must hold it
	// Secure marks the cookie Secure (the hub serves TLS).
	Secure     bool
	SessionTTL time.Duration // default DefaultSessionTTL
	Streams    StreamOptions
	Logger     *slog.Logger
	Now        func() time.Time
}

type hubUI struct {
	opts     HubOptions
	sessions *Sessions
	streams  *Streams
	refusals ratelog.Limiter // refused logins are logged at most once per 10 s
}

// NewHub returns the handler of /ui/ and everything under it.
func NewHub(opts HubOptions) http.Handler {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	u := &hubUI{opts: opts, sessions: NewSessions(opts.SessionTTL, maxHubSessions, opts.Now), streams: NewStreams(opts.Streams)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", HubPage)
	mux.HandleFunc("GET /ui/assets/{file}", Asset)
	mux.HandleFunc("POST /ui/login", u.login)
	mux.HandleFunc("POST /ui/logout", u.logout)
	mux.HandleFunc("GET /ui/api/session", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"loggedIn": u.loggedIn(r)})
	})
	mux.HandleFunc("GET /ui/api/fleet", u.need(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, u.opts.Hub.Edges()) }))
	mux.HandleFunc("GET /ui/api/devices", u.need(u.devices))
	mux.HandleFunc("GET /ui/api/twins/{d}", u.need(u.twin))
	mux.HandleFunc("GET /ui/api/events/stream", u.need(u.events))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no page at %s %s; the dashboard is at /ui/", r.Method, r.URL.Path))
	})
	return SameOrigin(withDeadline(mux))
}

// requestDeadline bounds every dashboard request but the event stream
// (which has its write deadlines and heartbeats).
const requestDeadline = 30 * time.Second

func withDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ui/api/events/stream" {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(requestDeadline))
			_ = rc.SetWriteDeadline(time.Now().Add(requestDeadline))
		}
		next.ServeHTTP(w, r)
	})
}

// SameOrigin refuses what a browser sends on behalf of another site: an
// Origin other than the request's own, or Sec-Fetch-Site cross-site or
// same-site. The cookie is SameSite=Strict besides.
func SameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		if o := r.Header.Get("Origin"); o != "" && o != scheme+r.Host {
			writeError(w, http.StatusForbidden, "CrossOrigin",
				fmt.Sprintf("requests from the web origin %q are refused; the dashboard serves only its own pages (%s%s)", o, scheme, r.Host))
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			writeError(w, http.StatusForbidden, "CrossOrigin", "requests a browser sends on behalf of another site are refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (u *hubUI) loggedIn(r *http.Request) bool {
	c, err := r.Cookie(HubCookie)
	return err == nil && u.sessions.Valid(c.Value)
}

// need refuses requests without a session with 401.
func (u *hubUI) need(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !u.loggedIn(r) {
			writeError(w, http.StatusUnauthorized, "Unauthorized",
				"log in at /ui/ with the hub's owner connection string (in <hub data>/owner.connection-string)")
			return
		}
		h(w, r)
	}
}

// login takes {"connectionString": "HostName=…;SharedAccessKeyName=owner;SharedAccessKey=…"}
// and, when its key is the owner key, starts a session: an HttpOnly,
// SameSite=Strict cookie holding a random session id (never the key).
func (u *hubUI) login(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "send the connection string as JSON: {\"connectionString\":\"…\"}")
		return
	}
	var req struct {
		ConnectionString string `json:"connectionString"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("want {\"connectionString\":\"…\"} (at most 4 KiB): %v", err))
		return
	}
	if err := u.checkOwner(req.ConnectionString); err != nil {
		if ok, suppressed := u.refusals.Allow("login"); ok {
			u.opts.Logger.Warn("hub dashboard login refused", "remote", r.RemoteAddr, "err", err, "suppressed", suppressed)
		}
		writeError(w, http.StatusUnauthorized, "Unauthorized", err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: HubCookie, Value: u.sessions.New(), Path: "/ui/", MaxAge: int(u.opts.SessionTTL.Seconds()),
		HttpOnly: true, Secure: u.opts.Secure, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// checkOwner accepts an owner connection string with the owner key.
func (u *hubUI) checkOwner(s string) error {
	cs, err := sas.ParseConnString(s)
	if err != nil {
		return fmt.Errorf("%w; paste the hub's owner connection string (in <hub data>/owner.connection-string)", err)
	}
	if cs.SharedAccessKeyName != "owner" || cs.DeviceID != "" {
		return errors.New("this is not the hub's owner connection string (SharedAccessKeyName=owner); it is in <hub data>/owner.connection-string")
	}
	if subtle.ConstantTimeCompare(cs.SharedAccessKey, u.opts.OwnerKey) != 1 {
		return errors.New("the owner key is wrong: use the connection string in <hub data>/owner.connection-string (the hub's current one)")
	}
	return nil
}

func (u *hubUI) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(HubCookie); err == nil {
		u.sessions.End(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: HubCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: u.opts.Secure, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// deviceView is a device as the dashboard lists it: no keys.
type deviceView struct {
	DeviceID string   `json:"deviceId"`
	Edge     bool     `json:"edge"`
	Status   string   `json:"status"`
	Auth     string   `json:"authType"`
	Parents  []string `json:"parentScopes,omitempty"`
}

func (u *hubUI) devices(w http.ResponseWriter, _ *http.Request) {
	out := []deviceView{}
	for _, d := range u.opts.Hub.Devices() {
		out = append(out, deviceView{DeviceID: d.DeviceID, Edge: d.Edge, Status: d.Status, Auth: d.Auth.Type, Parents: d.ParentScopes})
	}
	writeJSON(w, http.StatusOK, out)
}

func (u *hubUI) twin(w http.ResponseWriter, r *http.Request) {
	doc, err := u.opts.Hub.Twin(r.PathValue("d"))
	switch {
	case errors.Is(err, synchub.ErrNotFound), errors.Is(err, twin.ErrNotFound):
		writeError(w, http.StatusNotFound, "NotFound", err.Error())
	case err != nil:
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}
}

// EventView is a hub event as the dashboard shows it: the body decoded
// as JSON or UTF-8 text when it is one, base64 otherwise.
type EventView struct {
	Seq          uint64            `json:"seq"`
	DeviceID     string            `json:"deviceId"`
	ModuleID     string            `json:"moduleId,omitempty"`
	EnqueuedTime string            `json:"enqueuedTime"`
	Properties   map[string]string `json:"properties,omitempty"`
	BodyKind     string            `json:"bodyKind"` // json, text or base64
	Body         any               `json:"body"`
}

// ViewEvent decodes e for the dashboard.
func ViewEvent(e synchub.Event) EventView {
	v := EventView{Seq: e.Seq, DeviceID: e.DeviceID, ModuleID: e.ModuleID, Properties: e.Props,
		EnqueuedTime: time.UnixMilli(e.EnqueuedTime).UTC().Format("2006-01-02T15:04:05.000Z")}
	var j any
	switch {
	case json.Unmarshal(e.Body, &j) == nil:
		v.BodyKind, v.Body = "json", j
	case utf8.Valid(e.Body):
		v.BodyKind, v.Body = "text", string(e.Body)
	default:
		v.BodyKind, v.Body = "base64", base64.StdEncoding.EncodeToString(e.Body)
	}
	return v
}

// events streams the hub's events as Server-Sent Events ("events", a
// JSON array each), starting with the most recent ones.
func (u *hubUI) events(w http.ResponseWriter, r *http.Request) {
	c, ok := u.streams.add(true)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "TooManyStreams", ErrTooManyStreams.Error())
		return
	}
	defer u.streams.remove(c)
	h := u.opts.Hub
	from := uint64(1)
	if last := h.LastSeq(); last > recentEvents {
		from = last - recentEvents + 1
	}
	sw := NewSSEWriter(w, u.streams.opts.WriteTimeout)
	if err := sw.Heartbeat(); err != nil { // the headers go out at once
		return
	}
	beat := time.NewTicker(u.streams.opts.Heartbeat)
	defer beat.Stop()
	for {
		changed := h.EventsChanged()
		evs, err := h.Events(from, eventsPerRead)
		if err != nil {
			u.opts.Logger.Warn("hub dashboard: reading events", "err", err)
			return
		}
		if len(evs) > 0 {
			from = evs[len(evs)-1].Seq + 1
			if sendEvents(sw, evs) != nil {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-beat.C:
			if sw.Heartbeat() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func sendEvents(sw *SSEWriter, evs []synchub.Event) error {
	views := make([]EventView, len(evs))
	for i, e := range evs {
		views[i] = ViewEvent(e)
	}
	data, err := json.Marshal(views)
	if err != nil {
		return err
	}
	return sw.Send(Event{Name: "events", Data: data})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	protocol.WriteError(w, status, code, msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
