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
// received; created is false when the hub had the image already.
func (c *Client) PushImage(ctx context.Context, r io.Reader, size int64) (raw json.RawMessage, created bool, err error) {
	req, err := c.newRequest(Request{Method: http.MethodPost, Path: "/images"})
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
		return nil, false, c.pushError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, c.pushError(ctx, err)
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

func (c *Client) pushError(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return &unreachableError{url: c.URL, err: fmt.Errorf("the upload made no progress for %s", ImageStall)}
	}
	return c.transportError(ctx, context.Background(), 0, err)
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
