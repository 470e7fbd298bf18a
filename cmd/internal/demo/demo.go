package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// Defaults of Options.
const (
	DefaultDir      = "outpost-demo"
	DefaultDuration = 40 * time.Second // of the headless story
	DefaultDevices  = 3
	startTimeout    = 60 * time.Second // for the hub, the edge and the devices to be ready
)

// Options configure Run.
type Options struct {
	Dir string // hub/, edge/ and the logs; created, reused by a later run
	// Executable is the outpost binary: it runs the hub, the edge and, as
	// the modules' image, the samples. It must be an absolute path.
	Executable string
	Headless   bool // run the scripted story instead of the live view
	// Duration is the headless story's length (DefaultDuration when 0);
	// the live view stops after it when it is set.
	Duration time.Duration
	Devices  int // simulated leaf devices (DefaultDevices when 0)
	Stdout   io.Writer
	Stderr   io.Writer // progress
	// Stdin, when it is a terminal, gives the live view its keys.
	Stdin *os.File
}

// session is one run of the demo.
type session struct {
	o     Options
	run   string // prefix of this run's message ids
	start time.Time
	log   *slog.Logger
	logf  *os.File

	hub, edge *child
	proxy     *linkproxy.Proxy
	hubc      *hubclient.Client
	edgec     localapi.Client
	hubURL    string
	mqtt      string // the edge's plain MQTT listener, for the devices
	dashboard string
	devices   []*device
	tally     *Tally
	obs       observer // of the snapshots, taken by one goroutine at a time

	stopDevices, stopFollow context.CancelFunc
	publishers, follower    sync.WaitGroup

	mu       sync.Mutex
	restored time.Time // when the link was last restored
}

// Run runs the demo until the story ends (headless), or until q, Ctrl-C
// (ctx) or Duration (live). Everything it started is stopped before it
// returns.
func Run(ctx context.Context, o Options) (err error) {
	if o.Duration == 0 && o.Headless {
		o.Duration = DefaultDuration
	}
	if o.Devices <= 0 {
		o.Devices = DefaultDevices
	}
	if !filepath.IsAbs(o.Executable) {
		return fmt.Errorf("the outpost executable %q: want an absolute path", o.Executable)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	s := &session{o: o, run: newRunID(), start: time.Now(), tally: NewTally()}
	defer func() { err = errors.Join(err, s.stop()) }()
	if err := s.setUp(ctx); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "hub %s (HostName %s; owner connection string in %s)\n",
		s.hubURL, HostName, filepath.Join(o.Dir, "hub", "owner.connection-string"))
	fmt.Fprintf(o.Stdout, "dashboard %s\n", s.dashboard)
	fmt.Fprintf(o.Stdout, "hub dashboard %s/ui/ (log in with the owner connection string)\n", strings.TrimSuffix(s.hubURL, "/"))
	if o.Headless {
		return s.story(ctx)
	}
	return s.live(ctx)
}

// openDir makes the demo's directory. An edge running as root runs its
// modules under their own uids, which must be able to pass through it to
// their directories in edge/ (which the edge protects): it is made
// searchable, not listable (its own files are 0600), and a parent that
// others cannot search is refused before anything starts.
func openDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, st.Mode().Perm()|0o011); err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s: run as root, the edge runs its modules under their own uids, which cannot reach it: %s is %s (others may not search it); "+
				"run the demo as another user, give --dir a directory every user can search (e.g. --dir /tmp/outpost-demo), or chmod o+x %s", dir, p, st.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setUp starts the hub, makes the identities and the deployment, starts
// the link proxy and the edge, and connects the devices.
func (s *session) setUp(ctx context.Context) error {
	if err := openDir(s.o.Dir); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.o.Dir, "demo.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	s.logf, s.log = f, slog.New(slog.NewTextHandler(f, nil)).With("run", s.run)
	s.phase("starting in %s: hub, edge, sample modules, %d leaf devices (logs: hub.log, edge.log, demo.log)", s.o.Dir, s.o.Devices)
	css, err := s.startHub(ctx)
	if err != nil {
		return err
	}
	if err := s.startEdge(ctx, css[0]); err != nil {
		return err
	}
	fctx, stop := context.WithCancel(context.Background())
	s.stopFollow = stop
	s.follower.Add(1)
	go s.follow(fctx)
	return s.startDevices(ctx, css[1:])
}

// startHub starts the hub and makes what the demo needs there; it returns
// the connection strings of the edge and the leaf devices.
func (s *session) startHub(ctx context.Context) ([]string, error) {
	dir := filepath.Join(s.o.Dir, "hub")
	removeStale(dir)
	var err error
	s.hub, err = startChild(s.o.Executable, "hub", filepath.Join(s.o.Dir, "hub.log"),
		[]string{"hub", "--data", dir, "--listen", "127.0.0.1:0", "--hostname", HostName}, nil)
	if err != nil {
		return nil, err
	}
	var ready struct{ URL string }
	if err := s.hub.waitReady(ctx, filepath.Join(dir, "ready.json"), startTimeout, &ready); err != nil {
		return nil, err
	}
	s.hubURL = ready.URL
	owner, err := os.ReadFile(filepath.Join(dir, "owner.connection-string"))
	if err != nil {
		return nil, fmt.Errorf("the hub's owner connection string: %w", err)
	}
	cs, err := sas.ParseConnString(strings.TrimSpace(string(owner)))
	if err != nil {
		return nil, fmt.Errorf("the hub's owner connection string: %w", err)
	}
	if s.hubc, err = hubclient.New(cs, s.hubURL); err != nil {
		return nil, err
	}
	css, err := ensureIdentities(ctx, s.hubc, s.o.Devices)
	if err != nil {
		return nil, err
	}
	for i := 1; i <= s.o.Devices; i++ {
		// A story of an earlier run may have changed it.
		if err := patchDesired(ctx, s.hubc, leafID(i), map[string]any{"intervalMs": defaultInterval.Milliseconds()}); err != nil {
			return nil, err
		}
	}
	return css, deploy(ctx, s.hubc, s.o.Executable)
}

// startEdge starts the link proxy in front of the hub and the edge behind
// it; its connection string goes in the environment, not the command line.
func (s *session) startEdge(ctx context.Context, cs string) error {
	u, err := url.Parse(s.hubURL)
	if err != nil {
		return fmt.Errorf("hub URL %q: %w", s.hubURL, err)
	}
	if s.proxy, err = linkproxy.Open("127.0.0.1:0", u.Host, linkproxy.Options{}); err != nil {
		return fmt.Errorf("link proxy: %w", err)
	}
	dir := filepath.Join(s.o.Dir, "edge")
	removeStale(dir)
	s.edge, err = startChild(s.o.Executable, "edge", filepath.Join(s.o.Dir, "edge.log"),
		[]string{"edge", "--data", dir, "--hub-url", "http://" + s.proxy.Addr().String(),
			"--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0", "--api", "127.0.0.1:0", "--module-backoff", "1s"},
		[]string{"OUTPOST_EDGE_CONNECTION_STRING=" + cs})
	if err != nil {
		return err
	}
	var ready struct{ MQTT, API string }
	if err := s.edge.waitReady(ctx, filepath.Join(dir, "ready.json"), startTimeout, &ready); err != nil {
		return err
	}
	if s.edgec, err = localapi.ClientFromData(dir); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.dashboard, err = s.edgec.LoginURL(lctx); err != nil {
		return fmt.Errorf("dashboard login URL: %w", err)
	}
	s.mqtt = ready.MQTT
	return nil
}

// startDevices connects the leaf devices and starts their publishers.
func (s *session) startDevices(ctx context.Context, css []string) error {
	dctx, stop := context.WithCancel(context.Background())
	s.stopDevices = stop
	cctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	go func() { // the edge or the hub dying ends the wait at once
		select {
		case <-s.hub.done:
		case <-s.edge.done:
		case <-cctx.Done():
		}
		cancel()
	}()
	for _, cs := range css {
		d, err := connectDevice(cctx, cs, s.mqtt, s.run, s.tally, s.log)
		if err != nil {
			if died := s.died(); died != nil {
				return died
			}
			if ctx.Err() != nil {
				return nil // Ctrl-C while a device connects: a clean stop, not a failure
			}
			return err
		}
		s.devices = append(s.devices, d)
		s.publishers.Add(1)
		go func() {
			defer s.publishers.Done()
			d.publish(dctx)
		}()
	}
	s.phase("%d leaf devices connected to the edge, publishing every %s each", len(s.devices), defaultInterval)
	return nil
}

// died is the error of the hub or the edge if one has stopped by itself.
func (s *session) died() error {
	for _, c := range []*child{s.hub, s.edge} {
		select {
		case <-c.done:
			return c.died()
		default:
		}
	}
	return nil
}

// follow reads the hub's event log and counts this run's messages.
func (s *session) follow(ctx context.Context) {
	defer s.follower.Done()
	prefix := s.run + "."
	err := s.hubc.Follow(ctx, hubclient.FollowOptions{From: 1, Follow: true, Wait: 5 * time.Second,
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second},
		func(e hubclient.Event) error {
			s.tally.Event()
			switch {
			case strings.HasPrefix(e.MessageID, prefix):
				s.tally.Seen(e.MessageID, time.Now())
			case e.DeviceID == EdgeID && e.ModuleID == "filter" && enqueuedSince(e, s.start):
				s.tally.Filtered()
			}
			return nil
		})
	if err != nil && ctx.Err() == nil {
		s.log.Error("following the hub's event log stopped", "err", err)
	}
}

// stop stops what setUp started, in order: devices, edge (which stops
// its modules), link proxy, the event log's reader, hub.
func (s *session) stop() error {
	var errs []error
	if s.stopDevices != nil {
		s.stopDevices()
		s.publishers.Wait()
	}
	for _, d := range s.devices {
		d.c.Close()
	}
	if s.edge != nil {
		errs = append(errs, s.edge.stop(30*time.Second))
	}
	if s.proxy != nil {
		_ = s.proxy.Close()
	}
	if s.stopFollow != nil {
		s.stopFollow()
		s.follower.Wait()
	}
	if s.hub != nil {
		errs = append(errs, s.hub.stop(15*time.Second))
	}
	if s.logf != nil {
		_ = s.logf.Close()
	}
	return errors.Join(errs...)
}

// phase announces a step of the demo on stderr, with the time since start.
func (s *session) phase(format string, args ...any) {
	fmt.Fprintf(s.o.Stderr, "demo %5.1fs  %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// enqueuedSince reports whether the hub took event e at start or later
// (the hub runs on this machine: one clock).
func enqueuedSince(e hubclient.Event, start time.Time) bool {
	t, err := time.Parse(time.RFC3339Nano, e.EnqueuedTime)
	return err == nil && !t.Before(start.Truncate(time.Second))
}
