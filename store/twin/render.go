package twin

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
)

// View is a twin as IoT Hub shows it.
type View struct {
	ID       string
	Tags     map[string]any
	Desired  map[string]any // on an edge: the effective desired (overrides applied)
	Reported map[string]any

	TagsVersion, DesiredVersion, ReportedVersion int64

	lastUpdated map[crdt.Section]map[string]crdt.HLC
}

// Get returns the twin id, or ErrNotFound if this replica has never had it.
func (s *Store) Get(id string) (*View, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.loadExisting(id)
	if err != nil {
		return nil, err
	}
	return s.view(t), nil
}

// loadExisting is load for a twin that must exist (ErrNotFound otherwise);
// the caller holds s.mu.
func (s *Store) loadExisting(id string) (*twin, error) {
	t, ok, err := s.load(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("twin %q: %w", id, ErrNotFound)
	}
	return t, nil
}

func (s *Store) view(t *twin) *View {
	v := &View{
		ID: t.id, Tags: t.doc.Visible(crdt.Tags), Reported: t.doc.Visible(crdt.Reported),
		TagsVersion: t.meta.Versions[crdt.Tags], DesiredVersion: t.meta.Versions[crdt.Desired],
		ReportedVersion: t.meta.Versions[crdt.Reported],
		lastUpdated: map[crdt.Section]map[string]crdt.HLC{
			crdt.Desired:  t.doc.LastUpdated(crdt.Desired),
			crdt.Reported: t.doc.LastUpdated(crdt.Reported),
		},
	}
	if s.opts.Role == Edge {
		v.Desired = t.doc.Effective()
		v.DesiredVersion = max(t.meta.CloudDesired, 1)
	} else {
		v.Desired = t.doc.Visible(crdt.Desired)
	}
	return v
}

// DeviceJSON is the body of an MQTT twin GET response:
// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
func (v *View) DeviceJSON() []byte {
	b, _ := json.Marshal(map[string]any{
		"desired":  withVersion(v.Desired, v.DesiredVersion),
		"reported": withVersion(v.Reported, v.ReportedVersion),
	})
	return b
}

// ServiceJSON is the twin as the service API shows it, with $metadata.
func (v *View) ServiceJSON() []byte {
	b, _ := json.Marshal(v.ServiceDoc())
	return b
}

// Version is the twin's version as IoT Hub counts it: 1 for a new twin,
// one more for each change of its tags, desired or reported properties.
func (v *View) Version() int64 {
	return v.TagsVersion + v.DesiredVersion + v.ReportedVersion - 2
}

// ServiceDoc is ServiceJSON before encoding: deviceId, moduleId, tags and
// properties, for callers that add fields (the hub adds its registry's).
func (v *View) ServiceDoc() map[string]any {
	parts := strings.SplitN(v.ID, "/", 2)
	out := map[string]any{
		"deviceId": parts[0],
		"tags":     v.Tags,
		"properties": map[string]any{
			"desired":  v.section(crdt.Desired, v.Desired, v.DesiredVersion),
			"reported": v.section(crdt.Reported, v.Reported, v.ReportedVersion),
		},
	}
	if len(parts) == 2 {
		out["moduleId"] = parts[1]
	}
	return out
}

func withVersion(doc map[string]any, version int64) map[string]any {
	out := make(map[string]any, len(doc)+1)
	for k, x := range doc {
		out[k] = x
	}
	out["$version"] = version
	return out
}

func (v *View) section(sec crdt.Section, doc map[string]any, version int64) map[string]any {
	out := withVersion(doc, version)
	out["$metadata"] = metadata(doc, nil, v.lastUpdated[sec])
	return out
}

// metadata builds IoT Hub's $metadata tree: $lastUpdated at every object
// and leaf that was ever written. A section never written has none: its
// zero time would read as 1970-01-01.
func metadata(node any, path []string, lu map[string]crdt.HLC) map[string]any {
	m := map[string]any{}
	if h := lu[strings.Join(path, ".")]; h.Wall != 0 {
		m["$lastUpdated"] = isoTime(h)
	}
	obj, ok := node.(map[string]any)
	if !ok {
		return m
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m[k] = metadata(obj[k], append(path[:len(path):len(path)], k), lu)
	}
	return m
}

func isoTime(h crdt.HLC) string {
	return time.UnixMilli(h.Wall).UTC().Format("2006-01-02T15:04:05.000Z")
}
