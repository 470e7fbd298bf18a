package hubclient

import (
	"reflect"
	"testing"
)

// ParseTwinValues keeps tags and the desired and reported properties
// without their per-replica $-keys, makes absent sections empty, and
// refuses what is not JSON.
func TestParseTwinValues(t *testing.T) {
	doc := `{"deviceId":"d","$version":4,"tags":{"site":"a"},"properties":{` +
		`"desired":{"x":1,"$version":3,"$metadata":{}},"reported":{"$version":2}}}`
	got, err := ParseTwinValues([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := TwinValues{Tags: map[string]any{"site": "a"}, Desired: map[string]any{"x": float64(1)}, Reported: map[string]any{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseTwinValues = %#v, want %#v", got, want)
	}
	if got, err := ParseTwinValues([]byte(`{}`)); err != nil || got.Tags == nil || got.Desired == nil || got.Reported == nil {
		t.Errorf("ParseTwinValues({}) = %#v, %v; want empty, non-nil sections", got, err)
	}
	if _, err := ParseTwinValues([]byte(`not json`)); err == nil {
		t.Error("ParseTwinValues(not json): no error")
	}
}
