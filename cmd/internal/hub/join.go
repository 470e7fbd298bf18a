package hub

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// Joining a cluster: a new node proves it holds the cluster's owner key,
// first to receive the cluster CA (step "ca": it needs it before its raft
// transport can speak mutual TLS), then to be added as a voter (step
// "add"). The proof is an HMAC with the owner key over the whole request,
// so a request cannot be altered or made without the key, even on plain
// HTTP; the CA comes back sealed with a key derived from the owner key and
// the request's nonce, so only a holder of the owner key can read it.

// joinPath is where a node asks to join; any node forwards it to the leader.
const joinPath = "/cluster/join"

// joinSkew bounds the age of a join request.
const joinSkew = 5 * time.Minute

type joinRequest struct {
	Step  string `json:"step"` // "ca" or "add"
	ID    string `json:"id"`
	Raft  string `json:"raft"`
	API   string `json:"api"`
	Nonce string `json:"nonce"` // base64 of 32 random bytes
	Time  int64  `json:"time"`  // unix seconds
	Proof string `json:"proof"` // base64 HMAC-SHA256 (see mac)
}

// joinBundle is what step "ca" hands over, sealed.
type joinBundle struct {
	ClusterCA    string `json:"clusterCa"`
	ClusterCAKey string `json:"clusterCaKey"`
	APICA        string `json:"apiCa,omitempty"` // the hub's own HTTPS CA, shared by the nodes
	APICAKey     string `json:"apiCaKey,omitempty"`
	Incarnation  string `json:"incarnation,omitempty"` // of the cluster's twin replica
}

type joinAnswer struct {
	Sealed string `json:"sealed,omitempty"` // step "ca"
}

func (j joinRequest) mac(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "outpost-join-v1\n%s\n%s\n%s\n%s\n%s\n%d", j.Step, j.ID, j.Raft, j.API, j.Nonce, j.Time)
	return m.Sum(nil)
}

func newJoinRequest(step, id, raftAddr, api string, key []byte) joinRequest {
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	j := joinRequest{Step: step, ID: id, Raft: raftAddr, API: api, Nonce: base64.StdEncoding.EncodeToString(nonce), Time: time.Now().Unix()}
	j.Proof = base64.StdEncoding.EncodeToString(j.mac(key))
	return j
}

// check verifies the proof and the request's fields against key.
func (j joinRequest) check(key []byte, now time.Time) error {
	proof, err := base64.StdEncoding.DecodeString(j.Proof)
	if err != nil || !hmac.Equal(proof, j.mac(key)) {
		return errors.New("the join request's proof does not match the cluster's owner key: start the joining node with the same owner key (--owner-key-file or OUTPOST_HUB_OWNER_KEY) as the cluster")
	}
	if d := now.Sub(time.Unix(j.Time, 0)); d > joinSkew || d < -joinSkew {
		return fmt.Errorf("the join request is %s away from this node's clock (at most %s): check the clocks", d.Round(time.Second), joinSkew)
	}
	switch {
	case j.Step != "ca" && j.Step != "add":
		return fmt.Errorf("unknown join step %q (want ca or add)", j.Step)
	case !validNodeID(j.ID):
		return fmt.Errorf("node id %q: want 1 to 64 letters, digits, '-', '_' or '.'", j.ID)
	case j.Step == "add" && (j.Raft == "" || j.API == ""):
		return errors.New("step add needs the node's raft address and API URL")
	}
	return nil
}

// nonces are the nonces of the join requests a node took, each kept
// until its request is too old to be taken anyway: a captured request
// cannot be sent again (to re-add a node that left, say). Only holders of
// the owner key make requests that get this far, so it stays small.
type nonces struct {
	mu   sync.Mutex
	seen map[string]time.Time // nonce → when its request expires
}

// fresh records j's nonce and says whether it was new.
func (s *nonces) fresh(j joinRequest, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, exp := range s.seen {
		if now.After(exp) {
			delete(s.seen, n)
		}
	}
	if _, ok := s.seen[j.Nonce]; ok {
		return false
	}
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	s.seen[j.Nonce] = time.Unix(j.Time, 0).Add(joinSkew)
	return true
}

func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.", c)) {
			return false
		}
	}
	return true
}

// sealKey derives the key that seals a bundle for one request.
func sealKey(owner []byte, nonce string) ([]byte, error) {
	return hkdf.Key(sha256.New, owner, []byte(nonce), "outpost cluster join bundle", 32)
}

func seal(owner []byte, nonce string, plain []byte) (string, error) {
	aead, err := newAEAD(owner, nonce)
	if err != nil {
		return "", err
	}
	iv := make([]byte, aead.NonceSize())
	_, _ = rand.Read(iv)
	return base64.StdEncoding.EncodeToString(aead.Seal(iv, iv, plain, nil)), nil
}

func unseal(owner []byte, nonce, sealed string) ([]byte, error) {
	aead, err := newAEAD(owner, nonce)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < aead.NonceSize() {
		return nil, errors.New("the join answer is not a sealed bundle")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil)
	if err != nil {
		return nil, errors.New("the join answer could not be opened with this node's owner key: it is not the cluster's")
	}
	return plain, nil
}

func newAEAD(owner []byte, nonce string) (cipher.AEAD, error) {
	k, err := sealKey(owner, nonce)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// postJoin sends one join step to base (any node of the cluster) and
// returns the answer.
func postJoin(ctx context.Context, client *http.Client, base string, j joinRequest) (joinAnswer, error) {
	body, _ := json.Marshal(j)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+joinPath, bytes.NewReader(body))
	if err != nil {
		return joinAnswer{}, fmt.Errorf("--join %s: %w", base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return joinAnswer{}, fmt.Errorf("--join %s: %w", base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return joinAnswer{}, fmt.Errorf("--join %s: %w", base, protocol.ReadError(resp.StatusCode, data))
	}
	var a joinAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return joinAnswer{}, fmt.Errorf("--join %s: the answer is not a join answer (%v): is this an outpost hub?", base, err)
	}
	return a, nil
}
