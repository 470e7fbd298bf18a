package sas

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultSkew is the clock skew IoT Hub and edgeHub allow past a token's expiry.
const DefaultSkew = 5 * time.Minute

// Errors of ParseToken and Verify. Callers match them with errors.Is; the
// returned errors add the details (never a key or a signature).
var (
	ErrMalformed     = errors.New("malformed SAS token (want `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`; create one with `outpost token`)")
	ErrExpired       = errors.New("SAS token expired")
	ErrBadSignature  = errors.New("SAS token signature matches neither the primary nor the secondary key (the key may have been regenerated; sign with the identity's current connection string)")
	ErrWrongResource = errors.New("SAS token is for another resource")
)

const (
	prefix      = "SharedAccessSignature "
	maxTokenLen = 4096
	sigLen      = sha256.Size
	maxExpiry   = 253402300799 // 9999-12-31T23:59:59Z
)

// Token is a parsed SAS token.
type Token struct {
	Resource    string // sr, URL-decoded
	RawResource string // sr exactly as sent: the signed string starts with it
	Signature   []byte // sig, decoded: HMAC-SHA256, 32 bytes
	Expiry      time.Time
	KeyName     string // skn: the policy of a hub policy token, "" for devices and modules
}

// NewToken signs resource with key until expiry (seconds precision):
// `SharedAccessSignature sr=<enc resource>&sig=<enc base64>&se=<unix>[&skn=<policy>]`,
// sig = base64(HMAC-SHA256(key, <enc resource> + "\n" + <se>)) as Azure does.
func NewToken(resource string, key []byte, policy string, expiry time.Time) string {
	sr := url.QueryEscape(resource)
	se := strconv.FormatInt(expiry.Unix(), 10)
	return format(sr, sign(key, sr, se), se, policy)
}

func format(sr string, sig []byte, se, policy string) string {
	s := prefix + "sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig)) + "&se=" + se
	if policy != "" {
		s += "&skn=" + url.QueryEscape(policy)
	}
	return s
}

func sign(key []byte, sr, se string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	return m.Sum(nil)
}

// String formats t so that ParseToken returns t again (the sig escaping may
// differ from what was parsed; the signature does not cover it).
func (t Token) String() string {
	return format(t.RawResource, t.Signature, strconv.FormatInt(t.Expiry.Unix(), 10), t.KeyName)
}

// ParseToken parses a SAS token. Field order is free; unknown, repeated or
// empty fields are refused, and so is anything longer than 4 KiB.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) > maxTokenLen {
		return t, malformed("it is longer than %d bytes", maxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return t, malformed("it does not start with %q", prefix)
	}
	var sr, sig, se, skn string
	for f := range strings.SplitSeq(rest, "&") {
		k, v, _ := strings.Cut(f, "=")
		var dst *string
		switch k {
		case "sr":
			dst = &sr
		case "sig":
			dst = &sig
		case "se":
			dst = &se
		case "skn":
			dst = &skn
		default:
			return t, malformed("unknown field %q", short(k))
		}
		if *dst != "" {
			return t, malformed("field %s appears twice", k)
		}
		if v == "" {
			return t, malformed("field %s is empty", k)
		}
		*dst = v
	}
	if sr == "" || sig == "" || se == "" {
		return t, malformed("it needs the fields sr, sig and se")
	}
	return t, t.fill(sr, sig, se, skn)
}

func (t *Token) fill(sr, sig, se, skn string) error {
	for i := 0; i < len(sr); i++ {
		if sr[i] <= ' ' || sr[i] >= 0x7f {
			return malformed("sr has a space or a non-ASCII byte; URL-encode the resource")
		}
	}
	res, err := url.QueryUnescape(sr)
	if err != nil {
		return malformed("sr is not URL-encoded correctly")
	}
	// sig is unescaped as a path so a '+' left unescaped stays a '+' (base64
	// never contains spaces, so this only ever accepts more tokens).
	sigB64, err := url.PathUnescape(sig)
	if err != nil {
		return malformed("sig is not URL-encoded correctly")
	}
	sigBytes, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil || len(sigBytes) != sigLen {
		return malformed("sig is not a base64 HMAC-SHA256 (%d bytes)", sigLen)
	}
	// se must be canonical: the signature covers it as sent, and Verify
	// recomputes it from Expiry.
	if len(se) > 12 || strings.Trim(se, "0123456789") != "" || (se[0] == '0' && se != "0") {
		return malformed("se is not a number of seconds since 1970")
	}
	exp, err := strconv.ParseInt(se, 10, 64)
	if err != nil || exp > maxExpiry {
		return malformed("se is after the year 9999")
	}
	if skn != "" {
		if skn, err = url.QueryUnescape(skn); err != nil || skn == "" {
			return malformed("skn is not URL-encoded correctly")
		}
	}
	t.Resource, t.RawResource, t.Signature = res, sr, sigBytes
	t.Expiry, t.KeyName = time.Unix(exp, 0).UTC(), skn
	return nil
}

// Verify checks tok for wantResource against keys (primary, then secondary;
// empty keys are skipped), in this order: resource, signature, expiry. A
// skew of 0 means DefaultSkew; a negative skew allows none. The token is
// expired when now > expiry + skew.
//
// Resource matching follows IoT Hub, which compares the resource URI
// case-insensitively: host, path and ids all match ignoring case. That costs
// nothing: the signature binds the token to this identity's key, so a
// token for "Dev" signed with the key of "dev" still fails. Ids that the
// client URL-encoded once more inside the resource (the C# SDK does) are
// decoded before comparing.
func Verify(tok Token, wantResource string, keys [][]byte, now time.Time, skew time.Duration) error {
	if !SameResource(tok.Resource, wantResource) {
		return fmt.Errorf("%w: it is for %q, this connection is %q; create the token from this identity's connection string", ErrWrongResource, short(tok.Resource), short(wantResource))
	}
	if !validSignature(tok, keys) {
		return ErrBadSignature
	}
	switch {
	case skew == 0:
		skew = DefaultSkew
	case skew < 0:
		skew = 0
	}
	if now.After(tok.Expiry.Add(skew)) {
		return fmt.Errorf("%w at %s (now %s, %s clock skew allowed); create a new one with `outpost token`",
			ErrExpired, tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	return nil
}

func validSignature(tok Token, keys [][]byte) bool {
	se := strconv.FormatInt(tok.Expiry.Unix(), 10)
	for _, k := range keys {
		if len(k) > 0 && hmac.Equal(sign(k, tok.RawResource, se), tok.Signature) {
			return true
		}
	}
	return false
}

// SameResource reports whether the resource URIs got (from a token, decoded)
// and want name the same thing, ignoring case and one extra level of URL
// encoding of the segments after the host.
func SameResource(got, want string) bool {
	if strings.EqualFold(got, want) {
		return true
	}
	if !strings.Contains(got, "%") {
		return false
	}
	segs := strings.Split(got, "/")
	for i := 1; i < len(segs); i++ {
		s, err := url.PathUnescape(segs[i])
		if err != nil {
			return false
		}
		segs[i] = s
	}
	return strings.EqualFold(strings.Join(segs, "/"), want)
}

// GenerateKey returns a new 32-byte random key.
func GenerateKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (it crashes the program instead)
	return k
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
