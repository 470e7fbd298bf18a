package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Handler serves the service REST API (owner SAS) and the edge link (edge
// device SAS).
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(stream bool, pattern string, f func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h.owner(r); err != nil {
				h.authFailed(w)
				writeError(w, err)
				return
			}
			if stream {
				setDeadline(w, 0) // long poll, transfer or method call: bounded by its own timeouts
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, maxRESTBody)
			}
			if err := f(w, r); err != nil {
				writeError(w, err)
			}
		})
	}
	svc := func(pattern string, f func(http.ResponseWriter, *http.Request) error) { serve(false, pattern, f) }
	stream := func(pattern string, f func(http.ResponseWriter, *http.Request) error) { serve(true, pattern, f) }
	svc("PUT /devices/{d}", h.putDevice)
	listDevices := func(w http.ResponseWriter, r *http.Request) error { return h.writeIdentities(w, h.Devices()) }
	svc("GET /devices", listDevices)
	svc("GET /devices/{$}", listDevices) // the service SDKs' form
	svc("POST /devices", h.bulkDevices)
	svc("POST /devices/query", h.queryDevices)
	svc("POST /devices/modules/query", h.queryDevices)
	svc("GET /statistics/devices", h.deviceStatistics)
	svc("GET /statistics/service", h.serviceStatistics)
	svc("GET /devices/{d}", h.getIdentity)
	svc("DELETE /devices/{d}", func(w http.ResponseWriter, r *http.Request) error {
		return noContent(w, h.DeleteDevice(r.Context(), r.PathValue("d")))
	})
	svc("PUT /devices/{d}/modules/{m}", h.putModule)
	svc("GET /devices/{d}/modules", func(w http.ResponseWriter, r *http.Request) error {
		mods, err := h.Modules(r.PathValue("d"))
		if err != nil {
			return err
		}
		return h.writeIdentities(w, mods)
	})
	svc("GET /devices/{d}/modules/{m}", h.getIdentity)
	svc("DELETE /devices/{d}/modules/{m}", func(w http.ResponseWriter, r *http.Request) error {
		return noContent(w, h.DeleteModule(r.Context(), r.PathValue("d"), r.PathValue("m")))
	})
	for _, p := range []string{"/twins/{d}", "/twins/{d}/modules/{m}"} {
		svc("GET "+p, h.getTwin)
		svc("PATCH "+p, h.updateTwin(false))
		svc("PUT "+p, h.updateTwin(true))
	}
	stream("POST /twins/{d}/methods", h.invoke)
	stream("POST /twins/{d}/modules/{m}/methods", h.invoke)
	svc("POST /devices/{d}/applyConfigurationContent", h.applyConfiguration)
	svc("PUT /configurations/{id}", h.putConfigurationAPI)
	svc("GET /configurations", func(w http.ResponseWriter, r *http.Request) error {
		cs, err := h.Configurations()
		if err != nil {
			return err
		}
		writeJSON(w, 200, cs)
		return nil
	})
	svc("GET /configurations/{id}", func(w http.ResponseWriter, r *http.Request) error {
		c, err := h.Configuration(r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, 200, c)
		return nil
	})
	svc("DELETE /configurations/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return noContent(w, h.DeleteConfiguration(r.Context(), r.PathValue("id")))
	})
	svc("POST /devices/{d}/messages/deviceBound", h.c2d)
	stream("GET /messages/events", h.readEvents)
	svc("PUT /jobs/v2/{id}", h.putJob)
	svc("GET /jobs/v2/{id}", h.getJob)
	svc("POST /jobs/v2/{id}/cancel", h.cancelJob)
	svc("GET /jobs/v2/query", h.queryJobs)
	svc("GET /metrics", h.writeMetrics)
	stream("POST /images", h.pushImage)
	svc("GET /images", h.listImages)
	stream("GET /images/{digest}", h.getImage)
	svc("DELETE /images/{digest}", h.deleteImage)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		health := map[string]any{"status": "ok", "events": h.LastSeq()}
		if c, ok := h.clusterNode().(interface{ Health() any }); ok {
			health["cluster"] = c.Health()
		}
		writeJSON(w, 200, health)
	})
	link(mux, h, protocol.PathHello, func(_ context.Context, edge string, m protocol.Hello) (any, error) { return h.Hello(edge, m) })
	link(mux, h, protocol.PathMessages, func(ctx context.Context, edge string, m protocol.Messages) (any, error) {
		return h.Messages(ctx, edge, m)
	})
	link(mux, h, protocol.PathTwins, func(ctx context.Context, edge string, m protocol.TwinsUp) (any, error) {
		return h.Twins(ctx, edge, m)
	})
	link(mux, h, protocol.PathPull, func(ctx context.Context, edge string, m protocol.Pull) (any, error) {
		return h.Pull(ctx, edge, m)
	})
	link(mux, h, protocol.PathMethods, func(_ context.Context, edge string, m protocol.MethodResult) (any, error) {
		return struct{}{}, h.MethodResult(edge, m)
	})
	link(mux, h, protocol.PathPresence, func(ctx context.Context, edge string, m protocol.PresenceReport) (any, error) {
		if err := h.checkInstance(edge, m.Instance); err != nil {
			return nil, err
		}
		return struct{}{}, h.notePresence(ctx, edge, protocol.Pull{Presence: m.Presence})
	})
	mux.HandleFunc("GET "+protocol.PathImages+"/{digest}", h.linkImage)
	if h.opts.Clustered {
		h.handleClusterImages(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteError(w, 404, "NotFound", fmt.Sprintf("no API at %s %s; see CONTRACT §3 (devices, twins, messages/events, …)", r.Method, r.URL.Path))
	})
	return h.withDeadline(mux)
}

// link registers one edge-link endpoint: edge SAS, CBOR frame in, CBOR
// frame out, errors as JSON.
func link[In any](mux *http.ServeMux, h *Hub, path string, f func(context.Context, string, In) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		edge, err := h.edgeAuth(r)
		if err != nil {
			h.authFailed(w)
			writeError(w, err)
			return
		}
		if !h.linkSlots.acquire(edge) {
			h.linkBusy(w, edge, path)
			return
		}
		defer h.linkSlots.release(edge)
		setDeadline(w, 0) // pulls are long polls; frames cross slow uplinks
		r.Body = http.MaxBytesReader(w, r.Body, maxLinkBody)
		var in In
		if err := protocol.Decode(r.Body, r.Header.Get("Content-Encoding"), &in); err != nil {
			h.metrics.framesRefused.Add(1)
			h.log.Warn("sync frame refused", "edge", edge, "path", path, "err", err)
			writeError(w, fmt.Errorf("%w: %v", ErrInvalid, err))
			return
		}
		out, err := f(r.Context(), edge, in)
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				h.log.Warn("sync frame refused", "edge", edge, "path", path, "err", err)
			}
			writeError(w, err)
			return
		}
		body, enc, err := protocol.Encode(out)
		if err != nil {
			writeError(w, err)
			return
		}
		h.setInstancesHeader(w, edge, frameInstance(in))
		w.Header().Set("Content-Type", protocol.ContentType)
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		_, _ = w.Write(body)
	})
}

// owner checks the owner policy's SAS token.
func (h *Hub) owner(r *http.Request) error {
	tok, err := sas.ParseToken(r.Header.Get("Authorization"))
	if err != nil {
		return fmt.Errorf("%w: %v", errUnauthorized, err)
	}
	if err := sas.Verify(tok, h.opts.HostName, [][]byte{h.opts.OwnerKey}, h.opts.Now(), sas.DefaultSkew); err != nil {
		return fmt.Errorf("%w: %v (use the owner connection string the hub wrote to <data>/owner.connection-string)", errUnauthorized, err)
	}
	return nil
}

// edgeAuth checks an edge device's SAS token and returns its id.
func (h *Hub) edgeAuth(r *http.Request) (string, error) {
	tok, err := sas.ParseToken(r.Header.Get("Authorization"))
	if err != nil {
		return "", fmt.Errorf("%w: %v", errUnauthorized, err)
	}
	_, rest, ok := strings.Cut(tok.Resource, "/devices/")
	if !ok || strings.Contains(rest, "/") {
		return "", fmt.Errorf("%w: the link takes an edge device's token (resource <host>/devices/<edge>)", errUnauthorized)
	}
	id, ok, _ := h.ids().Get(rest)
	if !ok || !id.Edge || id.Status != identity.Enabled || id.Auth.Type != identity.AuthSAS {
		return "", fmt.Errorf("%w: %q is not an enabled edge device with SAS keys", errForbidden, rest)
	}
	if err := sas.Verify(tok, sas.ResourceURI(h.opts.HostName, rest, ""), [][]byte{id.Auth.PrimaryKey, id.Auth.SecondaryKey}, h.opts.Now(), sas.DefaultSkew); err != nil {
		return "", fmt.Errorf("%w: %v", errUnauthorized, err)
	}
	return rest, nil
}

var (
	errUnauthorized = errors.New("unauthorized")
	errForbidden    = errors.New("forbidden")
)

func writeError(w http.ResponseWriter, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		err = fmt.Errorf("%w: the body is over %d bytes", protocol.ErrTooLarge, tooLarge.Limit)
	}
	status, code := errorStatus(err)
	if status == 503 {
		w.Header().Set("Retry-After", "1")
	}
	protocol.WriteError(w, status, code, err.Error())
}

// errorStatus is the HTTP status and error code of err.
func errorStatus(err error) (int, string) {
	for _, m := range []struct {
		err    error
		status int
		code   string
	}{
		{errUnauthorized, 401, "Unauthorized"}, {errForbidden, 403, "Forbidden"}, {ErrNotFound, 404, "NotFound"},
		{ErrOffline, 404, "DeviceNotOnline"}, {ErrInvalid, 400, "BadRequest"}, {ErrPrecondition, 412, "PreconditionFailed"},
		{errJobExists, 409, "JobAlreadyExists"}, {ErrConflict, 409, "Conflict"},
		{ErrFull, 429, "QuotaExceeded"}, {ErrTimeout, 504, "GatewayTimeout"}, {protocol.ErrTooLarge, 413, "RequestEntityTooLarge"},
		{ErrNoSpace, 507, "InsufficientStorage"}, {ErrNotLeader, 503, "NotLeader"}, {ErrUnavailable, 503, "ServiceUnavailable"}, {disk.ErrFull, 507, "InsufficientStorage"}, {disk.ErrLow, 507, "InsufficientStorage"},
	} {
		if errors.Is(err, m.err) {
			return m.status, m.code
		}
	}
	return 500, "InternalServerError"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func noContent(w http.ResponseWriter, err error) error {
	if err == nil {
		w.WriteHeader(204)
	}
	return err
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: the body is over %d bytes", protocol.ErrTooLarge, limit)
	}
	return data, nil
}

func (h *Hub) putDevice(w http.ResponseWriter, r *http.Request) error {
	var j identity.JSON
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&j); err != nil {
		return fmt.Errorf("%w: want a device as JSON {\"deviceId\",\"status\",\"capabilities\":{\"iotEdge\":bool},\"parentScopes\":[…]}: %v", ErrInvalid, err)
	}
	if j.DeviceID == "" {
		j.DeviceID = r.PathValue("d")
	}
	if j.DeviceID != r.PathValue("d") {
		return fmt.Errorf("%w: deviceId %q in the body differs from %q in the path", ErrInvalid, j.DeviceID, r.PathValue("d"))
	}
	id, err := h.PutDeviceIf(r.Context(), j, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, h.deviceJSON(id))
	return nil
}

func (h *Hub) putModule(w http.ResponseWriter, r *http.Request) error {
	var j identity.JSON
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&j); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: want a module as JSON {\"deviceId\",\"moduleId\"}: %v", ErrInvalid, err)
	}
	if (j.DeviceID != "" && j.DeviceID != r.PathValue("d")) || (j.ModuleID != "" && j.ModuleID != r.PathValue("m")) {
		return fmt.Errorf("%w: the ids in the body differ from the path", ErrInvalid)
	}
	j.DeviceID, j.ModuleID = r.PathValue("d"), r.PathValue("m")
	id, err := h.PutModuleIf(r.Context(), j, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, h.deviceJSON(id))
	return nil
}

func pathID(r *http.Request) string {
	if m := r.PathValue("m"); m != "" {
		return r.PathValue("d") + "/" + m
	}
	return r.PathValue("d")
}

func (h *Hub) getIdentity(w http.ResponseWriter, r *http.Request) error {
	id, err := h.Identity(pathID(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, h.deviceJSON(id))
	return nil
}

func (h *Hub) writeIdentities(w http.ResponseWriter, ids []identity.Identity) error {
	out := make([]DeviceJSON, 0, len(ids))
	for _, id := range ids {
		out = append(out, h.deviceJSON(id))
	}
	writeJSON(w, 200, out)
	return nil
}

func (h *Hub) getTwin(w http.ResponseWriter, r *http.Request) error {
	doc, err := h.Twin(pathID(r))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(doc)
	return err
}

func (h *Hub) updateTwin(replace bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r, 128<<10)
		if err != nil {
			return err
		}
		ifMatch, err := parseIfMatch(r.Header.Get("If-Match"))
		if err != nil {
			return err
		}
		doc, err := h.UpdateTwinIf(r.Context(), pathID(r), body, replace, ifMatch)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, err = w.Write(doc)
		return err
	}
}

func (h *Hub) applyConfiguration(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, 512<<10)
	if err != nil {
		return err
	}
	mods, err := h.ApplyConfiguration(r.Context(), r.PathValue("d"), body)
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"deviceId": r.PathValue("d"), "modules": mods})
	return nil
}

func (h *Hub) c2d(w http.ResponseWriter, r *http.Request) error {
	m, err := protocol.C2DMessage(r, r.PathValue("d"))
	if err != nil {
		return err
	}
	id, err := h.SendC2D(r.Context(), r.PathValue("d"), m)
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]string{"messageId": id})
	return nil
}

func (h *Hub) invoke(w http.ResponseWriter, r *http.Request) error {
	req, err := protocol.ReadMethodRequest(r.Body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	status, payload, err := h.InvokeMethod(r.Context(), pathID(r), req)
	if err != nil {
		return err
	}
	writeJSON(w, 200, protocol.MethodAnswer(status, payload))
	return nil
}

// readEvents is GET /messages/events?from=N&limit=K&wait=S: events with
// seq >= from (default 1), at most limit (default 1000), waiting up to S
// seconds (at most 60) for the first one.
func (h *Hub) readEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, limit, wait, err := eventQuery(q.Get("from"), q.Get("limit"), q.Get("wait"))
	if err != nil {
		return err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		events := h.events() // a snapshot restore may replace it between two rounds
		ch := events.wait()
		evs, err := events.read(from, limit)
		if err != nil {
			return err
		}
		if len(evs) > 0 || wait == 0 || h.closed.Load() {
			out := make([]EventJSON, 0, len(evs))
			for _, e := range evs {
				out = append(out, e.JSON())
			}
			writeJSON(w, 200, out)
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return nil
		}
	}
}

func eventQuery(fromS, limitS, waitS string) (from uint64, limit int, wait time.Duration, err error) {
	limit = 1000
	if fromS != "" {
		if from, err = strconv.ParseUint(fromS, 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("%w: from=%q is not a sequence number", ErrInvalid, fromS)
		}
	}
	if limitS != "" {
		if limit, err = strconv.Atoi(limitS); err != nil || limit <= 0 || limit > 10000 {
			return 0, 0, 0, fmt.Errorf("%w: limit=%q, want 1–10000", ErrInvalid, limitS)
		}
	}
	if waitS != "" {
		s, err := strconv.ParseFloat(waitS, 64)
		if err != nil || s < 0 || s > 60 {
			return 0, 0, 0, fmt.Errorf("%w: wait=%q, want 0–60 seconds", ErrInvalid, waitS)
		}
		wait = time.Duration(s * float64(time.Second))
	}
	return from, limit, wait, nil
}

func (h *Hub) writeMetrics(w http.ResponseWriter, _ *http.Request) error {
	var sb strings.Builder
	for _, c := range []struct {
		name, help string
		v          int64
	}{
		{"outpost_hub_events_appended_total", "Device-to-cloud events stored in the log.", h.metrics.eventsAppended.Load()},
		{"outpost_hub_events_duplicate_total", "Retransmitted events recognised and not stored again.", h.metrics.eventsDuplicate.Load()},
		{"outpost_hub_events_expired_total", "Events removed from the log after the retention.", h.metrics.eventsExpired.Load()},
		{"outpost_hub_instance_collisions_total", "Events stored although another event with the same edge instance, queue and sequence number but other content was stored: two edges share one instance (a cloned data directory).", h.metrics.instanceCollisions.Load()},
		{"outpost_hub_events_refused_total", "Events refused because their source is outside the sending edge's scope.", h.metrics.eventsRefused.Load()},
		{"outpost_hub_frames_refused_total", "Sync frames refused as malformed or not allowed.", h.metrics.framesRefused.Load()},
		{"outpost_hub_auth_failed_total", "Requests refused for authentication.", h.metrics.authFailed.Load()},
		{"outpost_hub_link_busy_total", "Link requests refused (429) because their edge had too many in flight.", h.metrics.linkBusy.Load()},
		{"outpost_hub_c2d_sent_total", "Cloud-to-device messages accepted.", h.metrics.c2dSent.Load()},
		{"outpost_hub_methods_invoked_total", "Direct method calls handed to edges.", h.metrics.methodsInvoked.Load()},
		{"outpost_hub_twin_merges_total", "Twin deltas merged from edges.", h.metrics.twinMerges.Load()},
		{"outpost_hub_twin_deltas_refused_generation_total", "Twin deltas of one twin refused because they were written for an earlier generation of its identity.", h.metrics.twinsStale.Load()},
		{"outpost_hub_events_refused_path_total", "Events refused because their edge path (nested edges) is not the way from their source up to the sending edge.", h.metrics.eventsBadPath.Load()},
		{"outpost_hub_events_refused_generation_total", "Events refused because they were sent by an earlier generation of their identity (or a deleted one).", h.metrics.eventsStale.Load()},
		{"outpost_hub_twins_removed_total", "Twins removed with their deleted identity.", h.metrics.twinsRemoved.Load()},
		{"outpost_hub_c2d_purged_total", "Cloud-to-device messages removed with their deleted device.", h.metrics.c2dPurged.Load()},
		{"outpost_hub_twin_tombstones_collected_total", "Twin register fields removed by stable GC.", h.metrics.twinGC.Load()},
		{"outpost_hub_images_pushed_total", "Module images pushed (new or already stored).", h.metrics.imagesPushed.Load()},
		{"outpost_hub_image_bytes_pushed_total", "Bytes of the module images pushed.", h.metrics.imageBytes.Load()},
		{"outpost_hub_images_refused_total", "Image requests refused: over the size limit, empty, or a malformed digest.", h.metrics.imagesRefused.Load()},
		{"outpost_hub_images_fetched_total", "Module images served to edges on the link.", h.metrics.imagesFetched.Load()},
		{"outpost_hub_image_copies_total", "Module image copies this node stored from another node of the cluster (sent by the leader, or fetched).", h.metrics.imageCopies.Load()},
		{"outpost_hub_image_pushes_unreplicated_total", "Image pushes refused with 503: too few nodes could store a copy for a majority.", h.metrics.imagesUnreplicated.Load()},
		{"outpost_hub_duplicate_instances_total", "Times two instances of one edge identity were live at once (two gateways with one connection string, or a copied data directory on another machine).", h.metrics.duplicateInstances.Load()},
		{"outpost_hub_refused_no_space_total", "Message frames and image pushes refused with 507: the disk below its reserve.", h.metrics.noSpace.Load()},
	} {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v)
	}
	if m, ok := h.clusterNode().(interface{ Metrics() []Metric }); ok {
		for _, g := range m.Metrics() {
			fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", g.Name, g.Help, g.Name, g.Name, g.Value)
		}
	}
	d := h.DiskStatus()
	fmt.Fprintf(&sb, "# HELP outpost_disk_free_bytes Free space the store can count on: statfs free minus the holes of its mapped files.\n# TYPE outpost_disk_free_bytes gauge\noutpost_disk_free_bytes %d\n", d.Free)
	fmt.Fprintf(&sb, "# HELP outpost_disk_reserve_bytes Free space below which events and images are refused (507).\n# TYPE outpost_disk_reserve_bytes gauge\noutpost_disk_reserve_bytes %d\n", d.Reserve)
	fmt.Fprintf(&sb, "# HELP outpost_disk_ballast_bytes Bytes the ballast file holds (0: released).\n# TYPE outpost_disk_ballast_bytes gauge\noutpost_disk_ballast_bytes %d\n", d.Ballast)
	fmt.Fprintf(&sb, "# HELP outpost_hub_event_log_last_seq Sequence number of the newest event.\n# TYPE outpost_hub_event_log_last_seq gauge\noutpost_hub_event_log_last_seq %d\n", h.LastSeq())
	h.extraMu.Lock()
	for _, write := range h.extraMetrics {
		write(&sb)
	}
	h.extraMu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, err := io.WriteString(w, sb.String())
	return err
}
