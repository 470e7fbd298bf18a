package broker

import (
	"reflect"
	"testing"
)

func TestParseTopic(t *testing.T) {
	cases := []struct {
		topic string
		want  inbound
		err   bool
	}{
		{"devices/d1/messages/events/", inbound{kind: topicTelemetry, device: "d1"}, false},
		{"devices/d1/messages/events", inbound{kind: topicTelemetry, device: "d1"}, false},
		{"devices/d1/messages/events/a=1&%24.mid=m1", inbound{kind: topicTelemetry, device: "d1", bag: "a=1&%24.mid=m1"}, false},
		{"devices/d1/messages/events/a=1/", inbound{kind: topicTelemetry, device: "d1", bag: "a=1"}, false},
		{"devices/E/modules/M/messages/events/%24.on=out1/", inbound{kind: topicTelemetry, device: "E", module: "M", bag: "%24.on=out1"}, false},
		{"devices//messages/events/", inbound{}, true},
		{"devices/d1/messages/devicebound/x", inbound{kind: topicOther}, false},
		{"$iothub/twin/GET/?$rid=42", inbound{kind: topicTwinGet, rid: "42"}, false},
		{"$iothub/twin/GET/", inbound{}, true},
		{"$iothub/twin/PATCH/properties/reported/?$rid=7", inbound{kind: topicTwinReported, rid: "7"}, false},
		{"$iothub/twin/PATCH/properties/reported/", inbound{kind: topicTwinReported}, false},
		{"$iothub/methods/res/200/?$rid=abc", inbound{kind: topicMethodResponse, status: 200, rid: "abc"}, false},
		{"$iothub/methods/res/x/?$rid=abc", inbound{}, true},
		{"factory/line1", inbound{kind: topicOther}, false},
	}
	for _, c := range cases {
		got, err := parseTopic(c.topic)
		if (err != nil) != c.err {
			t.Errorf("%s: err %v", c.topic, err)
			continue
		}
		if !c.err && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.topic, got, c.want)
		}
	}
}

func TestBag(t *testing.T) {
	app, sys, err := parseBag("temp=21&%24.mid=m1&%24.ct=application%2Fjson&%24.on=out&%24.cdid=spoof&flag&sp=a%20b")
	if err != nil {
		t.Fatal(err)
	}
	wantApp := map[string]string{"temp": "21", "flag": "", "sp": "a b"}
	wantSys := map[string]string{"messageId": "m1", "contentType": "application/json", "outputName": "out"}
	if !reflect.DeepEqual(app, wantApp) || !reflect.DeepEqual(sys, wantSys) {
		t.Errorf("app %v sys %v", app, sys)
	}
	enc := encodeBag(map[string]string{"a b": "c&d"}, map[string]string{"messageId": "m1", "connectionModuleId": "M"})
	if enc != "%24.cmid=M&%24.mid=m1&a+b=c%26d" {
		t.Errorf("encodeBag = %q", enc)
	}
	if _, _, err := parseBag("%zz=1"); err == nil {
		t.Error("bad escape accepted")
	}
}

func FuzzTopic(f *testing.F) {
	for _, s := range []string{"devices/d/messages/events/a=1", "devices/E/modules/M/messages/events/%24.on=o/", "$iothub/twin/GET/?$rid=1", "$iothub/methods/res/200/?$rid=x", "$iothub/twin/PATCH/properties/reported/?$rid=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		in, err := parseTopic(topic)
		if err != nil || in.kind != topicTelemetry {
			return
		}
		app, sys, err := parseBag(in.bag)
		if err != nil {
			return
		}
		// What we encode, we decode to the same properties.
		app2, sys2, err := parseBag(encodeBag(app, sys))
		if err != nil || !reflect.DeepEqual(app, app2) || !reflect.DeepEqual(sys, sys2) {
			t.Fatalf("bag round trip: %v %v → %v %v (%v)", app, sys, app2, sys2, err)
		}
	})
}
