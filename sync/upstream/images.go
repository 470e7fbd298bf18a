package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// imageStall is how long a download may go without a byte before it is
// abandoned. An image of hundreds of MiB over a slow uplink may take far
// longer than any overall timeout one would choose, but a link that moves
// nothing for a minute is dead. A variable for tests.
var imageStall = 60 * time.Second

// errStalled ends a download that made no progress for imageStall.
var errStalled = errors.New("no data from the hub")

// FetchImage downloads module image digest (sha256:<64 lowercase hex>) from
// the hub's image store into dst, hashing it on the way, and returns the
// bytes written. It fails when the hub does not answer 200 (*HubError, with
// the hub's message), when the bytes do not hash to digest (dst then holds
// them anyway: the caller writes to a temp file and discards it), or when no
// byte arrives for a minute.
func (l *Link) FetchImage(ctx context.Context, digest string, dst io.Writer) (int64, error) {
	want, err := protocol.DigestHex(digest)
	if err != nil {
		return 0, fmt.Errorf("fetch image: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(imageStall, func() { cancel(fmt.Errorf("%w for %s", errStalled, imageStall)) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.opts.URL+protocol.PathImages+"/"+digest, nil)
	if err != nil {
		return 0, fmt.Errorf("fetch image %s: %w", digest, err)
	}
	req.Header.Set("Authorization", l.token())
	resp, err := l.opts.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch image %s: %w", digest, fetchCause(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch image %s: %w", digest, hubError(resp))
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, sum), &protocol.Progress{R: resp.Body, Stall: stall, After: imageStall})
	if err != nil {
		return n, fmt.Errorf("fetch image %s: after %d bytes: %w", digest, n, fetchCause(ctx, err))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return n, fmt.Errorf("fetch image %s: digest mismatch: got sha256:%s, want %s", digest, got, digest)
	}
	l.log.Info("image fetched", "digest", digest, "size", n)
	return n, nil
}

// fetchCause prefers why ctx ended (a stall) over the transport's error.
func fetchCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

// hubError reads the hub's error answer {"code","message"}.
func hubError(resp *http.Response) *HubError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	he := &HubError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	var e struct{ Code, Message string }
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		he.Code, he.Message = e.Code, e.Message
	}
	return he
}
