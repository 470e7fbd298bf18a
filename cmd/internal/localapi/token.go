package localapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/cmd/internal/webui"
)

// TokenFile is the operator token's file in the edge's data directory.
const TokenFile = "api-token"

const (
	tokenBytes  = 32 // random bytes in the operator token (base64url: 43 characters)
	codeTTL     = 60 * time.Second
	maxCodes    = 16
	sessionTTL  = 12 * time.Hour
	maxSessions = 32
	// CookieName is the browser session's cookie.
	CookieName = "outpost_session"
)

// TokenPath is where the operator token of the edge with data directory
// dir lives.
func TokenPath(dir string) string { return filepath.Join(dir, TokenFile) }

// loadOrCreateToken reads <dir>/api-token, creating it at first start. A
// token file others can read is narrowed to 0600.
func loadOrCreateToken(dir string) ([]byte, error) {
	path := TokenPath(dir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tok := newSecret()
		if err := secret.Write(path, []byte(tok+"\n")); err != nil {
			return nil, fmt.Errorf("create the local API token: %w", err)
		}
		return []byte(tok), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the local API token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 32 {
		return nil, fmt.Errorf("local API token %s: too short (%d characters); delete the file and the edge makes a new one at start", path, len(tok))
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("local API token %s is readable by others and cannot be narrowed to 0600: %w", path, err)
		}
	}
	return []byte(tok), nil
}

// newSecret returns 32 random bytes, base64url without padding.
func newSecret() string {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenEqual compares in constant time (for equal lengths; the length of
// the token is no secret).
func tokenEqual(got string, want []byte) bool {
	return subtle.ConstantTimeCompare([]byte(got), want) == 1
}

// secrets holds the single-use login codes and the browser sessions, in
// memory only (webui.Sessions: SHA-256 digests, bounded, oldest evicted):
// a restart logs every browser out.
type secrets struct {
	codes    *webui.Sessions
	sessions *webui.Sessions
}

func newSecrets(now func() time.Time) *secrets {
	return &secrets{codes: webui.NewSessions(codeTTL, maxCodes, now), sessions: webui.NewSessions(sessionTTL, maxSessions, now)}
}

// newCode returns a login code valid for codeTTL.
func (s *secrets) newCode() string { return s.codes.New() }

// newSession returns a session id valid for sessionTTL.
func (s *secrets) newSession() string { return s.sessions.New() }

// useCode consumes a login code: true once, for an unexpired code.
func (s *secrets) useCode(code string) bool { return s.codes.Take(code) }

// validSession reports whether id names an unexpired session.
func (s *secrets) validSession(id string) bool { return s.sessions.Valid(id) }
