package route

import "testing"

func BenchmarkMatch(b *testing.B) {
	cfg, err := ParseConfig([]byte(`{"schemaVersion":"1.1","routes":{
		"hot":"FROM /messages/modules/sensor/outputs/temp WHERE $body.t > 30 INTO BrokeredEndpoint(\"/modules/filter/inputs/in1\")",
		"named":"FROM /messages/modules/sensor/* WHERE $body.name = 'pump' AND $body.a.arr[0] >= 10 INTO BrokeredEndpoint(\"/modules/log/inputs/in\")",
		"leaf":"FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream",
		"alarm":{"route":"FROM /messages/* WHERE Kind = 'alarm' OR as_number(temperature) > 40 INTO $upstream","priority":0,"timeToLiveSecs":86400},
		"other":"FROM /messages/modules/other/* INTO $upstream"}}`))
	if err != nil {
		b.Fatal(err)
	}
	m := jsonMsg(testBody)
	if got := cfg.Match(m); len(got) != 3 {
		b.Fatalf("targets %+v", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		cfg.Match(m)
	}
}
