package downstream

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// image serves a module image to a child edge from this edge's cache,
// fetched from upstream (and kept) first when missing: a child deploys with
// only its parent reachable. Range requests are answered.
func (s *Server) image(w http.ResponseWriter, r *http.Request) {
	child, release, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer release()
	digest := r.PathValue("digest")
	if _, err := protocol.DigestHex(digest); err != nil {
		protocol.WriteError(w, http.StatusBadRequest, "InvalidDigest", err.Error())
		return
	}
	path, err := s.opts.Image(r.Context(), digest)
	if err != nil {
		s.warn("image", "image for a child edge not available", "child", child, "digest", digest, "err", err)
		protocol.WriteError(w, http.StatusNotFound, "ImageNotFound", fmt.Sprintf("image %s: %v", digest, err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		protocol.WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		protocol.WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// An image over the child's link takes what it takes, but a child that
	// reads nothing for imageStall is cut off.
	http.ServeContent(stallWriter{w, http.NewResponseController(w)}, r, "", st.ModTime(), f)
	s.opts.Logger.Debug("image served to a child edge", "child", child, "digest", digest, "range", r.Header.Get("Range"))
}

// imageStall is how long a child may read nothing of an image before the
// transfer is cut (as a child gives up on a parent that sends nothing).
var imageStall = 60 * time.Second

// stallWriter moves the write deadline on before every write: a transfer
// may be long, but not stalled.
type stallWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (w stallWriter) Write(b []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(imageStall))
	return w.ResponseWriter.Write(b)
}
