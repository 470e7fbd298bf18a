package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Images in a cluster. A push reaches the leader (followers forward it),
// which stores the file, copies it to other nodes until a majority holds
// it (each copy fsynced and hash-checked by its receiver), and only then
// applies putImage and answers. Every node makes its files follow its
// records: it copies a recorded image it lacks from another node (in the
// background after putImage applies, after a snapshot restore and at
// start, or on demand when asked for it) and removes the file when
// deleteImage applies. Any copy is current (the name is the content), so
// a node that holds the record answers image GETs itself.
//
// The nodes copy through two node-local endpoints, owner-authenticated:
//
//	POST /cluster/images/{digest}   body: the bytes; the receiver stores them
//	GET  /cluster/images/{digest}   the bytes, if this node has the file

const clusterImages = "/cluster/images/"

// ErrUnavailable: the cluster could not do it now (too few nodes hold a
// new image's bytes); retry once nodes are back (503).
var ErrUnavailable = errors.New("unavailable")

// orphanGrace is how old a file without a record must be before a node
// removes it: younger, it may be a push whose record is on its way.
const orphanGrace = 10 * time.Minute

// voterLister is what a Cluster may tell of its members: the ids of the
// voting nodes (this one included). Without it, the FSM's node records
// count.
type voterLister interface {
	Voters() ([]string, error)
}

// imagePeers are the other voting nodes with their API URLs (a node
// without a published URL has API ""), the leader first.
func (h *Hub) imagePeers() ([]NodeInfo, error) {
	c := h.clusterNode()
	if c == nil {
		return nil, fmt.Errorf("%w: the node is still starting", ErrNotLeader)
	}
	nodes, err := h.fsm.Nodes()
	if err != nil {
		return nil, err
	}
	byID := map[string]NodeInfo{}
	ids := []string{}
	for _, n := range nodes {
		byID[n.ID] = n
		ids = append(ids, n.ID)
	}
	if vl, ok := c.(voterLister); ok {
		if ids, err = vl.Voters(); err != nil {
			return nil, err
		}
	}
	var out []NodeInfo
	leader := c.LeaderID()
	for _, id := range ids {
		if id == c.ID() {
			continue
		}
		n := byID[id]
		n.ID = id
		if id == leader {
			out = append([]NodeInfo{n}, out...)
		} else {
			out = append(out, n)
		}
	}
	return out, nil
}

// replicateImage copies a pushed image to other nodes until, with this
// one, a majority of the voters hold it. A single hub has nothing to do.
func (h *Hub) replicateImage(ctx context.Context, img Image) error {
	if !h.opts.Clustered {
		return nil
	}
	peers, err := h.imagePeers()
	if err != nil {
		return err
	}
	need := (len(peers) + 1) / 2 // a majority of len(peers)+1, less this node
	if need == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, copyTimeout(img.Size))
	errc := make(chan error, len(peers))
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- h.sendImage(ctx, p, img) }()
	}
	// Once enough copies succeeded (or too many failed) the others stop:
	// those nodes copy the image when putImage applies.
	defer wg.Wait()
	defer cancel()
	var errs []error
	for ok := 0; ok < need; {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		} else {
			ok++
		}
		if len(peers)-len(errs) < need {
			h.metrics.imagesUnreplicated.Add(1)
			return fmt.Errorf("%w: image %s is acknowledged once %d of the cluster's %d nodes hold it (a majority), and %d of the other nodes could not store a copy (%v); bring nodes back and push again",
				ErrUnavailable, img.Digest, need+1, len(peers)+1, len(errs), errors.Join(errs...))
		}
	}
	return nil
}

// copyTimeout bounds one node-to-node copy: a minute, plus a second per
// 10 MiB.
func copyTimeout(size int64) time.Duration {
	return time.Minute + time.Duration(size/(10<<20))*time.Second
}

// sendImage streams this node's file of img to node p.
func (h *Hub) sendImage(ctx context.Context, p NodeInfo, img Image) error {
	if p.API == "" {
		return fmt.Errorf("node %s: no API address recorded yet", p.ID)
	}
	f, _, err := h.images.open(img.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := h.peerRequest(ctx, "POST", p, img.Digest, f)
	if err != nil {
		return err
	}
	req.ContentLength = img.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Expect", "100-continue") // a node that holds the image says so before the bytes go
	resp, err := h.peerClient().Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", p.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("node %s: %w", p.ID, peerError(resp))
	}
	return nil
}

// peerRequest makes an owner-signed request to node p's image endpoint.
func (h *Hub) peerRequest(ctx context.Context, method string, p NodeInfo, digest string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(p.API, "/")+clusterImages+url.PathEscape(digest), body)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", p.ID, err)
	}
	req.Header.Set("Authorization", sas.NewToken(h.opts.HostName, h.opts.OwnerKey, "owner", h.opts.Now().Add(time.Hour)))
	return req, nil
}

func (h *Hub) peerClient() *http.Client {
	return &http.Client{Transport: h.opts.PeerTransport}
}

// fetchImage copies a recorded image this node lacks from another node:
// the leader first, then the others. Concurrent fetches of one image wait
// for one copy.
func (h *Hub) fetchImage(ctx context.Context, rec Image) error {
	done, first := h.imageFlights.start(rec.Digest)
	if !first {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if h.images.has(rec.Digest) {
			return nil
		}
		return fmt.Errorf("%w: image %s: no node could give a copy; retry", ErrUnavailable, rec.Digest)
	}
	defer h.imageFlights.end(rec.Digest)
	peers, err := h.imagePeers()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, copyTimeout(rec.Size))
	defer cancel()
	var errs []error
	for _, p := range peers {
		err := h.fetchFrom(ctx, p, rec)
		if err == nil {
			h.log.Info("image copied from another node", "digest", rec.Digest, "from", p.ID)
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: image %s: no other node could give a copy (%v); retry", ErrUnavailable, rec.Digest, errors.Join(errs...))
}

func (h *Hub) fetchFrom(ctx context.Context, p NodeInfo, rec Image) error {
	if p.API == "" {
		return fmt.Errorf("node %s: no API address recorded yet", p.ID)
	}
	req, err := h.peerRequest(ctx, "GET", p, rec.Digest, nil)
	if err != nil {
		return err
	}
	resp, err := h.peerClient().Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", p.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %s: %w", p.ID, peerError(resp))
	}
	if _, _, err := h.images.push(ctx, resp.Body, rec.Digest, h.opts.Now()); err != nil {
		return fmt.Errorf("node %s: %w", p.ID, err)
	}
	h.metrics.imageCopies.Add(1)
	return nil
}

// flights lets one fetch of an image run at a time.
type flights struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// start returns the channel the running fetch of key closes, and whether
// the caller is that fetch (then it calls end).
func (f *flights) start(key string) (<-chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.m[key]; ok {
		return ch, false
	}
	if f.m == nil {
		f.m = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	f.m[key] = ch
	return ch, true
}

func (f *flights) end(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.m[key])
	delete(f.m, key)
}

func peerError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return protocol.ReadError(resp.StatusCode, body)
}

// handleClusterImages registers the node-to-node image endpoints (a
// clustered hub only).
func (h *Hub) handleClusterImages(mux *http.ServeMux) {
	mux.HandleFunc("POST "+clusterImages+"{digest}", h.nodeOnly(h.receiveImage))
	mux.HandleFunc("GET "+clusterImages+"{digest}", h.nodeOnly(h.serveImageFile))
}

func (h *Hub) nodeOnly(f func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.owner(r); err != nil {
			h.authFailed(w)
			writeError(w, err)
			return
		}
		// A transfer: as long as the sender gives the largest image (its
		// copyTimeout), so a sender that vanished mid-copy does not hold
		// the handler and its temp file past that.
		setDeadline(w, copyTimeout(h.images.max))
		if err := f(w, r); err != nil {
			h.log.Warn("image copy between nodes failed", "method", r.Method, "digest", r.PathValue("digest"), "err", err)
			writeError(w, err)
		}
	}
}

// receiveImage stores a copy another node sends: durable (fsynced) and
// hash-checked before the answer.
func (h *Hub) receiveImage(w http.ResponseWriter, r *http.Request) error {
	digest := r.PathValue("digest")
	if _, err := parseDigest(digest); err != nil {
		return err
	}
	if r.ContentLength > h.images.max {
		return h.images.tooLarge()
	}
	// Held already (an earlier push's copy, or fetched): answered before
	// the body is read, so a sender that waits for 100-continue sends none.
	if img, ok := h.images.touch(digest, h.opts.Now()); ok {
		writeJSON(w, http.StatusOK, img)
		return nil
	}
	if err := h.admit(max(r.ContentLength, 0)); err != nil {
		return fmt.Errorf("image copy: %w", err)
	}
	img, created, err := h.images.push(r.Context(), r.Body, digest, h.opts.Now())
	if err != nil {
		return err
	}
	h.metrics.imageCopies.Add(1)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, img)
	return nil
}

// serveImageFile serves this node's file of an image, recorded or not.
func (h *Hub) serveImageFile(w http.ResponseWriter, r *http.Request) error {
	f, img, err := h.images.open(r.PathValue("digest"))
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", img.Created, f)
	return nil
}

// imageLocal reports the requests a clustered node answers itself: the
// node-to-node copies, and the image GETs of images it holds the record
// of (any copy is current; openImage fetches a missing file). Other image
// requests go to the leader, which may know a newer record.
func (h *Hub) imageLocal(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, clusterImages) {
		return true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	var digest string
	var ok bool
	if digest, ok = strings.CutPrefix(r.URL.Path, "/images/"); !ok {
		if digest, ok = strings.CutPrefix(r.URL.Path, protocol.PathImages+"/"); !ok {
			return false
		}
	}
	_, ok, err := h.fsm.Image(digest)
	return err == nil && ok
}

// kickImageSync asks the image syncer for a pass (clustered only).
func (h *Hub) kickImageSync() {
	select {
	case h.imageKick <- struct{}{}:
	default:
	}
}

// syncImages makes this node's files follow its records until the hub
// stops: it copies the recorded images it lacks and removes the old files
// nothing records (a push that failed, a delete a snapshot skipped). A
// pass runs when asked and every orphanGrace/2; one that failed is tried
// again, backing off up to 30 s.
func (h *Hub) syncImages() {
	defer h.sweeper.Done()
	tick := time.NewTicker(orphanGrace / 2) // also: the orphans young at the last pass
	defer tick.Stop()
	wait := time.Second
	var retry <-chan time.Time // set after a failed pass
	for {
		select {
		case <-h.done:
			return
		case <-h.imageKick:
		case <-tick.C:
		case <-retry:
		}
		if err := h.syncImagesOnce(); err != nil {
			h.log.Warn("image sync: retrying", "in", wait, "err", err)
			retry = time.After(wait)
			wait = min(2*wait, 30*time.Second)
			continue
		}
		retry, wait = nil, time.Second
	}
}

func (h *Hub) syncImagesOnce() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	recs, err := h.fsm.Images()
	if err != nil {
		return err
	}
	recorded := map[string]bool{}
	var errs []error
	for _, rec := range recs {
		recorded[rec.Digest] = true
		if !h.images.has(rec.Digest) {
			errs = append(errs, h.fetchImage(ctx, rec))
		}
	}
	if !h.caughtUp() {
		// A node that just came back may not have applied a record yet
		// whose copy it holds (one of the majority a push counted): its
		// orphans wait until it has caught up with the leader.
		return errors.Join(errs...)
	}
	files, err := h.images.files()
	if err != nil {
		return err
	}
	for _, f := range files {
		if recorded[f.Digest] {
			continue
		}
		if _, ok, err := h.fsm.Image(f.Digest); err != nil || ok {
			errs = append(errs, err)
			continue
		}
		if removed, err := h.images.removeOlder(f.Digest, h.opts.Now().Add(-orphanGrace)); removed {
			h.log.Info("image file without a record removed", "digest", f.Digest)
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
