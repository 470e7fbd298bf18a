package hubclient

import (
	"encoding/json"
	"fmt"
	"strings"
)

// TwinValues is a service twin (GET /twins/{id} at the hub or at the edge's
// local API) reduced to its values: tags and the desired and reported
// properties without their $-prefixed keys ($version and $metadata are
// each replica's own).
type TwinValues struct {
	Tags, Desired, Reported map[string]any
}

// ParseTwinValues reads a service twin document into its TwinValues; every
// section is non-nil.
func ParseTwinValues(doc []byte) (TwinValues, error) {
	var t struct {
		Tags       map[string]any `json:"tags"`
		Properties struct {
			Desired  map[string]any `json:"desired"`
			Reported map[string]any `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc, &t); err != nil {
		return TwinValues{}, fmt.Errorf("not a twin: %w", err)
	}
	return TwinValues{Tags: StripDollar(t.Tags), Desired: StripDollar(t.Properties.Desired), Reported: StripDollar(t.Properties.Reported)}, nil
}

// StripDollar is a copy of m without its $-prefixed keys (never nil).
func StripDollar(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if !strings.HasPrefix(k, "$") {
			out[k] = v
		}
	}
	return out
}
