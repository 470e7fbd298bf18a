package identity

import (
	"errors"
	"reflect"
	"testing"
)

func TestJSONRoundTrip(t *testing.T) {
	in := []byte(`[
	 {"deviceId":"gw1","capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://gw1-1",
	  "authentication":{"type":"sas","symmetricKey":{"primaryKey":"AAECAw==","secondaryKey":"BAUGBw=="}}},
	 {"deviceId":"s1","parentScopes":["ms-azure-iot-edge://gw1-1"],"authentication":{"symmetricKey":{"primaryKey":"CAkKCw==","secondaryKey":"DA0ODw=="}}},
	 {"deviceId":"gw1","moduleId":"filter","generationId":"638347591827834567","authentication":{"type":"sas","symmetricKey":{"primaryKey":"EBESEw==","secondaryKey":"FBUWFw=="}}}]`)
	ids, err := ParseJSONList(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || !ids[0].Edge || ids[1].Status != Enabled || ids[1].Auth.Type != AuthSAS || ids[2].ID() != "gw1/filter" || ids[2].Generation != "638347591827834567" {
		t.Fatalf("parsed %+v", ids)
	}
	for _, id := range ids {
		back, err := id.ToJSON().Identity()
		if err != nil || !reflect.DeepEqual(back, id) {
			t.Errorf("round trip of %s: %+v, %v", id.ID(), back, err)
		}
	}
	for _, bad := range []string{`{}`, `[{"deviceId":"a b"}]`, `[{"deviceId":"m","moduleId":"x","parentScopes":["s"]}]`, `[{"deviceId":"g","generationId":"a b"}]`} {
		if _, err := ParseJSONList([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
