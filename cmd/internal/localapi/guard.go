package localapi

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// guard checks every request's Host header and Origin before any handler
// runs. A Host other than an IP literal, localhost or the edge's
// --hostname is a page whose DNS name was rebound to the gateway; an
// Origin other than the API's own is a page from another site.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			s.refuse(w, r, http.StatusMisdirectedRequest, "ForeignHost", "host",
				fmt.Sprintf("the Host header %q is not this edge's: use an IP address, localhost or the edge's --hostname (a DNS name pointing here from elsewhere is refused)", r.Host))
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			s.refuse(w, r, http.StatusForbidden, "CrossOrigin", "origin",
				fmt.Sprintf("requests from the web origin %q are refused; the local API serves only its own pages (http://%s)", o, r.Host))
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			s.refuse(w, r, http.StatusForbidden, "CrossOrigin", "origin",
				"requests a browser sends on behalf of another site are refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	return s.opts.Hostname != "" && strings.EqualFold(host, s.opts.Hostname)
}

// check enforces a route's access class, content type, body limit and
// deadline.
func (s *Server) check(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.allowed(rt.access, r) {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "unauthenticated", s.authHint())
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !contentTypeIn(r, rt.types) {
				s.refuse(w, r, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "content_type",
					fmt.Sprintf("Content-Type %q is not accepted here; send %s", r.Header.Get("Content-Type"), strings.Join(rt.types, " or ")))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
		}
		if rt.deadline > 0 {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(rt.deadline))
			_ = rc.SetWriteDeadline(time.Now().Add(rt.deadline))
		}
		rt.h(w, r)
	})
}

// allowed decides an access class for a request.
func (s *Server) allowed(a access, r *http.Request) bool {
	switch a {
	case public, loginURL:
		return true
	case readOnly:
		if s.loopback {
			return true
		}
	}
	return s.authenticated(r)
}

// authenticated: the operator token as a bearer token, or a browser
// session cookie.
func (s *Server) authenticated(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		return ok && tokenEqual(strings.TrimSpace(tok), s.token)
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return s.secrets.validSession(c.Value)
	}
	return false
}

func (s *Server) authHint() string {
	return fmt.Sprintf("this request needs the operator token: send the contents of %s as `Authorization: Bearer <token>` "+
		"(`outpost edge status|logs --data DIR` read it; for a browser run `outpost edge dashboard --data DIR`)", TokenPath(s.opts.DataDir))
}

func contentTypeIn(r *http.Request, types []string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && slices.Contains(types, mt)
}

// refuse answers with a {code,message} error and logs the refusal, at
// most once per 10 s per kind.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, kind, msg string) {
	if ok, suppressed := s.refusals.Allow(kind); ok {
		s.opts.Logger.Warn("local API request refused", "reason", kind, "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "suppressed", suppressed)
	}
	writeError(w, status, code, msg)
}

// writeError answers with Outpost's one error envelope (protocol.WriteError).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	protocol.WriteError(w, status, code, msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
