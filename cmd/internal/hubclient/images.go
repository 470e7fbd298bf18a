package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// Image is an entry of the hub's module image store.
type Image struct {
	Digest  string `json:"digest"` // sha256:<64 lowercase hex>
	Size    int64  `json:"size"`
	Created string `json:"created"` // RFC 3339
}

// ImageStall is how long an image upload may make no progress before it is
// abandoned. An upload has no overall timeout: hundreds of MiB over a slow
// line take as long as they take.
const ImageStall = 60 * time.Second

var errStalled = errors.New("no progress")

// PushImage uploads size bytes from r to the hub's image store (POST
// /images) and returns the hub's answer {"digest","size","created"} as
// received; created is false when the hub had the image already. A node
// that cannot be connected to, before a byte of r was read, is passed over
// for the next.
func (c *Client) PushImage(ctx context.Context, r io.Reader, size int64) (raw json.RawMessage, created bool, err error) {
	cr := &countReader{r: r}
	var tries []nodeTry
	for _, base := range c.nodes() {
		raw, created, err = c.pushTo(ctx, base, cr, size)
		if err == nil {
			c.answered(base)
			return raw, created, nil
		}
		tries = append(tries, nodeTry{base, err})
		if ctx.Err() != nil || cr.n > 0 || !dialError(err) {
			break
		}
	}
	return nil, false, failed(Request{Method: http.MethodPost, Path: "/images"}, tries)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *Client) pushTo(ctx context.Context, base string, r io.Reader, size int64) (json.RawMessage, bool, error) {
	req, err := c.newRequest(Request{Method: http.MethodPost, Path: "/images"}, base)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(ImageStall, func() { cancel(errStalled) })
	defer stall.Stop()
	req = req.WithContext(ctx)
	req.Body = io.NopCloser(&protocol.Progress{R: r, Stall: stall, After: ImageStall})
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, false, pushError(ctx, base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, pushError(ctx, base, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, false, ParseError(resp.StatusCode, data)
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil || img.Digest == "" {
		return nil, false, fmt.Errorf("POST /images: the hub's answer is not an image {\"digest\",\"size\",\"created\"}: %s", protocol.Excerpt(data))
	}
	return data, resp.StatusCode == http.StatusCreated, nil
}

func pushError(ctx context.Context, base string, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return &unreachableError{url: base, err: fmt.Errorf("the upload made no progress for %s", ImageStall)}
	}
	return transportError(ctx, context.Background(), base, 0, err)
}

// Images lists the hub's image store, oldest first, as received.
func (c *Client) Images(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	err := c.Do(ctx, http.MethodGet, "/images", nil, &raw)
	return raw, err
}

// DeleteImage removes image digest from the hub's image store.
func (c *Client) DeleteImage(ctx context.Context, digest string) error {
	return c.Do(ctx, http.MethodDelete, PathOf("images", digest), nil, nil)
}
