package identity

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
)

func dev(d string, parents ...string) Identity {
	return Identity{DeviceID: d, Status: Enabled, ParentScopes: parents,
		Auth: Auth{Type: AuthSAS, PrimaryKey: []byte("p-" + d), SecondaryKey: []byte("s-" + d)}}
}

func mod(d, m string) Identity {
	id := dev(d)
	id.ModuleID = m
	return id
}

func ids(t *testing.T, c *Cache) []string {
	t.Helper()
	l, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, id := range l {
		out = append(out, id.ID())
	}
	return out
}

// An edge restarted with no network still authenticates its children from
// what the last sync left in kv.
func TestPersistAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := sas.GenerateKey()
	edge := dev("gw1")
	edge.Edge, edge.DeviceScope = true, edgeScope
	child := Identity{DeviceID: "sensor1", Status: Enabled, ParentScopes: []string{edgeScope}, Auth: Auth{Type: AuthSAS, PrimaryKey: key}}

	db := openDB(t, dir)
	c := openCache(t, db)
	if err := c.Replace(ctx, []Identity{edge, child, mod("gw1", "m1")}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	defer db.Close()
	c = openCache(t, db)
	if got := strings.Join(ids(t, c), " "); got != "gw1 gw1/m1 sensor1" {
		t.Fatalf("after restart: %s", got)
	}
	got, ok, err := c.Get("sensor1")
	if err != nil || !ok || !reflect.DeepEqual(got, child) {
		t.Fatalf("Get(sensor1) = %+v, %v, %v; want %+v", got, ok, err, child)
	}
	tok := sas.NewToken(hub+"/devices/sensor1", key, "", now.Add(time.Hour))
	if _, err := c.Authenticate(req("sensor1", hub+"/sensor1"+user, tok)); err != nil {
		t.Errorf("authenticate after restart: %v", err)
	}
}

func TestReplace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	c := openCache(t, db)
	if err := c.Put(ctx, dev("a"), dev("b"), dev("c"), mod("c", "m")); err != nil {
		t.Fatal(err)
	}
	b2 := dev("b")
	b2.Status = Disabled
	snapshot := []Identity{b2, dev("d")}
	if err := c.Replace(ctx, snapshot); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(t, c), " "); got != "b d" {
		t.Errorf("after Replace: %s", got)
	}
	if got, _, _ := c.Get("b"); got.Status != Disabled {
		t.Errorf("b not updated: %+v", got)
	}

	// The same snapshot again writes nothing.
	before := db.Stats().Commits.Load()
	if err := c.Replace(ctx, snapshot); err != nil {
		t.Fatal(err)
	}
	if after := db.Stats().Commits.Load(); after != before {
		t.Errorf("unchanged snapshot committed %d times", after-before)
	}

	// An invalid snapshot changes nothing.
	bad := dev("e")
	bad.Status = "maybe"
	if err := c.Replace(ctx, []Identity{dev("x"), bad}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid snapshot: %v", err)
	}
	if err := c.Replace(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, c); len(got) != 0 {
		t.Errorf("after empty Replace: %v", got)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	if got := ids(t, openCache(t, db)); len(got) != 0 {
		t.Errorf("after empty Replace and restart: %v", got)
	}
}

func TestPutDelete(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	defer db.Close()
	c := openCache(t, db)
	if err := c.Put(ctx); err != nil {
		t.Fatal(err)
	}
	a2 := dev("a")
	a2.Auth.PrimaryKey = []byte("new")
	if err := c.Put(ctx, dev("a"), mod("a", "m1"), mod("a", "m2"), dev("ab"), a2); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := c.Get("a"); string(got.Auth.PrimaryKey) != "new" {
		t.Errorf("last of a repeated id should win: %q", got.Auth.PrimaryKey)
	}
	if err := c.Delete(ctx, "a/m1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(t, c), " "); got != "a a/m2 ab" {
		t.Errorf("after deleting a module: %s", got)
	}
	if err := c.Delete(ctx, "a"); err != nil { // takes its modules along, not "ab"
		t.Fatal(err)
	}
	if got := strings.Join(ids(t, c), " "); got != "ab" {
		t.Errorf("after deleting a device: %s", got)
	}
	if err := c.Delete(ctx, "nobody"); err != nil {
		t.Errorf("deleting an absent id: %v", err)
	}
	if err := c.Delete(ctx, "a/b/c"); !errors.Is(err, ErrInvalid) {
		t.Errorf("deleting a bad id: %v", err)
	}
	if _, _, err := c.Get(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get(\"\"): %v", err)
	}
	if _, ok, err := c.Get("a"); ok || err != nil {
		t.Errorf("Get(a) after delete: %v %v", ok, err)
	}
}

func TestPutIsAtomic(t *testing.T) {
	db := openDB(t, "")
	defer db.Close()
	c := openCache(t, db)
	bad := dev("bad")
	bad.Auth = Auth{Type: AuthSAS}
	if err := c.Put(context.Background(), dev("good"), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put with an invalid identity: %v", err)
	}
	if got := ids(t, c); len(got) != 0 {
		t.Errorf("partial Put stored %v", got)
	}
}

func TestValidate(t *testing.T) {
	edgeMod := mod("gw", "m")
	edgeMod.Edge = true
	bad := map[string]Identity{
		"no device id":      {Status: Enabled, Auth: Auth{Type: AuthSAS, PrimaryKey: []byte("k")}},
		"bad module id":     mod("d", "a/b"),
		"module with scope": edgeMod,
		"no status":         {DeviceID: "d", Auth: Auth{Type: AuthSAS, PrimaryKey: []byte("k")}},
		"two parents":       dev("d", "s1", "s2"),
		"empty parent":      dev("d", ""),
		"sas without key":   {DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSAS}},
		"x509 without tp":   {DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSelfSigned}},
		"bad thumbprint":    {DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: "xyz"}},
		"short thumbprint":  {DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: "abcd"}},
		"unknown auth type": {DeviceID: "d", Status: Enabled, Auth: Auth{Type: "none"}},
	}
	for name, id := range bad {
		if err := id.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	good := []Identity{
		dev("d"), dev("d", "scope"), mod("d", "$edgeAgent"),
		{DeviceID: "d", Status: Disabled, Auth: Auth{Type: AuthSAS, SecondaryKey: []byte("k")}},
		{DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSelfSigned, SecondaryThumbprint: strings.TrimSuffix(strings.Repeat("aB:", 32), ":")}},
		{DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthCA}},
	}
	for _, id := range good {
		if err := id.Validate(); err != nil {
			t.Errorf("%+v: %v", id, err)
		}
	}
}

func TestThumbprintFormats(t *testing.T) {
	cert := newCert(t, "d", now.Add(-time.Hour), now.Add(time.Hour))
	s1 := sha1Thumb(cert)
	var colons []string
	for i := 0; i < len(s1); i += 2 {
		colons = append(colons, s1[i:i+2])
	}
	for _, tp := range []string{s1, strings.ToUpper(s1), strings.Join(colons, ":"), strings.ToUpper(strings.Join(colons, " "))} {
		db := openDB(t, "")
		c := openCache(t, db)
		id := Identity{DeviceID: "d", Status: Enabled, Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: tp}}
		if err := c.Put(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		r := req("d", "h/d"+user, "", cert)
		r.EdgeDeviceID = "d" // the edge itself: no scope needed
		if _, err := c.Authenticate(r); err != nil {
			t.Errorf("thumbprint %q: %v", tp, err)
		}
		db.Close()
	}
}

func TestCopies(t *testing.T) {
	db := openDB(t, "")
	defer db.Close()
	c := openCache(t, db)
	in := dev("d", "scope")
	if err := c.Put(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	in.ParentScopes[0], in.Auth.PrimaryKey[0] = "changed", 'X'
	got, _, _ := c.Get("d")
	if got.ParentScopes[0] != "scope" || got.Auth.PrimaryKey[0] != 'p' {
		t.Fatalf("cache shares memory with the caller's Put: %+v", got)
	}
	got.ParentScopes[0], got.Auth.SecondaryKey[0] = "changed", 'X'
	again, _, _ := c.Get("d")
	if again.ParentScopes[0] != "scope" || again.Auth.SecondaryKey[0] != 's' {
		t.Fatalf("cache shares memory with Get's result: %+v", again)
	}
}

// A record that does not decode is skipped at Open so the edge still starts.
func TestOpenSkipsUnreadableRecords(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	defer db.Close()
	if err := openCache(t, db).Put(ctx, dev("a"), dev("b")); err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := dev("c").encode()
	err := db.Commit(ctx,
		kv.Set(recordKey("a"), []byte{0xff, 0x00}),
		kv.Set(recordKey("x"), wrongKey), // a record stored under another id
	)
	if err != nil {
		t.Fatal(err)
	}
	c := openCache(t, db)
	if got := strings.Join(ids(t, c), " "); got != "b" {
		t.Errorf("loaded %q, want only b", got)
	}
	// The hub's next snapshot repairs it.
	if err := c.Replace(ctx, []Identity{dev("a"), dev("b")}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(t, openCache(t, db)), " "); got != "a b" {
		t.Errorf("after repair: %q", got)
	}
}

func TestRecordKeysAreOurs(t *testing.T) {
	k := recordKey("d/m")
	if k[0] != kv.PrefixIdentity || k[len(k)-1] != 0 {
		t.Errorf("record key %q", k)
	}
}
