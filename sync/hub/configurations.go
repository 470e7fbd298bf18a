package hub

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/sync/hub/query"
)

// Automatic deployments at scale (IoT Edge's "configurations"): a
// deployment's content goes to every edge device its targetCondition
// matches. Of the full ("base") deployments that target an edge the one
// with the highest priority wins (the newest on a tie); layered
// deployments, whose content sets paths below properties.desired
// ("properties.desired.modules.sensor"), are merged on top of it in
// priority order. The hub's deployer re-evaluates the fleet when a
// deployment, an identity or a twin changes and applies the result as a
// device deployment (applyConfiguration) when it differs from what the
// edge last got from deployments.

var (
	configPrefix   = []byte{kv.PrefixMeta, 'h', 'c'}
	deployedPrefix = []byte{kv.PrefixMeta, 'h', 'a'}
)

func configKey(id string) []byte     { return append(slices.Clip(configPrefix), id...) }
func deployedKey(edge string) []byte { return append(slices.Clip(deployedPrefix), edge...) }

// The deployer's pace: a pass at most every deployDebounce while writes
// come, and every deployInterval regardless.
const (
	deployDebounce = 500 * time.Millisecond
	deployInterval = 30 * time.Second
)

// maxConfigurations bounds the deployments a hub holds (IoT Hub's limit
// is 100 per hub on its standard tiers).
const maxConfigurations = 100

// configIDPattern is IoT Hub's rule for configuration ids.
var configIDPattern = regexp.MustCompile(`^[a-z0-9\-:+%_#*?!(),=@;$']{1,128}$`)

// Configuration is a deployment as the service API shows it.
type Configuration struct {
	ID                 string               `json:"id"`
	SchemaVersion      string               `json:"schemaVersion"`
	Labels             map[string]string    `json:"labels"`
	Content            ConfigurationContent `json:"content"`
	TargetCondition    string               `json:"targetCondition"`
	CreatedTimeUtc     string               `json:"createdTimeUtc"`
	LastUpdatedTimeUtc string               `json:"lastUpdatedTimeUtc"`
	Priority           int                  `json:"priority"`
	SystemMetrics      ConfigurationMetrics `json:"systemMetrics"`
	Metrics            ConfigurationMetrics `json:"metrics"`
	ETag               string               `json:"etag"`
}

// ConfigurationContent is what a deployment sets: per module, its desired
// properties ("properties.desired") or paths below them (layered).
type ConfigurationContent struct {
	ModulesContent map[string]map[string]json.RawMessage `json:"modulesContent"`
	DeviceContent  map[string]json.RawMessage            `json:"deviceContent,omitempty"`
	ModuleContent  map[string]json.RawMessage            `json:"moduleContent,omitempty"`
}

// ConfigurationMetrics are named queries and their counts.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// configRecord is a deployment in the state machine.
type configRecord struct {
	ID              string            `cbor:"1,keyasint"`
	SchemaVersion   string            `cbor:"2,keyasint,omitempty"`
	Labels          map[string]string `cbor:"3,keyasint,omitempty"`
	Content         []byte            `cbor:"4,keyasint"` // modulesContent, JSON
	TargetCondition string            `cbor:"5,keyasint,omitempty"`
	Priority        int64             `cbor:"6,keyasint,omitempty"`
	Metrics         map[string]string `cbor:"7,keyasint,omitempty"` // name → query
	Version         int64             `cbor:"8,keyasint,omitempty"`
	Created         int64             `cbor:"9,keyasint,omitempty"` // unix ms
	Updated         int64             `cbor:"10,keyasint,omitempty"`
}

// putConfiguration creates or updates a deployment. With IfMatch (not 0)
// the write is refused unless the deployment is at that version; its
// content never changes once created (as on IoT Hub).
type putConfiguration struct {
	Config  configRecord `cbor:"1,keyasint"`
	IfMatch int64        `cbor:"2,keyasint,omitempty"`
}

// deleteConfiguration removes a deployment; what it deployed stays on the
// edges until another deployment targets them.
type deleteConfiguration struct {
	ID string `cbor:"1,keyasint"`
}

func (f *FSM) putConfigurationLocked(ctx context.Context, c putConfiguration) error {
	old, exists, err := f.configuration(c.Config.ID)
	if err != nil {
		return err
	}
	if c.IfMatch != 0 && (!exists || old.Version != c.IfMatch) {
		return fmt.Errorf("%w: deployment %q is at etag %s, the write was made against %s: read it again and retry",
			ErrPrecondition, c.Config.ID, twinETag(old.Version), twinETag(c.IfMatch))
	}
	next := c.Config
	next.Created, next.Updated, next.Version = f.at.Load(), f.at.Load(), 1
	if exists {
		if !bytes.Equal(old.Content, next.Content) {
			return fmt.Errorf("%w: the content of deployment %q cannot change once created (as on IoT Hub): create a new deployment with a higher priority, then delete this one", ErrInvalid, c.Config.ID)
		}
		next.Created, next.Version = old.Created, old.Version+1
	} else if n, err := f.countPrefix(configPrefix); err != nil {
		return err
	} else if n >= maxConfigurations {
		return fmt.Errorf("%w: the hub holds %d deployments, its limit: delete one first", ErrFull, n)
	}
	v, err := kv.Marshal(next)
	if err != nil {
		return err
	}
	return f.db.Commit(ctx, kv.Set(configKey(next.ID), v))
}

func (f *FSM) deleteConfigurationLocked(ctx context.Context, c deleteConfiguration) error {
	if _, ok, err := f.configuration(c.ID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: no deployment %q", ErrNotFound, c.ID)
	}
	return f.db.Commit(ctx, kv.Del(configKey(c.ID)))
}

func (f *FSM) configuration(id string) (configRecord, bool, error) {
	var r configRecord
	found, err := f.get(configKey(id), &r)
	return r, found, err
}

// configurations lists the deployments by id.
func (f *FSM) configurations() ([]configRecord, error) {
	var out []configRecord
	err := eachRecord(f, configPrefix, func(_ string, r configRecord) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func (f *FSM) countPrefix(prefix []byte) (int, error) {
	n := 0
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// deployed is what deployments an edge last got ("id@version", base
// first), nil when none.
func (f *FSM) deployed(edge string) ([]string, error) {
	var out []string
	_, err := f.get(deployedKey(edge), &out)
	return out, err
}

// PutConfiguration is PUT /configurations/{id}: it validates the
// deployment and stores it; ifMatch is the If-Match header ("" or "*":
// any version).
func (h *Hub) PutConfiguration(ctx context.Context, id string, body []byte, ifMatch string) (Configuration, error) {
	var c Configuration
	if err := json.Unmarshal(body, &c); err != nil {
		return Configuration{}, fmt.Errorf("%w: want a deployment {\"id\",\"content\":{\"modulesContent\":{…}},\"targetCondition\",\"priority\"}: %v", ErrInvalid, err)
	}
	if c.ID == "" {
		c.ID = id
	}
	rec, err := validConfiguration(id, c)
	if err != nil {
		return Configuration{}, err
	}
	version, err := parseIfMatch(ifMatch)
	if err != nil {
		return Configuration{}, err
	}
	if err := h.apply(ctx, putConfiguration{Config: rec, IfMatch: version}); err != nil {
		return Configuration{}, err
	}
	return h.Configuration(id)
}

// validConfiguration checks a deployment's fields and makes its record.
func validConfiguration(id string, c Configuration) (configRecord, error) {
	switch {
	case c.ID != id:
		return configRecord{}, fmt.Errorf("%w: id %q in the body differs from %q in the path", ErrInvalid, c.ID, id)
	case !configIDPattern.MatchString(id):
		return configRecord{}, fmt.Errorf("%w: deployment id %q: want 1–128 of a-z 0-9 - : + %% _ # * ? ! ( ) , = @ ; $ '", ErrInvalid, id)
	case len(c.Content.DeviceContent) > 0 || len(c.Content.ModuleContent) > 0:
		return configRecord{}, fmt.Errorf("%w: deployment %q: deviceContent and moduleContent (IoT Hub's automatic device management) are not served; Outpost deploys modulesContent to edge devices", ErrInvalid, id)
	case len(c.Content.ModulesContent) == 0:
		return configRecord{}, fmt.Errorf("%w: deployment %q has no content.modulesContent", ErrInvalid, id)
	case c.Priority < 0:
		return configRecord{}, fmt.Errorf("%w: deployment %q: priority %d, want 0 or more", ErrInvalid, id, c.Priority)
	}
	if _, err := query.ParseCondition(c.TargetCondition); err != nil {
		return configRecord{}, fmt.Errorf("%w: targetCondition: %v", ErrInvalid, err)
	}
	for name, q := range c.Metrics.Queries {
		if _, err := query.Parse(q); err != nil {
			return configRecord{}, fmt.Errorf("%w: metrics query %q: %v", ErrInvalid, name, err)
		}
	}
	if _, _, err := splitContent(c.Content.ModulesContent); err != nil {
		return configRecord{}, fmt.Errorf("%w: deployment %q: %v", ErrInvalid, id, err)
	}
	content, err := json.Marshal(c.Content.ModulesContent) // map keys sorted: one form for one content
	if err != nil {
		return configRecord{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return configRecord{ID: id, SchemaVersion: cmp.Or(c.SchemaVersion, "1.0"), Labels: c.Labels, Content: content,
		TargetCondition: c.TargetCondition, Priority: int64(c.Priority), Metrics: c.Metrics.Queries}, nil
}

// splitContent reads a deployment's modulesContent: for each module its
// full desired properties, or (layered) the paths below them it sets.
// base reports whether it sets $edgeAgent's and $edgeHub's whole desired
// properties (a base deployment) rather than paths (a layered one).
func splitContent(mc map[string]map[string]json.RawMessage) (full map[string]json.RawMessage, paths map[string]map[string]json.RawMessage, err error) {
	full, paths = map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}
	for mod, content := range mc {
		if _, _, err := identity.SplitID("d/" + mod); err != nil {
			return nil, nil, fmt.Errorf("module name %q: %v", mod, err)
		}
		for k, v := range content {
			switch {
			case k == "properties.desired":
				if !isObject(v) {
					return nil, nil, fmt.Errorf("modulesContent.%s.properties.desired is not a JSON object", mod)
				}
				full[mod] = v
			case strings.HasPrefix(k, "properties.desired.") && len(k) > len("properties.desired."):
				for _, seg := range strings.Split(strings.TrimPrefix(k, "properties.desired."), ".") {
					if seg == "" {
						return nil, nil, fmt.Errorf("modulesContent.%s: %q has an empty path segment", mod, k)
					}
				}
				if paths[mod] == nil {
					paths[mod] = map[string]json.RawMessage{}
				}
				paths[mod][k] = v
			default:
				return nil, nil, fmt.Errorf("modulesContent.%s: %q: want \"properties.desired\" (a base deployment) or \"properties.desired.<path>\" (a layered one)", mod, k)
			}
		}
		if _, ok := full[mod]; ok && len(paths[mod]) > 0 {
			return nil, nil, fmt.Errorf("modulesContent.%s sets both properties.desired and paths below it", mod)
		}
	}
	_, agent := full["$edgeAgent"]
	_, hub := full["$edgeHub"]
	if (agent || hub) && !(agent && hub) {
		return nil, nil, fmt.Errorf("a base deployment sets both $edgeAgent's and $edgeHub's properties.desired (a layered one sets paths below them)")
	}
	return full, paths, nil
}

func isObject(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '{'
}

// isBase reports whether a deployment is a base (full) one.
func (r configRecord) isBase() bool {
	var mc map[string]map[string]json.RawMessage
	if json.Unmarshal(r.Content, &mc) != nil {
		return false
	}
	_, ok := mc["$edgeAgent"]["properties.desired"]
	return ok
}

// Configuration returns a deployment with its metrics, counted now.
func (h *Hub) Configuration(id string) (Configuration, error) {
	r, ok, err := h.fsm.configuration(id)
	if err != nil {
		return Configuration{}, err
	}
	if !ok {
		return Configuration{}, fmt.Errorf("%w: no deployment %q", ErrNotFound, id)
	}
	return h.configurationJSON(r, h.edgeDocs(nil)), nil
}

// Configurations lists the deployments with their metrics.
func (h *Hub) Configurations() ([]Configuration, error) {
	rs, err := h.fsm.configurations()
	if err != nil {
		return nil, err
	}
	docs := h.edgeDocs(nil)
	out := make([]Configuration, 0, len(rs))
	for _, r := range rs {
		out = append(out, h.configurationJSON(r, docs))
	}
	return out, nil
}

// DeleteConfiguration removes a deployment.
func (h *Hub) DeleteConfiguration(ctx context.Context, id string) error {
	return h.apply(ctx, deleteConfiguration{ID: id})
}

// edgeDoc is an edge device's twin document and what deployments it last
// got.
type edgeDoc struct {
	id      string
	doc     map[string]any
	applied []string
}

// edgeDocs reads every edge device's twin and applied deployments (or,
// only not nil, those of the edges it names), by id.
func (h *Hub) edgeDocs(only map[string]bool) []edgeDoc {
	var out []edgeDoc
	var ids []identity.Identity
	if only == nil {
		ids = h.Devices()
	} else {
		for d := range only {
			if id, ok, _ := h.ids().Get(d); ok {
				ids = append(ids, id)
			}
		}
		slices.SortFunc(ids, func(a, b identity.Identity) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	}
	for _, id := range ids {
		if !id.Edge || id.ModuleID != "" {
			continue
		}
		v, err := h.twins().Get(id.ID())
		if err != nil {
			continue
		}
		applied, _ := h.fsm.deployed(id.DeviceID)
		out = append(out, edgeDoc{id: id.DeviceID, doc: h.twinDoc(id, v), applied: applied})
	}
	return out
}

// configurationJSON renders a deployment with its metrics: the system
// metrics IoT Hub shows (targeted, applied, reported successful and
// failed: $edgeAgent's lastDesiredStatus) and the counts of its own
// metric queries.
func (h *Hub) configurationJSON(r configRecord, edges []edgeDoc) Configuration {
	var mc map[string]map[string]json.RawMessage
	_ = json.Unmarshal(r.Content, &mc)
	cond, _ := query.ParseCondition(r.TargetCondition)
	c := Configuration{ID: r.ID, SchemaVersion: r.SchemaVersion, Labels: r.Labels, Content: ConfigurationContent{ModulesContent: mc},
		TargetCondition: r.TargetCondition, CreatedTimeUtc: isoMillis(r.Created), LastUpdatedTimeUtc: isoMillis(r.Updated),
		Priority: int(r.Priority), ETag: twinETag(r.Version),
		SystemMetrics: ConfigurationMetrics{Results: map[string]int64{}, Queries: map[string]string{
			"targetedCount":           "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND (" + cmp.Or(r.TargetCondition, "false") + ")",
			"appliedCount":            "edges whose deployment includes " + r.ID,
			"reportedSuccessfulCount": "applied, and $edgeAgent reports lastDesiredStatus.code 200",
			"reportedFailedCount":     "applied, and $edgeAgent reports another lastDesiredStatus.code",
		}},
		Metrics: ConfigurationMetrics{Results: map[string]int64{}, Queries: map[string]string{}},
	}
	var targeted, applied, ok, failed int64
	for _, e := range edges {
		if r.TargetCondition != "" && cond.Match(e.doc) {
			targeted++
		}
		if !slices.ContainsFunc(e.applied, func(s string) bool { return deployedID(s) == r.ID }) {
			continue
		}
		applied++
		switch code := h.agentStatus(e.id); {
		case code == 200:
			ok++
		case code != 0:
			failed++
		}
	}
	c.SystemMetrics.Results["targetedCount"] = targeted
	c.SystemMetrics.Results["appliedCount"] = applied
	c.SystemMetrics.Results["reportedSuccessfulCount"] = ok
	c.SystemMetrics.Results["reportedFailedCount"] = failed
	for name, q := range r.Metrics {
		c.Metrics.Queries[name] = q
		c.Metrics.Results[name] = h.countQuery(q)
	}
	return c
}

// deployedID is the deployment id of a deployed entry "id@version" (an id
// may hold '@' itself).
func deployedID(entry string) string {
	if i := strings.LastIndexByte(entry, '@'); i >= 0 {
		return entry[:i]
	}
	return entry
}

// agentStatus is the lastDesiredStatus.code $edgeAgent reports (0: none).
func (h *Hub) agentStatus(edge string) int {
	v, err := h.twins().Get(edge + "/$edgeAgent")
	if err != nil {
		return 0
	}
	st, _ := v.Reported["lastDesiredStatus"].(map[string]any)
	switch code := st["code"].(type) {
	case float64:
		return int(code)
	case int64:
		return int(code)
	case json.Number:
		n, _ := code.Int64()
		return int(n)
	}
	return 0
}

// countQuery counts the rows of a metric query (all its pages).
func (h *Hub) countQuery(text string) int64 {
	var n int64
	page := query.Page{Max: query.MaxPageSize}
	for {
		res, _, err := h.Query(text, page)
		if err != nil {
			return 0
		}
		n += int64(len(res.Items))
		if res.Continuation == "" {
			return n
		}
		page.Continuation = res.Continuation
	}
}

// deployment is what the deployments targeting one edge make of its
// modules' desired properties, and their "id@version" list (base first).
type deployment struct {
	desired map[string]json.RawMessage
	configs []string
}

// deploymentFor computes an edge's deployment from the deployments that
// target it (nil when no base deployment does: layered ones need one).
func deploymentFor(doc map[string]any, configs []configRecord) (*deployment, error) {
	var base *configRecord
	var layers []configRecord
	for i := range configs {
		r := configs[i]
		if r.TargetCondition == "" {
			continue
		}
		cond, err := query.ParseCondition(r.TargetCondition)
		if err != nil || !cond.Match(doc) {
			continue
		}
		if r.isBase() {
			if base == nil || r.Priority > base.Priority || (r.Priority == base.Priority && (r.Created > base.Created || (r.Created == base.Created && r.ID > base.ID))) {
				base = &configs[i]
			}
		} else {
			layers = append(layers, r)
		}
	}
	if base == nil {
		return nil, nil
	}
	sort.SliceStable(layers, func(i, j int) bool {
		a, b := layers[i], layers[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if a.Created != b.Created {
			return a.Created < b.Created
		}
		return a.ID < b.ID
	})
	d := &deployment{configs: []string{fmt.Sprintf("%s@%d", base.ID, base.Version)}}
	docs := map[string]map[string]any{}
	for _, r := range append([]configRecord{*base}, layers...) {
		var mc map[string]map[string]json.RawMessage
		if err := json.Unmarshal(r.Content, &mc); err != nil {
			return nil, err
		}
		full, paths, err := splitContent(mc)
		if err != nil {
			return nil, err
		}
		for mod, v := range full {
			var m map[string]any
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, err
			}
			docs[mod] = m
		}
		for mod, ps := range paths {
			if docs[mod] == nil {
				docs[mod] = map[string]any{}
			}
			keys := make([]string, 0, len(ps))
			for k := range ps {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				var v any
				if err := json.Unmarshal(ps[k], &v); err != nil {
					return nil, err
				}
				setPath(docs[mod], strings.Split(strings.TrimPrefix(k, "properties.desired."), "."), v)
			}
		}
		if r.ID != base.ID {
			d.configs = append(d.configs, fmt.Sprintf("%s@%d", r.ID, r.Version))
		}
	}
	d.desired = map[string]json.RawMessage{}
	for mod, m := range docs {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		d.desired[mod] = b
	}
	return d, nil
}

// setPath sets doc[path[0]]…[path[n-1]] = v, making objects on the way
// (and replacing what is not one).
func setPath(doc map[string]any, path []string, v any) {
	for _, seg := range path[:len(path)-1] {
		next, ok := doc[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			doc[seg] = next
		}
		doc = next
	}
	doc[path[len(path)-1]] = v
}

// deployAll applies the deployments to every edge (or, only not nil, to
// those it names) whose result differs from what it last got; only the
// leader proposes.
func (h *Hub) deployAll(ctx context.Context, only map[string]bool) {
	if !h.leads() {
		return
	}
	configs, err := h.fsm.configurations()
	if err != nil {
		h.log.Error("deployments", "err", err)
		return
	}
	if len(configs) == 0 {
		if n, err := h.fsm.countPrefix(deployedPrefix); err != nil || n == 0 {
			return // nothing deployed at scale, nothing to deploy
		}
	}
	for _, e := range h.edgeDocs(only) {
		d, err := deploymentFor(e.doc, configs)
		if err != nil {
			h.log.Error("deployment of an edge", "edge", e.id, "err", err)
			continue
		}
		var want []string
		if d != nil {
			want = d.configs
		}
		if slices.Equal(want, e.applied) {
			continue
		}
		if err := h.applyDeployment(ctx, e.id, d); err != nil {
			if ctx.Err() == nil {
				h.log.Warn("deployment not applied", "edge", e.id, "configurations", want, "err", err)
			}
			continue
		}
		h.log.Info("deployment applied", "edge", e.id, "configurations", want)
	}
}

// applyDeployment proposes an edge's deployment (or, d nil, that no
// deployment targets it any more: its modules keep what they have).
func (h *Hub) applyDeployment(ctx context.Context, edge string, d *deployment) error {
	if d == nil {
		return h.apply(ctx, applyConfiguration{Device: edge, AtScale: true})
	}
	c, err := h.configurationCommand(edge, d.desired)
	if err != nil {
		return err
	}
	c.AtScale, c.Configs = true, d.configs
	return h.apply(ctx, c)
}

// deployer runs deployAll when kicked (a deployment, an identity or a
// twin changed) and every deployInterval (a new leader, a missed kick).
func (h *Hub) deployer() {
	defer h.sweeper.Done()
	t := time.NewTicker(deployInterval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-h.deployKick:
		case <-t.C:
			h.kickDeploy(true)
		}
		dirty, all := h.takeDirty()
		if !all {
			if len(dirty) == 0 {
				continue
			}
		} else {
			dirty = nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-h.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		h.deployAll(ctx, dirty)
		cancel()
		// Coalesce the kicks of a burst of writes.
		select {
		case <-h.done:
			return
		case <-time.After(deployDebounce):
		}
	}
}

// kickDeployFor asks the deployer for a pass over the edges a command
// may have changed the targeting of (without blocking): every edge after
// a change of the deployments, else the edge devices whose identity or own
// twin it wrote (a module's or a leaf's twin targets nothing).
func (h *Hub) kickDeployFor(cmd any) {
	ids, all := deployTargets(cmd)
	if all {
		h.kickDeploy(true)
		return
	}
	if len(ids) == 0 {
		return // most commands (events, acks, presence) touch no targeting: no lock on their path
	}
	h.deployMu.Lock()
	n := len(h.deployDirty)
	for _, id := range ids {
		h.deployDirty[id] = true
	}
	more := len(h.deployDirty) > n
	h.deployMu.Unlock()
	if more {
		h.kickDeploy(false)
	}
}

// deployTargets names the devices (not modules) whose targeting a command
// may have changed, or all for a change of the deployments themselves.
func deployTargets(cmd any) (devices []string, all bool) {
	var ids []string
	switch c := cmd.(type) {
	case putConfiguration, deleteConfiguration:
		return nil, true
	case putIdentities:
		for _, id := range c.IDs {
			ids = append(ids, id.ID())
		}
	case deleteIdentities:
		ids = c.IDs
	case writeTwin:
		ids = []string{c.ID}
	case mergeTwins:
		for _, t := range c.Batch.Twins {
			ids = append(ids, t.ID)
		}
	case applyConfiguration:
		if !c.AtScale {
			ids = []string{c.Device} // a device deployment: the deployer puts back what targets it
		}
	}
	for _, id := range ids {
		if !strings.Contains(id, "/") {
			devices = append(devices, id)
		}
	}
	return devices, false
}

// kickDeploy asks the deployer for a pass (all: over every edge).
func (h *Hub) kickDeploy(all bool) {
	if all {
		h.deployMu.Lock()
		h.deployAllNext = true
		h.deployMu.Unlock()
	}
	select {
	case h.deployKick <- struct{}{}:
	default:
	}
}

// takeDirty returns the edges to re-evaluate (nil and true: all).
func (h *Hub) takeDirty() (map[string]bool, bool) {
	h.deployMu.Lock()
	defer h.deployMu.Unlock()
	dirty, all := h.deployDirty, h.deployAllNext
	h.deployDirty, h.deployAllNext = map[string]bool{}, false
	return dirty, all
}

// putConfigurationAPI is PUT /configurations/{id}.
func (h *Hub) putConfigurationAPI(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, 512<<10)
	if err != nil {
		return err
	}
	c, err := h.PutConfiguration(r.Context(), r.PathValue("id"), body, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, c)
	return nil
}
