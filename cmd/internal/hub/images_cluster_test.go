package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// callRaw makes an owner request with a binary body.
func callRaw(t *testing.T, key []byte, method, url string, body []byte) (int, []byte) {
	t.Helper()
	return request(t, key, method, url, "application/octet-stream", body)
}

// putEdge registers an edge device and returns its primary key.
func putEdge(t *testing.T, key []byte, url, id string) []byte {
	t.Helper()
	var ident struct {
		Authentication struct {
			SymmetricKey struct {
				PrimaryKey []byte `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"authentication"`
	}
	eventually(t, "register edge "+id, func() error {
		code, body := call(t, key, "PUT", url+"/devices/"+id, map[string]any{"deviceId": id, "capabilities": map[string]any{"iotEdge": true}})
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return json.Unmarshal(body, &ident)
	})
	if len(ident.Authentication.SymmetricKey.PrimaryKey) == 0 {
		t.Fatal("the edge device has no key")
	}
	return ident.Authentication.SymmetricKey.PrimaryKey
}

// getWith GETs url with an Authorization header.
func getWith(url, auth string) (int, []byte) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// startCluster runs three nodes (n2 and n3 join through n1) and waits
// until all three are up; it returns them with the owner key.
func startCluster(t *testing.T) ([]*testNode, []byte) {
	t.Helper()
	root := t.TempDir()
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	n2 := startNode(t, filepath.Join(root, "n2"), "n2", n1.ready.URL, key)
	n3 := startNode(t, filepath.Join(root, "n3"), "n3", n1.ready.URL, key)
	eventually(t, "three members up", func() error {
		m, err := members(t, key, n1.ready.URL)
		if err != nil {
			return err
		}
		up := 0
		for _, x := range m {
			if x.State == "Leader" || x.State == "Follower" {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("members %+v", m)
		}
		return nil
	})
	nodes := []*testNode{n1, n2, n3}
	for _, n := range nodes {
		eventually(t, "a read through "+n.id, func() error {
			_, err := listed(t, key, n)
			return err
		})
	}
	return nodes, key
}

// splitLeader splits nodes into the leader and the others.
func splitLeader(t *testing.T, key []byte, nodes []*testNode) (*testNode, []*testNode) {
	t.Helper()
	var leader *testNode
	eventually(t, "one leader", func() (err error) {
		leader, err = leaderOf(t, key, nodes)
		return err
	})
	var rest []*testNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	return leader, rest
}

// testImage is a #! script of about 100 KiB, different per name.
func testImage(name string) ([]byte, string) {
	b := []byte("#!/bin/sh\necho " + name + "\n" + strings.Repeat("# padding padding padding\n", 4000))
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])
}

func imageFileOf(n *testNode, digest string) string {
	return filepath.Join(n.dir, "images", "sha256-"+strings.TrimPrefix(digest, "sha256:"))
}

func hasFile(n *testNode, digest string) bool {
	_, err := os.Stat(imageFileOf(n, digest))
	return err == nil
}

// listed returns the digests GET /images lists at node n.
func listed(t *testing.T, key []byte, n *testNode) ([]string, error) {
	code, body := call(t, key, "GET", n.ready.URL+"/images", nil)
	if code != 200 {
		return nil, fmt.Errorf("GET /images at %s: %d %s", n.id, code, body)
	}
	var imgs []struct{ Digest string }
	if err := json.Unmarshal(body, &imgs); err != nil {
		return nil, err
	}
	var out []string
	for _, i := range imgs {
		out = append(out, i.Digest)
	}
	return out, nil
}

// A push through a follower is acknowledged once a majority holds the
// bytes: the leader that took it stops right after the 201, and each
// remaining node serves the image (copying it from the other when it
// lacks it). A delete removes the files, also on the old leader when it
// comes back.
func TestClusterImagesSurviveTheReceivingNode(t *testing.T) {
	nodes, key := startCluster(t)
	leader, rest := splitLeader(t, key, nodes)
	edgeKey := putEdge(t, key, leader.ready.URL, "gw1")
	img, digest := testImage("survive")
	code, body := callRaw(t, key, "POST", rest[0].ready.URL+"/images", img)
	if code != 201 || !strings.Contains(string(body), digest) {
		t.Fatalf("push through follower %s: %d %s", rest[0].id, code, body)
	}
	leader.stop() // the node the forwarder gave the push to
	held := 0
	for _, n := range rest {
		if hasFile(n, digest) {
			held++
		}
	}
	if held == 0 {
		t.Fatalf("the push was acknowledged, but no node other than the leader %s holds the bytes", leader.id)
	}
	// One remaining node lacks the file (as when the leader's copy to it
	// was cut short): asked for the image, it copies it from the other.
	lacks, has := rest[1], rest[0]
	if !hasFile(has, digest) {
		lacks, has = has, lacks
	}
	if err := os.Remove(imageFileOf(lacks, digest)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, n := range rest {
		for _, get := range []struct{ path, auth string }{
			{protocol.PathImages + "/" + digest, sas.NewToken(clusterHost+"/devices/gw1", edgeKey, "", time.Now().Add(time.Hour))}, // an edge's fetch first
			{"/images/" + digest, sas.NewToken(clusterHost, key, "owner", time.Now().Add(time.Hour))},
		} {
			eventually(t, "the image from "+n.id, func() error {
				code, got := getWith(n.ready.URL+get.path, get.auth)
				if code != 200 {
					return fmt.Errorf("GET %s at %s: %d %s", get.path, n.id, code, got)
				}
				if sum := sha256.Sum256(got); "sha256:"+hex.EncodeToString(sum[:]) != digest {
					return fmt.Errorf("GET %s at %s: %d bytes of another content", get.path, n.id, len(got))
				}
				return nil
			})
		}
		// Leadership may still move after the stop (a loaded machine): a
		// 503 NoLeader is retried, as the CLI does.
		eventually(t, "the image listed at "+n.id, func() error {
			if l, err := listed(t, key, n); err != nil || len(l) != 1 || l[0] != digest {
				return fmt.Errorf("list at %s: %v %v", n.id, l, err)
			}
			return nil
		})
		// A node that has not applied the record yet forwards the GETs to
		// the leader; once it has, it copies the file (in the background
		// or on the next GET).
		eventually(t, n.id+" holds the image", func() error {
			if !hasFile(n, digest) {
				return fmt.Errorf("%s served the image but does not hold it", n.id)
			}
			return nil
		})
	}

	eventually(t, "delete", func() error {
		if code, body := call(t, key, "DELETE", rest[1].ready.URL+"/images/"+digest, nil); code != 204 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	for _, n := range rest {
		eventually(t, "the file gone at "+n.id, func() error {
			if hasFile(n, digest) {
				return fmt.Errorf("%s still holds %s", n.id, digest)
			}
			return nil
		})
	}
	if !hasFile(leader, digest) {
		t.Fatalf("the stopped leader lost its file: the test cannot show the delete reaching it")
	}
	back := startNode(t, leader.dir, leader.id, rest[0].ready.URL, key)
	eventually(t, "the old leader removes the deleted image", func() error {
		if hasFile(back, digest) {
			return fmt.Errorf("%s still holds %s", back.id, digest)
		}
		return nil
	})
	if l, err := listed(t, key, back); err != nil || len(l) != 0 {
		t.Errorf("list at %s after the delete: %v %v", back.id, l, err)
	}
}

// A push that cannot reach a majority of nodes is refused with 503 and
// records nothing; once a node takes copies again, the push succeeds.
func TestClusterImagePushNeedsAMajority(t *testing.T) {
	nodes, key := startCluster(t)
	leader, rest := splitLeader(t, key, nodes)
	down, broken := rest[0], rest[1]
	down.stop()
	// broken's image store cannot take files: a file where its directory was.
	dir := filepath.Join(broken.dir, "images")
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	img, digest := testImage("majority")
	code, body := callRaw(t, key, "POST", leader.ready.URL+"/images", img)
	if code != 503 || !strings.Contains(string(body), "majority") {
		t.Fatalf("push with one copy possible: %d %s, want 503 naming the majority", code, body)
	}
	if l, err := listed(t, key, leader); err != nil || len(l) != 0 {
		t.Fatalf("list after the refused push: %v %v", l, err)
	}
	if code, _ := call(t, key, "GET", broken.ready.URL+"/images/"+digest, nil); code != 404 {
		t.Fatalf("GET of the refused image at %s: %d, want 404", broken.id, code)
	}

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	code, body = callRaw(t, key, "POST", leader.ready.URL+"/images", img)
	if code != 201 || !hasFile(broken, digest) {
		t.Fatalf("push again with a copy possible: %d %s (copy at %s: %v)", code, body, broken.id, hasFile(broken, digest))
	}

	// The node that was down copies the image in the background.
	back := startNode(t, down.dir, down.id, leader.ready.URL, key)
	eventually(t, "the returning node copies the image", func() error {
		if !hasFile(back, digest) {
			return fmt.Errorf("%s lacks %s", back.id, digest)
		}
		return nil
	})

	back.stop()
	broken.stop() // one node of three up: no majority at all
	img2, _ := testImage("alone")
	if code, body := callRaw(t, key, "POST", leader.ready.URL+"/images", img2); code != 503 {
		t.Fatalf("push with one node of three up: %d %s, want 503", code, body)
	}
}
