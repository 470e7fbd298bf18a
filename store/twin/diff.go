package twin

import "reflect"

// Diff returns the IoT Hub patch that turns old into new: changed and added
// properties with their new values, removed ones as null, objects diffed
// recursively. Diff of equal documents is empty.
func Diff(old, new map[string]any) map[string]any {
	out := map[string]any{}
	for k := range old {
		if _, ok := new[k]; !ok {
			out[k] = nil
		}
	}
	for k, nv := range new {
		ov, had := old[k]
		no, nIsObj := nv.(map[string]any)
		oo, oIsObj := ov.(map[string]any)
		switch {
		case had && nIsObj && oIsObj:
			if d := Diff(oo, no); len(d) > 0 {
				out[k] = d
			}
		case !had || !reflect.DeepEqual(ov, nv):
			out[k] = nv
		}
	}
	return out
}
