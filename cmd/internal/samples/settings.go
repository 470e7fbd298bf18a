package samples

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// SensorSettings are the temperature sensor's settings, taken from the
// module twin's desired properties of the same names.
type SensorSettings struct {
	SendInterval    float64 // seconds between messages
	SendData        bool
	MachineTempMin  float64
	MachineTempMax  float64
	MachineTempStep float64 // added per message
	MaxMessages     int64   // 0 = unlimited; after that many the sensor idles
}

// DefaultSensorSettings are those of Azure's SimulatedTemperatureSensor.
func DefaultSensorSettings() SensorSettings {
	return SensorSettings{SendInterval: 5, SendData: true, MachineTempMin: 21, MachineTempMax: 100, MachineTempStep: 1}
}

// Limits on settings, so that a typo cannot make a module spin.
const (
	minInterval = 0.01
	maxInterval = 86400.0
)

// Apply returns s changed by a desired-properties patch (or the full
// desired section): a null resets a setting to its default, unknown keys
// are ignored. A bad value leaves its setting unchanged and is reported in
// the error (all problems, sorted by key); the good values of the same
// patch still apply.
func (s SensorSettings) Apply(desired map[string]any) (SensorSettings, error) {
	def := DefaultSensorSettings()
	next := s
	var errs []error
	num := func(key string, dst *float64, dflt float64, ok func(float64) string) {
		v, present := desired[key]
		if !present {
			return
		}
		if v == nil {
			*dst = dflt
			return
		}
		f, isNum := v.(float64)
		if !isNum || math.IsNaN(f) || math.IsInf(f, 0) {
			errs = append(errs, fmt.Errorf("%s: %s is not a number", key, show(v)))
			return
		}
		if why := ok(f); why != "" {
			errs = append(errs, fmt.Errorf("%s: %v %s", key, f, why))
			return
		}
		*dst = f
	}
	noCheck := func(float64) string { return "" }
	num("SendInterval", &next.SendInterval, def.SendInterval, func(f float64) string {
		if f < minInterval || f > maxInterval {
			return fmt.Sprintf("is out of range (%g to %g seconds)", minInterval, maxInterval)
		}
		return ""
	})
	num("MachineTempMin", &next.MachineTempMin, def.MachineTempMin, noCheck)
	num("MachineTempMax", &next.MachineTempMax, def.MachineTempMax, noCheck)
	num("MachineTempStep", &next.MachineTempStep, def.MachineTempStep, func(f float64) string {
		if f <= 0 {
			return "must be greater than 0"
		}
		return ""
	})
	maxMsgs := float64(next.MaxMessages)
	num("MaxMessages", &maxMsgs, 0, func(f float64) string {
		if f < 0 || f != math.Trunc(f) || f > 1<<53 {
			return "must be a whole number, 0 or more (0 = unlimited)"
		}
		return ""
	})
	next.MaxMessages = int64(maxMsgs)
	if v, present := desired["SendData"]; present {
		switch b := v.(type) {
		case nil:
			next.SendData = def.SendData
		case bool:
			next.SendData = b
		default:
			errs = append(errs, fmt.Errorf("SendData: %s is not true or false", show(v)))
		}
	}
	if next.MachineTempMin >= next.MachineTempMax {
		errs = append(errs, fmt.Errorf("MachineTempMin %v must be below MachineTempMax %v; both kept at %v and %v",
			next.MachineTempMin, next.MachineTempMax, s.MachineTempMin, s.MachineTempMax))
		next.MachineTempMin, next.MachineTempMax = s.MachineTempMin, s.MachineTempMax
	}
	return next, joinSorted(errs)
}

// Reported is how the settings appear in the reported properties.
func (s SensorSettings) Reported() map[string]any {
	return map[string]any{
		"SendInterval": s.SendInterval, "SendData": s.SendData, "MachineTempMin": s.MachineTempMin,
		"MachineTempMax": s.MachineTempMax, "MachineTempStep": s.MachineTempStep, "MaxMessages": s.MaxMessages,
	}
}

// FilterSettings are the filter module's settings (module twin, desired).
type FilterSettings struct {
	TemperatureThreshold float64 // readings above it pass
}

// DefaultFilterSettings: 25 degrees, as in Azure's filter module tutorial.
func DefaultFilterSettings() FilterSettings { return FilterSettings{TemperatureThreshold: 25} }

// Apply returns s changed by a desired-properties patch, with the same
// rules as SensorSettings.Apply.
func (s FilterSettings) Apply(desired map[string]any) (FilterSettings, error) {
	v, present := desired["TemperatureThreshold"]
	switch f, isNum := v.(float64); {
	case !present:
	case v == nil:
		s.TemperatureThreshold = DefaultFilterSettings().TemperatureThreshold
	case !isNum || math.IsNaN(f) || math.IsInf(f, 0):
		return s, fmt.Errorf("TemperatureThreshold: %s is not a number", show(v))
	default:
		s.TemperatureThreshold = f
	}
	return s, nil
}

// show quotes a desired value for an error message, briefly.
func show(v any) string {
	s := fmt.Sprintf("%#v", v)
	if str, ok := v.(string); ok {
		s = fmt.Sprintf("%q", str)
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func joinSorted(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	sort.Strings(msgs)
	return errors.New(strings.Join(msgs, "; "))
}
