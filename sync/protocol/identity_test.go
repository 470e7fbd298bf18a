package protocol

import (
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/store/identity"
)

// The converters lose nothing and share nothing.
func TestIdentityConverters(t *testing.T) {
	ids := goldenIdentities()
	back := StoreIdentities(IdentitiesFromStore(ids))
	if !reflect.DeepEqual(back, ids) {
		t.Fatalf("store → wire → store:\n got %+v\nwant %+v", back, ids)
	}
	wire := IdentitiesFromStore(ids)
	wire[0].ParentScopes[0], wire[0].Auth.PrimaryKey[0] = "changed", 'X'
	if ids[0].ParentScopes[0] == "changed" || ids[0].Auth.PrimaryKey[0] == 'X' {
		t.Error("the wire identity shares its slices with the record")
	}
	if IdentitiesFromStore(nil) != nil || StoreIdentities(nil) != nil {
		t.Error("no identities convert to a non-nil slice")
	}
	for _, id := range ids {
		if got := IdentityFromStore(id).ID(); got != id.ID() {
			t.Errorf("ID() = %q, want %q", got, id.ID())
		}
	}
}

// notOnTheWire lists the fields of the registry's record the link does
// not carry, on purpose (none today).
var notOnTheWire = map[string]bool{}

// A field added to the registry's record must be added to the wire type
// (a new CBOR key, and the converters) or to notOnTheWire, on purpose: the
// converters would drop it silently. The CBOR keys of the two need not
// agree: the record's may change, the wire's are pinned by TestGolden.
func TestIdentityFieldsMatchTheRecord(t *testing.T) {
	for _, c := range []struct{ store, wire reflect.Type }{
		{reflect.TypeFor[identity.Identity](), reflect.TypeFor[Identity]()},
		{reflect.TypeFor[identity.Auth](), reflect.TypeFor[IdentityAuth]()},
	} {
		for i := range c.store.NumField() {
			name := c.store.Field(i).Name
			if _, ok := c.wire.FieldByName(name); !ok && !notOnTheWire[c.store.Name()+"."+name] {
				t.Errorf("%v.%s is not on the wire: add it to %v (a new CBOR key) and its converters, or to notOnTheWire", c.store, name, c.wire)
			}
		}
	}
	// Every field is set in the golden identities, so TestGolden sees it.
	var set [2]reflect.Value
	for _, id := range goldenIdentities() {
		for i, v := range []reflect.Value{reflect.ValueOf(id), reflect.ValueOf(id.Auth)} {
			if !set[i].IsValid() {
				set[i] = reflect.New(v.Type()).Elem()
			}
			for f := range v.NumField() {
				if !v.Field(f).IsZero() {
					set[i].Field(f).Set(v.Field(f))
				}
			}
		}
	}
	for _, v := range set {
		for f := range v.NumField() {
			if v.Field(f).IsZero() {
				t.Errorf("no golden identity sets %s.%s", v.Type().Name(), v.Type().Field(f).Name)
			}
		}
	}
}
