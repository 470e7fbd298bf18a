package demo

import (
	"maps"
	"reflect"
	"slices"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

// receivedKey is the reported property in which a simulated device
// reports back the desired properties it received.
const receivedKey = "received"

// TwinState compares one device's twin at the hub and at the edge.
type TwinState struct {
	Device string
	// Pending lists what differs between the two, with the way it has
	// to go: "desired.setpoint hub→edge", "reported.note edge→hub".
	Pending []string
	// Followed: the device reported back (reported.received) the desired
	// properties the hub holds.
	Followed bool
	Err      string // a side could not be read
}

// Converged: both sides hold the same twin, and the device follows it.
func (t TwinState) Converged() bool { return t.Err == "" && len(t.Pending) == 0 && t.Followed }

// compareTwins compares the service twins of device at the hub and at the
// edge (as GET /twins/{d} answers on each).
func compareTwins(device string, hubDoc, edgeDoc []byte) TwinState {
	st := TwinState{Device: device}
	hub, err := hubclient.ParseTwinValues(hubDoc)
	if err != nil {
		st.Err = "hub: " + err.Error()
		return st
	}
	edge, err := hubclient.ParseTwinValues(edgeDoc)
	if err != nil {
		st.Err = "edge: " + err.Error()
		return st
	}
	st.Pending = append(st.Pending, diff("tags", hub.Tags, edge.Tags, "hub→edge")...)
	st.Pending = append(st.Pending, diff("desired", hub.Desired, edge.Desired, "hub→edge")...)
	st.Pending = append(st.Pending, diff("reported", edge.Reported, hub.Reported, "edge→hub")...)
	received, _ := hub.Reported[receivedKey].(map[string]any)
	st.Followed = reflect.DeepEqual(hubclient.StripDollar(received), hub.Desired)
	return st
}

// diff names the keys of section whose values differ between from (the
// side that writes the section) and to.
func diff(section string, from, to map[string]any, way string) []string {
	keys := map[string]bool{}
	for k := range from {
		keys[k] = true
	}
	for k := range to {
		keys[k] = true
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		a, inA := from[k]
		b, inB := to[k]
		if inA != inB || !reflect.DeepEqual(a, b) {
			out = append(out, section+"."+k+" "+way)
		}
	}
	return out
}
