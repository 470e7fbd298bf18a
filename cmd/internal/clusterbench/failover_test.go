package clusterbench

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/cmd/internal/testbin"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// The failover benchmark runs real `outpost hub` processes, so that
// killing the leader is kill -9 of a process.

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// outpostBinary builds cmd/outpost once per test process.
func outpostBinary(b testing.TB) string { return testbin.Outpost(b) }

// proc is one `outpost hub` node process.
type proc struct {
	id, dir, url string
	cmd          *exec.Cmd
	exited       chan struct{}
}

// startProc starts node id in dir (joining join unless it is "") and
// waits for its ready.json.
func startProc(b testing.TB, bin, dir, id, join string, key []byte) *proc {
	b.Helper()
	check(b, os.MkdirAll(dir, 0o700))
	_ = os.Remove(filepath.Join(dir, "ready.json")) // a killed node leaves its own behind
	args := []string{"hub", "--data", dir, "--listen", "127.0.0.1:0", "--hostname", hostName, "--node-id", id, "--raft", "127.0.0.1:0", "--log-level", "warn"}
	if join != "" {
		args = append(args, "--join", join)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	check(b, err)
	defer logf.Close()
	p := &proc{id: id, dir: dir, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "OUTPOST_HUB_OWNER_KEY="+base64.StdEncoding.EncodeToString(key))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	check(b, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	b.Cleanup(p.kill)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var rd hub.Ready
		data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
		if err == nil && json.Unmarshal(data, &rd) == nil && rd.PID == p.cmd.Process.Pid {
			p.url = rd.URL
			return p
		}
		select {
		case <-p.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "node.log"))
			b.Fatalf("node %s exited: %s", id, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatalf("node %s not ready in 30 s", id)
	return nil
}

// kill is kill -9, and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// leaderOf asks url for the members and returns the leader's id.
func leaderOf(key []byte, url string) (string, error) {
	var m []hub.Member
	if err := ownerCall(key, "GET", url+"/cluster/members", nil, &m); err != nil {
		return "", err
	}
	for _, x := range m {
		if x.Leader {
			return x.ID, nil
		}
	}
	return "", fmt.Errorf("no leader in %+v", m)
}

// sender is one edge's stream of message frames, one in flight, sent
// to the URL in target; a frame that is not acknowledged is sent again
// (the same frame: the hub recognises a retransmission) 100 ms later,
// sync/upstream's shortest backoff.
type sender struct {
	target   atomic.Pointer[string]
	edge     string
	key      []byte
	mu       sync.Mutex
	acks     []ack // every acknowledged frame
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
	msgs     atomic.Uint64 // messages in acknowledged frames
}

// halt stops the stream after the frame in flight.
func (s *sender) halt() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.stopped
}

type ack struct{ sent, acked time.Time }

const msgsPerFrame = 100

func (s *sender) run() {
	defer close(s.stopped)
	client := &http.Client{Timeout: 10 * time.Second}
	for seq := uint64(1); ; seq += msgsPerFrame {
		frame := protocol.Messages{Instance: "edge:" + s.edge + ".bench", Queue: "$upstream/pdefault"}
		for i := range uint64(msgsPerFrame) {
			frame.Msgs = append(frame.Msgs, protocol.Message{Seq: seq + i, ID: fmt.Sprint(seq + i), Source: "devices/" + s.edge,
				Body: []byte(fmt.Sprintf(`{"seq":%d,"noise":"%s"}`, seq+i, randomHex(60))), EnqueuedAt: time.Now().UnixMilli()})
		}
		body, enc, err := protocol.Encode(frame)
		if err != nil {
			panic(err)
		}
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			sent := time.Now()
			if err := s.post(client, body, enc); err == nil {
				s.mu.Lock()
				s.acks = append(s.acks, ack{sent, time.Now()})
				s.mu.Unlock()
				s.msgs.Add(msgsPerFrame)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (s *sender) post(client *http.Client, body []byte, enc string) error {
	req, err := http.NewRequest("POST", *s.target.Load()+protocol.PathMessages, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	req.Header.Set("Authorization", sas.NewToken(sas.ResourceURI(hostName, s.edge, ""), s.key, "", time.Now().Add(time.Hour)))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %s", resp.StatusCode, data)
	}
	var a protocol.MessagesAck
	return protocol.DecodeBytes(data, &a)
}

// firstAckAfter waits for the first frame sent after t and acknowledged.
func (s *sender) firstAckAfter(t time.Time, timeout time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		for i := len(s.acks) - 1; i >= 0 && s.acks[i].acked.After(t); i-- {
			if s.acks[i].sent.After(t) && (i == 0 || !s.acks[i-1].sent.After(t)) {
				s.mu.Unlock()
				return s.acks[i].acked, nil
			}
		}
		s.mu.Unlock()
	}
	return time.Time{}, errors.New("no frame acknowledged")
}

// BenchmarkClusterFailover: a three-node cluster of real `outpost hub`
// processes on this machine; one edge sends a stream of message frames
// (100 messages of about 80 bytes each, one frame in flight, a refused
// frame sent again after 100 ms: the link protocol spoken directly, not
// sync/upstream, whose backoff would add up to 1 s) through a follower's
// URL. Each iteration kills the leader with kill -9 and measures the time
// from the kill to the acknowledgement of the first frame sent after it
// (failover-ms, the mean; max-failover-ms), then restarts the killed node,
// which rejoins as a follower. At the end the cluster must hold exactly
// the messages of the acknowledged frames: none lost, none twice.
func BenchmarkClusterFailover(b *testing.B) {
	bin := outpostBinary(b)
	root, key := b.TempDir(), sas.GenerateKey()
	procs := map[string]*proc{}
	first := startProc(b, bin, filepath.Join(root, "n1"), "n1", "", key)
	procs["n1"] = first
	waitVoters(b, key, first.url, 1)
	for _, id := range []string{"n2", "n3"} {
		procs[id] = startProc(b, bin, filepath.Join(root, id), id, first.url, key)
	}
	waitVoters(b, key, first.url, 3)
	var gw struct {
		Authentication struct {
			SymmetricKey struct {
				PrimaryKey []byte `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"authentication"`
	}
	check(b, ownerCall(key, "PUT", first.url+"/devices/gw", map[string]any{"deviceId": "gw", "capabilities": map[string]any{"iotEdge": true}}, &gw))
	s := &sender{edge: "gw", key: gw.Authentication.SymmetricKey.PrimaryKey, stop: make(chan struct{}), stopped: make(chan struct{})}
	s.target.Store(&first.url)
	go s.run()
	defer s.halt()
	var total, worst time.Duration
	b.ResetTimer()
	for range b.N {
		d := failoverOnce(b, bin, key, procs, s)
		total += d
		worst = max(worst, d)
	}
	b.StopTimer()
	s.halt()
	checkNoLoss(b, key, procs, s.msgs.Load())
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "failover-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "max-failover-ms")
}

// failoverOnce points the sender at a follower, kills the leader and
// returns the time to the next acknowledged frame; the killed node then
// rejoins.
func failoverOnce(b *testing.B, bin string, key []byte, procs map[string]*proc, s *sender) time.Duration {
	var some *proc
	for _, p := range procs {
		some = p
	}
	var leader string
	eventually(b, "a leader", 30*time.Second, func() (err error) { leader, err = leaderOf(key, some.url); return err })
	var follower *proc
	for id, p := range procs {
		if id != leader {
			follower = p
		}
	}
	s.target.Store(&follower.url)
	_, err := s.firstAckAfter(time.Now(), 30*time.Second) // steady through the follower
	check(b, err)
	t0 := time.Now()
	procs[leader].kill()
	acked, err := s.firstAckAfter(t0, 60*time.Second)
	check(b, err)
	d := acked.Sub(t0)
	b.StopTimer()
	old := procs[leader]
	procs[leader] = startProc(b, bin, old.dir, old.id, follower.url, key)
	waitVoters(b, key, follower.url, 3)
	b.StartTimer()
	return d
}

// checkNoLoss: every node holds exactly the messages of the acknowledged
// frames.
func checkNoLoss(b *testing.B, key []byte, procs map[string]*proc, want uint64) {
	var urls []string
	for _, p := range procs {
		urls = append(urls, p.url)
	}
	for _, u := range urls {
		eventually(b, "every node holds the acknowledged messages", 30*time.Second, func() error {
			n, err := lastSeq([]string{u})
			if err == nil && n != want {
				err = fmt.Errorf("%s holds %d events, %d were acknowledged", u, n, want)
			}
			return err
		})
	}
}
