package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// imageStall is how long a download may go without a byte before it is
// abandoned. An image of hundreds of MiB over a slow uplink may take far
// longer than any overall timeout one would choose, but a link that moves
// nothing for a minute is dead. A variable for tests.
var imageStall = 60 * time.Second

// errStalled ends a download that made no progress for imageStall.
var errStalled = errors.New("no data from the hub")

// DefaultMaxImageSize is Options.MaxImageSize's default: the largest module
// image the edge downloads.
const DefaultMaxImageSize = 2 << 30

// ErrImageTooLarge is matched (errors.Is) by the error of a download that
// brought, or announced, more bytes than allowed: more than the hub's
// Content-Length, or more than Options.MaxImageSize.
var ErrImageTooLarge = errors.New("image larger than allowed")

// FetchImage downloads module image digest (sha256:<64 lowercase hex>) from
// the hub's image store into dst, hashing it on the way, and returns the
// bytes written. It fails when the hub does not answer 200 (*HubError, with
// the hub's message), when the bytes do not hash to digest (dst then holds
// them anyway: the caller writes to a temp file and discards it), when no
// byte arrives for a minute, or (ErrImageTooLarge, counted in the status)
// when the answer is larger than Options.MaxImageSize or than the size the
// hub advertised (Content-Length): reading stops at the limit, so a hostile
// answer cannot fill the gateway's disk before the digest check.
func (l *Link) FetchImage(ctx context.Context, digest string, dst io.Writer) (int64, error) {
	want, err := protocol.DigestHex(digest)
	if err != nil {
		return 0, fmt.Errorf("fetch image: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(imageStall, func() { cancel(fmt.Errorf("%w for %s", errStalled, imageStall)) })
	defer stall.Stop()
	i, base, _ := l.node()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+protocol.PathImages+"/"+digest, nil)
	if err != nil {
		return 0, fmt.Errorf("fetch image %s: %w", digest, err)
	}
	req.Header.Set("Authorization", l.token())
	// The bytes as stored: a compressed answer that the transport inflated
	// would have no size to hold it to.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := l.opts.Client.Do(req)
	if err != nil {
		// The next fetch (the caller retries) asks another node.
		return 0, fmt.Errorf("fetch image %s: %w", digest, l.nodeFailure(ctx, i, fetchCause(ctx, err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch image %s: %w", digest, l.nodeFailure(ctx, i, hubError(resp, 0)))
	}
	body, err := l.imageBody(resp)
	if err != nil {
		return 0, fmt.Errorf("fetch image %s: %w", digest, err)
	}
	sum := sha256.New()
	body = newFetchLog(body, l.log, digest, resp.ContentLength, nil)
	n, err := io.Copy(io.MultiWriter(dst, sum), &protocol.Progress{R: body, Stall: stall, After: imageStall})
	if errors.Is(err, ErrImageTooLarge) {
		l.imagesRefused.Add(1)
	}
	if err != nil {
		return n, fmt.Errorf("fetch image %s: after %d bytes: %w", digest, n, fetchCause(ctx, err))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return n, fmt.Errorf("fetch image %s: digest mismatch: got sha256:%s, want %s", digest, got, digest)
	}
	l.log.Info("image fetched", "digest", digest, "size", n)
	return n, nil
}

// imageProgressEvery is how often a download logs how far it has got: a
// large image over a slow uplink takes minutes, and an operator watching
// the log should see it move. A variable for tests.
var imageProgressEvery = 10 * time.Second

// fetchLog passes reads through to r and logs the bytes read so far at
// most every imageProgressEvery; a download shorter than that logs
// nothing (FetchImage logs its end).
type fetchLog struct {
	r      io.Reader
	log    *slog.Logger
	digest string
	total  int64 // -1: unknown
	n      int64
	limit  ratelog.Limiter
}

func newFetchLog(r io.Reader, log *slog.Logger, digest string, total int64, now func() time.Time) *fetchLog {
	f := &fetchLog{r: r, log: log, digest: digest, total: total, limit: ratelog.Limiter{Every: imageProgressEvery, Now: now}}
	f.limit.Allow("") // the first line comes one period in
	return f
}

func (f *fetchLog) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	f.n += int64(n)
	if n > 0 {
		if ok, _ := f.limit.Allow(""); ok {
			attrs := []any{"digest", f.digest, "bytes", f.n}
			if f.total > 0 {
				attrs = append(attrs, "total", f.total, "percent", f.n*100/f.total)
			}
			f.log.Info("image download", attrs...)
		}
	}
	return n, err
}

// imageBody returns resp's body held to the size the hub advertised, and to
// MaxImageSize; an advertised size over MaxImageSize is refused at once.
func (l *Link) imageBody(resp *http.Response) (io.Reader, error) {
	limit := l.opts.MaxImageSize
	if resp.ContentLength > limit {
		l.imagesRefused.Add(1)
		return nil, fmt.Errorf("%w: the hub announces %d bytes, the edge takes at most %d (%d MiB, --max-image-size)",
			ErrImageTooLarge, resp.ContentLength, limit, limit>>20)
	}
	what := fmt.Sprintf("the edge takes at most %d bytes (%d MiB, --max-image-size)", limit, limit>>20)
	if resp.ContentLength >= 0 && !resp.Uncompressed {
		limit, what = resp.ContentLength, fmt.Sprintf("the hub announced %d bytes (Content-Length)", resp.ContentLength)
	}
	return &capReader{r: resp.Body, left: limit, what: what}, nil
}

// capReader hands on at most left bytes of r; a byte beyond them ends the
// read with ErrImageTooLarge (reading stops there).
type capReader struct {
	r    io.Reader
	left int64
	what string
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more bytes than %s", ErrImageTooLarge, c.what)
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// fetchCause prefers why ctx ended (a stall) over the transport's error.
func fetchCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

// hubError reads the hub's error answer, the {code,message} envelope.
func hubError(resp *http.Response, retry time.Duration) *HubError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := protocol.ReadError(resp.StatusCode, data)
	return &HubError{Status: e.Status, Code: e.Code, Message: e.Message, RetryAfter: retry}
}
