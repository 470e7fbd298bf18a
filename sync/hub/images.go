package hub

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// The module image store. A module image (an executable or an archive the
// edge's supervisor runs) is named by its content digest sha256:<hex> and
// kept as the file sha256-<hex> in Options.ImageDir.
//
// Images are deliberately outside the Badger state: they are large (up
// to MaxImageSize, 512 MiB by default), never change once written, and
// their name proves their content. In the store they would bloat the value
// log, every snapshot and every node's raft log; as files they are written
// once, streamed, and served with Range requests. The state machine keeps
// only a record per image (imagefsm.go): what exists, its size and when it
// was pushed; a deployment names an image by digest only. In a cluster the
// bytes are copied between nodes (imagerepl.go).

// DefaultMaxImageSize is Options.MaxImageSize's default.
const DefaultMaxImageSize = 512 << 20

const (
	digestPrefix = "sha256:"
	imageFile    = "sha256-" // + 64 hex: a stored image
	imageTemp    = ".push-"  // a push in progress; left over only by a crash
)

// Image is an entry of the image store, as the REST API shows it.
type Image struct {
	Digest  string    `json:"digest"` // sha256:<64 lowercase hex>
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// imageStore holds the image files. mu makes "is it there, then rename" and
// deletes atomic with respect to each other; reads need no lock because a
// file appears and disappears by rename and unlink only.
type imageStore struct {
	dir  string
	max  int64
	temp bool // a temporary dir (InMemory) that close removes
	mu   sync.Mutex
}

// openImages opens the image store in dir (made if missing), or in a new
// temporary directory when dir is "".
func openImages(dir string, limit int64) (*imageStore, error) {
	s := &imageStore{dir: dir, max: limit}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "outpost-hub-images-")
		if err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
		s.dir, s.temp = tmp, true
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	// A push that a crash interrupted left its temp file behind.
	stale, err := filepath.Glob(filepath.Join(s.dir, imageTemp+"*"))
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("open image store: remove an interrupted push: %w", err)
		}
	}
	return s, nil
}

func (s *imageStore) close() error {
	if s.temp {
		return os.RemoveAll(s.dir)
	}
	return nil
}

// parseDigest returns the hex of a digest sha256:<64 lowercase hex>.
func parseDigest(s string) (string, error) {
	h, err := protocol.DigestHex(s)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return h, nil
}

func (s *imageStore) path(hexDigest string) string { return filepath.Join(s.dir, imageFile+hexDigest) }

func imageOf(hexDigest string, fi fs.FileInfo) Image {
	return Image{Digest: digestPrefix + hexDigest, Size: fi.Size(), Created: fi.ModTime().UTC()}
}

// push stores what r yields as an image, hashing it on the way to a temp
// file, and fsyncs it. created is false when the file was there already.
// expect, if not "", is the digest the bytes must have (a copy from
// another node): other bytes are refused (ErrInvalid) and not stored.
// Every failure removes the temp file.
func (s *imageStore) push(ctx context.Context, r io.Reader, expect string, now time.Time) (img Image, created bool, err error) {
	tmp, err := os.CreateTemp(s.dir, imageTemp+"*")
	if err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	name := tmp.Name()
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
		}
		_ = os.Remove(name) // gone already after the rename
	}()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), io.LimitReader(r, s.max+1))
	switch {
	case err != nil:
		return Image{}, false, fmt.Errorf("push image: read the upload: %w", err)
	case n > s.max:
		return Image{}, false, s.tooLarge()
	case n == 0:
		return Image{}, false, fmt.Errorf("%w: the image is empty; send the executable or archive as the body", ErrInvalid)
	}
	if err := tmp.Sync(); err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	err, tmp = tmp.Close(), nil
	if err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Image{}, false, err
	}
	h := hex.EncodeToString(sum.Sum(nil))
	if expect != "" && digestPrefix+h != expect {
		return Image{}, false, fmt.Errorf("%w: the bytes received for image %s hash to %s%s: the copy was damaged; it is not stored", ErrInvalid, expect, digestPrefix, h)
	}
	// The file's mtime is when this node stored it: the age an orphan
	// (a file without a record) must reach before it is collected.
	now = now.Truncate(time.Millisecond)
	if err := os.Chtimes(name, now, now); err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi, err := os.Stat(s.path(h)); err == nil {
		_ = os.Chtimes(s.path(h), now, now) // a new push: not an orphan to collect
		return imageOf(h, fi), false, nil
	}
	if err := os.Rename(name, s.path(h)); err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	fi, err := os.Stat(s.path(h))
	if err != nil {
		return Image{}, false, fmt.Errorf("push image: %w", err)
	}
	return imageOf(h, fi), true, nil // as list shows it, whatever the file system's time resolution
}

func (s *imageStore) tooLarge() error {
	return fmt.Errorf("%w: a module image is at most %d bytes (%d MiB, the hub's MaxImageSize)", protocol.ErrTooLarge, s.max, s.max>>20)
}

// files returns the image files, oldest first (Created is the file's
// mtime: when this node stored it).
func (s *imageStore) files() ([]Image, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := []Image{}
	for _, e := range entries {
		h, ok := strings.CutPrefix(e.Name(), imageFile)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if _, err := parseDigest(digestPrefix + h); err != nil {
			continue // not ours
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		out = append(out, imageOf(h, fi))
	}
	slices.SortFunc(out, func(a, b Image) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out, nil
}

// has reports whether the file of image digest is here.
func (s *imageStore) has(digest string) bool {
	h, err := parseDigest(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(s.path(h))
	return err == nil
}

// open opens the image digest for reading.
func (s *imageStore) open(digest string) (*os.File, Image, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, Image{}, err
	}
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Image{}, fmt.Errorf("%w: image %s is not in the hub's image store (outpost image push FILE adds it)", ErrNotFound, digest)
	}
	if err != nil {
		return nil, Image{}, fmt.Errorf("open image %s: %w", digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, Image{}, fmt.Errorf("open image %s: %w", digest, err)
	}
	return f, imageOf(h, fi), nil
}

// touch marks the file of image digest as stored now (so it is no
// orphan to collect) and returns it; ok is false when it is not here.
func (s *imageStore) touch(digest string, now time.Time) (Image, bool) {
	h, err := parseDigest(digest)
	if err != nil {
		return Image{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now = now.Truncate(time.Millisecond)
	if os.Chtimes(s.path(h), now, now) != nil {
		return Image{}, false
	}
	fi, err := os.Stat(s.path(h))
	if err != nil {
		return Image{}, false
	}
	return imageOf(h, fi), true
}

// remove deletes the file of image digest, if it is here.
func (s *imageStore) remove(digest string) error {
	h, err := parseDigest(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = os.Remove(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete image %s: %w", digest, err)
	}
	return syncDir(s.dir)
}

// removeOlder deletes the file of image digest if it was stored before
// the time given (a push touches a file it finds).
func (s *imageStore) removeOlder(digest string, before time.Time) (bool, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path(h))
	if err != nil || !fi.ModTime().Before(before) {
		return false, nil
	}
	if err := os.Remove(s.path(h)); err != nil {
		return false, fmt.Errorf("remove image %s: %w", digest, err)
	}
	return true, syncDir(s.dir)
}

// syncDir makes a rename or unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// PushImage stores the image r yields and returns it; created is false when
// an identical image was stored already. An image over MaxImageSize is
// refused with protocol.ErrTooLarge, an empty one with ErrInvalid. A
// clustered hub (on the leader) answers once a majority of the nodes hold
// the bytes and the record is applied; too few copies are ErrUnavailable
// and record nothing.
func (h *Hub) PushImage(ctx context.Context, r io.Reader) (img Image, created bool, err error) {
	now := h.opts.Now()
	img, _, err = h.images.push(ctx, r, "", now)
	if errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, ErrInvalid) {
		h.metrics.imagesRefused.Add(1)
		return img, false, err
	}
	if err != nil {
		return img, false, err
	}
	h.metrics.imagesPushed.Add(1)
	h.metrics.imageBytes.Add(img.Size)
	if rec, ok, err := h.fsm.Image(img.Digest); err != nil || ok {
		return rec, false, err
	}
	if err := h.replicateImage(ctx, img); err != nil {
		return Image{}, false, err
	}
	if err := h.apply(ctx, putImage{Digest: img.Digest, Size: img.Size, Created: now.UnixMilli()}); err != nil {
		return Image{}, false, fmt.Errorf("record image %s: %w", img.Digest, err)
	}
	rec, ok, err := h.fsm.Image(img.Digest)
	if err == nil && !ok {
		err = fmt.Errorf("image %s: deleted while it was pushed; push it again", img.Digest)
	}
	if err != nil {
		return Image{}, false, err
	}
	h.log.Info("image pushed", "digest", img.Digest, "size", img.Size)
	return rec, true, nil
}

// Images lists the stored images, oldest first.
func (h *Hub) Images() ([]Image, error) { return h.fsm.Images() }

// OpenImage opens a stored image for reading; the caller closes the file.
func (h *Hub) OpenImage(digest string) (*os.File, Image, error) {
	return h.openImage(context.Background(), digest)
}

// openImage opens a recorded image; a clustered node that lacks the
// file first copies it from another node.
func (h *Hub) openImage(ctx context.Context, digest string) (*os.File, Image, error) {
	rec, ok, err := h.fsm.Image(digest)
	if err != nil {
		return nil, Image{}, err
	}
	if !ok {
		return nil, Image{}, fmt.Errorf("%w: image %s is not in the hub's image store (outpost image push FILE adds it)", ErrNotFound, digest)
	}
	if h.opts.Clustered && !h.images.has(digest) {
		if err := h.fetchImage(ctx, rec); err != nil {
			return nil, Image{}, err
		}
	}
	f, _, err := h.images.open(digest)
	if errors.Is(err, ErrNotFound) {
		return nil, Image{}, fmt.Errorf("image %s is recorded but its file is missing from %s: push the image again", digest, h.images.dir)
	}
	return f, rec, err
}

// DeleteImage removes a stored image (its record, then every node's
// file). Edges that cached it keep their copy.
func (h *Hub) DeleteImage(ctx context.Context, digest string) error {
	if _, err := parseDigest(digest); err != nil {
		return err
	}
	return h.apply(ctx, deleteImage{Digest: digest})
}

// imageChanged makes this node's files follow a record that came (copy
// the bytes, in the background) or went (remove the file).
func (h *Hub) imageChanged(digest string, deleted bool) {
	if deleted {
		if err := h.images.remove(digest); err != nil {
			h.log.Warn("remove a deleted image's file", "digest", digest, "err", err)
		}
		return
	}
	if h.opts.Clustered && !h.images.has(digest) {
		h.kickImageSync()
	}
}

// adoptImages records the image files of a store from before image
// records: a single hub's files are the truth. It applies the records to
// the FSM directly, before anything else applies: on a single hub that is
// the one code path; on a clustered node it runs only while the node has
// applied no log entry (a single hub's data turned into a cluster's first
// node), whose state the cluster takes over as a whole.
func (h *Hub) adoptImages() error {
	if h.opts.Clustered && h.fsm.AppliedIndex() != 0 {
		return nil
	}
	files, err := h.images.files()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, img := range files {
		entry, err := encodeCommand(putImage{Digest: img.Digest, Size: img.Size, Created: img.Created.UnixMilli()}, img.Created.UnixMilli())
		if err == nil {
			_, err = h.fsm.Apply(entry) // an image recorded already keeps its record
		}
		if err != nil {
			return fmt.Errorf("record image %s: %w", img.Digest, err)
		}
	}
	return nil
}

// pushImage is POST /images: the body is the image's bytes.
func (h *Hub) pushImage(w http.ResponseWriter, r *http.Request) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		h.metrics.imagesRefused.Add(1)
		return fmt.Errorf("%w: send the image's bytes as the body (Content-Type: application/octet-stream, curl --data-binary @FILE), not a form", ErrInvalid)
	}
	if r.ContentLength > h.images.max {
		h.metrics.imagesRefused.Add(1)
		return h.images.tooLarge()
	}
	if err := h.admit(max(r.ContentLength, 0)); err != nil {
		h.metrics.imagesRefused.Add(1)
		return fmt.Errorf("image push: %w", err)
	}
	body := bufio.NewReaderSize(r.Body, protocol.ImageHead)
	head, _ := body.Peek(protocol.ImageHead) // a short image has a short head; a read error recurs in PushImage
	if len(head) > 0 && protocol.ImageFormat(head) == "" {
		h.metrics.imagesRefused.Add(1)
		return fmt.Errorf("%w: the image is neither an executable nor an archive the edge can unpack (%s)", ErrInvalid, protocol.ImageFormatHint)
	}
	img, created, err := h.PushImage(r.Context(), body)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, img)
	return nil
}

func (h *Hub) listImages(w http.ResponseWriter, _ *http.Request) error {
	imgs, err := h.Images()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, imgs)
	return nil
}

func (h *Hub) deleteImage(w http.ResponseWriter, r *http.Request) error {
	err := h.DeleteImage(r.Context(), r.PathValue("digest"))
	if errors.Is(err, ErrInvalid) {
		h.metrics.imagesRefused.Add(1)
	}
	if err == nil {
		h.log.Info("image deleted", "digest", r.PathValue("digest"))
	}
	return noContent(w, err)
}

// getImage is GET /images/{digest} and, for edges, GET
// /sync/v1/images/{digest}: the bytes, with Range and conditional requests
// (the digest is the ETag).
func (h *Hub) getImage(w http.ResponseWriter, r *http.Request) error {
	f, img, err := h.openImage(r.Context(), r.PathValue("digest"))
	if errors.Is(err, ErrInvalid) {
		h.metrics.imagesRefused.Add(1)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+img.Digest+`"`)
	http.ServeContent(w, r, "", img.Created, f)
	return nil
}

// linkImage serves an image to an edge on the link, with the edge's SAS.
// Any enabled edge may fetch any image: knowing the digest is what a
// deployment gives it.
func (h *Hub) linkImage(w http.ResponseWriter, r *http.Request) {
	edge, err := h.edgeAuth(r)
	if err != nil {
		h.authFailed(w)
		writeError(w, err)
		return
	}
	setDeadline(w, 0) // an image transfer over the edge's uplink
	if err := h.getImage(w, r); err != nil {
		h.log.Warn("image fetch refused", "edge", edge, "err", err)
		writeError(w, err)
		return
	}
	h.metrics.imagesFetched.Add(1)
	h.log.Debug("image fetched", "edge", edge, "digest", r.PathValue("digest"), "range", r.Header.Get("Range"))
}
