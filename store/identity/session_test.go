package identity

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

func TestLoginAndRecheck(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var seen [][]string
	f.c.Watch(func(ids []string) { seen = append(seen, slices.Sorted(slices.Values(ids))) })
	exp := now.Add(time.Hour)
	login, err := f.c.Login(req("sensor1", hub+"/sensor1"+user, f.token("sensor1", hub, false, exp)))
	if err != nil {
		t.Fatal(err)
	}
	if want := exp.Add(sas.DefaultSkew); !login.Expires.Equal(want) {
		t.Errorf("Expires %v, want the token's expiry plus the skew %v", login.Expires, want)
	}
	cert, err := f.c.Login(req("xdev", hub+"/xdev"+user, "", f.goodCert))
	if err != nil || !cert.Expires.Equal(f.goodCert.NotAfter) {
		t.Errorf("certificate login: %v, expires %v, want the certificate's NotAfter %v", err, cert.Expires, f.goodCert.NotAfter)
	}
	if err := f.c.Recheck(login); err != nil {
		t.Fatalf("unchanged: %v", err)
	}
	cur, _, _ := f.c.Get("sensor1")
	// Another identity changes: sensor1's session goes on.
	other, _, _ := f.c.Get("Sensor1")
	other.Auth.PrimaryKey = sas.GenerateKey()
	if err := f.c.Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Writing sensor1 unchanged tells no watcher.
	if err := f.c.Put(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Recheck(login); err != nil {
		t.Fatalf("another identity changed: %v", err)
	}
	steps := []struct {
		change func(*Identity)
		want   error
	}{
		{func(i *Identity) { i.Auth.SecondaryKey = sas.GenerateKey() }, ErrCredentialsChanged},
		{func(i *Identity) { i.Auth = Auth{Type: AuthSelfSigned, PrimaryThumbprint: sha1Thumb(f.goodCert)} }, ErrCredentialsChanged},
		{func(i *Identity) { i.Generation = NewGeneration() }, ErrCredentialsChanged},
		{func(i *Identity) { i.Status = Disabled }, ErrDisabled},
		{func(i *Identity) { i.ParentScopes = []string{"ms-azure-iot-edge://gw2-99"} }, ErrNotChild},
	}
	for _, s := range steps {
		id := cur.clone()
		s.change(&id)
		if err := f.c.Put(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Recheck(login); !errors.Is(err, s.want) {
			t.Errorf("Recheck = %v, want %v", err, s.want)
		}
		if err := f.c.Put(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.c.Delete(ctx, "sensor1"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Recheck(login); !errors.Is(err, ErrUnknownIdentity) {
		t.Errorf("deleted: %v", err)
	}
	want := [][]string{{"Sensor1"}}
	for range steps {
		want = append(want, []string{"sensor1"}, []string{"sensor1"})
	}
	want = append(want, []string{"sensor1"})
	if !slices.EqualFunc(seen, want, slices.Equal) {
		t.Errorf("watchers saw %v, want %v", seen, want)
	}
}

// CONNECT refuses client ids and usernames with MQTT wildcards before
// looking anything up.
func TestConnectRefusesWildcardIDs(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"a+b", "#", "gw1/+", "gw1/m#"} {
		_, err := f.c.Authenticate(req(id, hub+"/"+id+user, "SharedAccessSignature sr=x&sig=y&se=1"))
		if !errors.Is(err, ErrClientIDMismatch) {
			t.Errorf("client id %q: %v, want ErrClientIDMismatch", id, err)
		}
	}
}
