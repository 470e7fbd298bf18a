package samples_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/samples"
)

func TestSensorSettingsApply(t *testing.T) {
	def := samples.DefaultSensorSettings()
	if def != (samples.SensorSettings{SendInterval: 5, SendData: true, MachineTempMin: 21, MachineTempMax: 100, MachineTempStep: 1}) {
		t.Fatalf("defaults %+v", def)
	}
	custom := def
	custom.SendInterval, custom.MaxMessages, custom.SendData = 0.2, 10, false
	for _, tc := range []struct {
		name    string
		from    samples.SensorSettings
		desired string
		want    func(*samples.SensorSettings)
		errHas  []string
	}{
		{name: "empty", from: def, desired: `{}`},
		{name: "unknown keys ignored", from: def, desired: `{"other":1,"SendInterval2":"x"}`},
		{name: "all set", from: def,
			desired: `{"SendInterval":0.2,"SendData":false,"MachineTempMin":10,"MachineTempMax":20,"MachineTempStep":0.5,"MaxMessages":7}`,
			want: func(s *samples.SensorSettings) {
				*s = samples.SensorSettings{SendInterval: 0.2, MachineTempMin: 10, MachineTempMax: 20, MachineTempStep: 0.5, MaxMessages: 7}
			}},
		{name: "null resets to default", from: custom, desired: `{"SendInterval":null,"MaxMessages":null,"SendData":null}`,
			want: func(s *samples.SensorSettings) { *s = samples.DefaultSensorSettings() }},
		{name: "bad values keep previous, good ones apply", from: custom,
			desired: `{"SendInterval":"fast","SendData":"yes","MachineTempStep":0,"MaxMessages":1.5,"MachineTempMax":90}`,
			want:    func(s *samples.SensorSettings) { s.MachineTempMax = 90 },
			errHas:  []string{"SendInterval", `"fast"`, "SendData", "MachineTempStep", "MaxMessages"}},
		{name: "interval out of range", from: def, desired: `{"SendInterval":0}`, errHas: []string{"SendInterval", "range"}},
		{name: "interval too long", from: def, desired: `{"SendInterval":1e9}`, errHas: []string{"SendInterval"}},
		{name: "negative max messages", from: def, desired: `{"MaxMessages":-1}`, errHas: []string{"MaxMessages"}},
		{name: "min not below max keeps both", from: def, desired: `{"MachineTempMin":50,"MachineTempMax":40,"SendInterval":1}`,
			want:   func(s *samples.SensorSettings) { s.SendInterval = 1 },
			errHas: []string{"MachineTempMin 50 must be below MachineTempMax 40"}},
		{name: "min equal to max", from: def, desired: `{"MachineTempMin":100}`, errHas: []string{"MachineTempMin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal([]byte(tc.desired), &d); err != nil {
				t.Fatal(err)
			}
			want := tc.from
			if tc.want != nil {
				tc.want(&want)
			}
			got, err := tc.from.Apply(d)
			if got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if (err != nil) != (len(tc.errHas) > 0) {
				t.Fatalf("error %v", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestFilterSettingsApply(t *testing.T) {
	def := samples.DefaultFilterSettings()
	if def.TemperatureThreshold != 25 {
		t.Fatalf("default threshold %v", def.TemperatureThreshold)
	}
	for desired, want := range map[string]float64{`{}`: 25, `{"TemperatureThreshold":30.5}`: 30.5, `{"TemperatureThreshold":-3}`: -3} {
		var d map[string]any
		_ = json.Unmarshal([]byte(desired), &d)
		if got, err := def.Apply(d); err != nil || got.TemperatureThreshold != want {
			t.Errorf("%s: %+v %v", desired, got, err)
		}
	}
	from := samples.FilterSettings{TemperatureThreshold: 40}
	if got, err := from.Apply(map[string]any{"TemperatureThreshold": nil}); err != nil || got.TemperatureThreshold != 25 {
		t.Errorf("null: %+v %v", got, err)
	}
	for _, bad := range []any{"hot", true, map[string]any{}, math.NaN()} {
		got, err := from.Apply(map[string]any{"TemperatureThreshold": bad})
		if err == nil || got != from || !strings.Contains(err.Error(), "TemperatureThreshold") {
			t.Errorf("%v: %+v %v", bad, got, err)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		body      string
		threshold float64
		pass, bad bool
	}{
		{`{"machine":{"temperature":25.1,"pressure":1},"ambient":{}}`, 25, true, false},
		{`{"machine":{"temperature":25}}`, 25, false, false}, // strictly above
		{`{"machine":{"temperature":-40}}`, -50, true, false},
		{`{"machine":{"temperature":10}}`, 25, false, false},
		{`not json`, 25, false, true},
		{``, 25, false, true},
		{`{"machine":{}}`, 25, false, true},
		{`{"ambient":{"temperature":99}}`, 25, false, true},
		{`{"machine":{"temperature":"hot"}}`, 25, false, true},
		{`[1,2]`, 25, false, true},
	} {
		pass, _, err := samples.Check([]byte(tc.body), tc.threshold)
		if pass != tc.pass || (err != nil) != tc.bad || (err != nil && !errors.Is(err, samples.ErrNotReading)) {
			t.Errorf("%s at %v: pass %v err %v", tc.body, tc.threshold, pass, err)
		}
	}
}

func TestTemperatureSequence(t *testing.T) {
	s := samples.DefaultSensorSettings()
	var q samples.Sequence
	var got []float64
	for range 162 {
		got = append(got, q.Next(s))
	}
	for i, v := range got {
		if want := float64(21 + i%80); v != want {
			t.Fatalf("message %d: %v, want %v (sequence %v…)", i, v, want, got[:i+1])
		}
	}
	// Fractional steps do not drift and stop at the maximum.
	s = samples.SensorSettings{MachineTempMin: 0, MachineTempMax: 1, MachineTempStep: 0.1}
	q = samples.Sequence{}
	for i := range 22 {
		want := float64(i%11) / 10
		if v := q.Next(s); v != want {
			t.Fatalf("step 0.1, message %d: %v, want %v", i, v, want)
		}
	}
	// A narrower range takes effect at once.
	s = samples.SensorSettings{MachineTempMin: 21, MachineTempMax: 100, MachineTempStep: 1}
	q = samples.Sequence{}
	for range 50 {
		q.Next(s)
	}
	s.MachineTempMax = 30
	if v := q.Next(s); v != 21 {
		t.Errorf("after lowering the maximum below the current value: %v", v)
	}
}

func TestNewReading(t *testing.T) {
	s := samples.SensorSettings{MachineTempMin: 20, MachineTempMax: 30, MachineTempStep: 1}
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))
	r := samples.NewReading(3, 25, s, now)
	b, _ := json.Marshal(r)
	var doc struct {
		Machine     map[string]any
		Ambient     map[string]any
		TimeCreated string
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Machine["temperature"] != 25.0 || doc.Machine["pressure"] != 5.5 || doc.TimeCreated != "2024-05-06T06:08:09Z" ||
		doc.Ambient["humidity"] == nil || !strings.Contains(string(b), `"timeCreated"`) {
		t.Errorf("%s", b)
	}
	if a := r.Ambient; a.Temperature < 20 || a.Temperature > 22 || a.Humidity < 22 || a.Humidity > 28 {
		t.Errorf("ambient %+v", a)
	}
	if r2 := samples.NewReading(3, 25, s, now); r2 != r {
		t.Errorf("not deterministic: %+v vs %+v", r, r2)
	}
}
