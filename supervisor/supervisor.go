package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a Supervisor.
type Options struct {
	// Dir holds the image cache, each module's working directory and logs,
	// and the last applied deployment.
	Dir string
	// Fetcher downloads images by digest from the hub; nil for a
	// standalone edge (digests must then be in the cache).
	Fetcher Fetcher
	// Env returns the variables that connect a module to the edge
	// (IOTEDGE_*, EdgeHubConnectionString, EdgeModuleCACertificateFile).
	// They override the module's own env of the same name.
	Env func(module string) ([]string, error)
	// OnReport receives the report after every change, from the loop
	// goroutine; it must not call back into the Supervisor.
	OnReport func(Report)
	Logger   *slog.Logger

	BackoffUnit  time.Duration // first restart delay; default 10 s, doubled per restart
	BackoffMax   time.Duration // default 5 minutes
	HealthyAfter time.Duration // running this long resets the restart count; default 10 minutes
	StopGrace    time.Duration // SIGTERM → SIGKILL; default 10 s (createOptions StopTimeout overrides)
	RetryApply   time.Duration // retry of a deployment whose images could not be fetched; default 10 s
	MaxLogBytes  int64         // per module (two files); default 2 MiB

	// ModuleUIDs, when set, runs each module under its own uid and gid
	// from this range, recorded in Dir/uids.json so that a module keeps
	// its uid across restarts, or under its createOptions.User; health
	// checks run as the module too. It needs root. Zero: modules run as
	// the edge's user, and a module with createOptions.User is not
	// started.
	ModuleUIDs UIDRange
	// PasswdFile and GroupFile resolve createOptions.User names and tell
	// which uids the system uses; default /etc/passwd and /etc/group.
	PasswdFile, GroupFile string
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.BackoffUnit, 10*time.Second)
	def(&o.BackoffMax, 5*time.Minute)
	def(&o.HealthyAfter, 10*time.Minute)
	def(&o.StopGrace, 10*time.Second)
	def(&o.RetryApply, 10*time.Second)
	if o.MaxLogBytes <= 0 {
		o.MaxLogBytes = 2 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = func(string) ([]string, error) { return nil, nil }
	}
}

// Supervisor runs the modules of a deployment as processes and keeps them
// in the desired state. One goroutine (Run) owns all state; processes,
// timers and health checks report to it through events.
type Supervisor struct {
	opts   Options
	log    *slog.Logger
	images images
	users  *users // nil: modules run as the edge's user
	events chan func()
	quit   chan struct{}
	wg     sync.WaitGroup // process waiters, health checks, resolvers

	// Owned by the loop.
	mods           map[string]*instance
	desiredVersion int64
	desiredStatus  DesiredStatus
	applySeq       int // the latest Apply; older resolutions are dropped
	// requested and requestedVersion are the deployment last handed to
	// resolveAndApply (in force, being resolved, or retried).
	requested        []byte
	requestedVersion int64
	// known maps image references put in force (this run or the last one)
	// to their digests: the cached copy stands in for a path that is gone
	// or a hub that cannot be reached.
	known   map[string]string
	retry   *time.Timer
	started time.Time
	ctx     context.Context

	mu       sync.Mutex
	snapshot Report
	logs     map[string]*logFile
}

// instance is one module: its spec, its process if running, its status.
type instance struct {
	spec     Module
	digest   string
	prog     string
	argv0    string
	args     []string
	proc     *process
	gen      int // bumped on every start and deliberate stop; stale events are dropped
	st       ModuleStatus
	backoff  *time.Timer
	healthOK context.CancelFunc
	fails    int // consecutive failed health checks
}

// applied is the last deployment put in force, kept so that an edge that
// restarts offline brings every module back from the image cache.
type applied struct {
	Desired json.RawMessage   `json:"desired"`
	Version int64             `json:"version"`
	Digests map[string]string `json:"digests"`
}

// New prepares a supervisor; Run starts it.
func New(opts Options) (*Supervisor, error) {
	opts.setDefaults()
	s := &Supervisor{
		opts: opts, log: opts.Logger,
		images: images{dir: filepath.Join(opts.Dir, "images"), fetch: opts.Fetcher},
		events: make(chan func(), 64), quit: make(chan struct{}),
		mods: map[string]*instance{}, logs: map[string]*logFile{}, known: map[string]string{},
		desiredStatus: DesiredStatus{Code: 200},
	}
	if err := s.arrange(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if !opts.ModuleUIDs.IsZero() {
		u, err := openUsers(filepath.Join(opts.Dir, "uids.json"), opts)
		if err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		s.users = u
	}
	s.snapshot = s.buildReport()
	return s, nil
}

// Run restores the last applied deployment, then serves until ctx is done;
// it stops every module before it returns.
func (s *Supervisor) Run(ctx context.Context) error {
	s.ctx, s.started = ctx, time.Now()
	if a, err := s.loadApplied(); err != nil {
		s.log.Warn("last deployment not restored", "err", err)
	} else if a != nil {
		s.desiredVersion = a.Version
		if dep, err := ParseDeployment(a.Desired); err == nil {
			for name, m := range dep.Modules {
				if d := a.Digests[name]; d != "" {
					s.known[m.Image] = d
				}
			}
		}
		s.resolveAndApply(a.Desired, a.Version)
	}
	s.changed()
	for {
		select {
		case f := <-s.events:
			f()
		case <-ctx.Done():
			s.shutdown()
			return nil
		}
	}
}

func (s *Supervisor) shutdown() {
	close(s.quit)
	var wg sync.WaitGroup
	for _, in := range s.mods {
		s.cancelTimers(in)
		if in.proc != nil {
			wg.Add(1)
			go func(in *instance) { defer wg.Done(); in.proc.stop(s.grace(in)) }(in)
		}
	}
	wg.Wait()
	s.wg.Wait()
	s.mu.Lock()
	for _, l := range s.logs {
		l.Close()
	}
	s.mu.Unlock()
}

// post hands f to the loop; false once the supervisor has stopped.
func (s *Supervisor) post(f func()) bool {
	select {
	case <-s.quit:
		return false
	default:
	}
	select {
	case s.events <- f:
		return true
	case <-s.quit:
		return false
	}
}

// Apply hands the supervisor new `$edgeAgent` desired properties of twin
// version version. It returns at once; the outcome is in the report.
func (s *Supervisor) Apply(desired []byte, version int64) {
	desired = append([]byte(nil), desired...)
	s.post(func() {
		// The same deployment again (the edge hands over its twin or file
		// right after Run restored it, SIGHUP with nothing changed) is not
		// resolved again, unless it was refused: the cause may be mended.
		if version == s.requestedVersion && bytes.Equal(desired, s.requested) && s.desiredStatus.Code != 400 {
			return
		}
		s.resolveAndApply(desired, version)
	})
}

// Image makes module image digest (sha256:<hex>) available in the edge's
// image cache — fetched from the hub (the Fetcher) when missing, verified
// either way — and returns the path of its blob: a parent edge serves it
// to its child edges (nested edges), caching it on the way.
func (s *Supervisor) Image(ctx context.Context, digest string) (string, error) {
	if !digestRe.MatchString(digest) {
		return "", fmt.Errorf("%w %q: a digest is sha256:<64 lowercase hex>", ErrImage, digest)
	}
	if _, err := s.images.resolve(ctx, digest, true); err != nil {
		return "", err
	}
	return s.images.blob(digest), nil
}

// RestartModule stops a running module and starts it again at once.
func (s *Supervisor) RestartModule(ctx context.Context, name string) error {
	errc := make(chan error, 1)
	if !s.post(func() { errc <- s.restart(name) }) {
		return errors.New("supervisor stopped")
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns the latest report.
func (s *Supervisor) Status() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot
}

// ErrNoModule is returned for a module that is not in the deployment.
var ErrNoModule = errors.New("no such module")

// Logs writes the last tail lines (all if tail ≤ 0) of a module's output to
// w and, with follow, what it writes next until ctx is done.
func (s *Supervisor) Logs(ctx context.Context, name string, tail int, follow bool, w io.Writer) error {
	s.mu.Lock()
	l := s.logs[name]
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("%w %q", ErrNoModule, name)
	}
	if follow {
		return l.follow(ctx, tail, w)
	}
	data, _ := l.tail(tail)
	_, err := w.Write(data)
	return err
}

// changed publishes the report; called by the loop after every change.
func (s *Supervisor) changed() {
	r := s.buildReport()
	s.mu.Lock()
	s.snapshot = r
	s.mu.Unlock()
	if s.opts.OnReport != nil {
		s.opts.OnReport(r)
	}
}

// resolveAndApply parses the deployment and fetches the images of the
// modules that change — off the loop, so a slow download does not hold up
// restarts — then puts it in force. Images that cannot be resolved now (a
// moved file, no network) run from the cache if they were in force before.
func (s *Supervisor) resolveAndApply(desired []byte, version int64) {
	s.applySeq++
	seq := s.applySeq
	s.requested, s.requestedVersion = desired, version
	if s.retry != nil {
		s.retry.Stop()
	}
	dep, err := ParseDeployment(desired)
	if err != nil {
		s.refuse(version, err)
		return
	}
	current := map[string]Module{}
	for name, in := range s.mods {
		current[name] = in.spec
	}
	known, running := maps.Clone(s.known), s.currentDigests()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		resolved, err := s.resolveImages(dep, current, running, known)
		s.post(func() {
			if seq != s.applySeq {
				return // a newer deployment arrived meanwhile
			}
			if err != nil {
				s.refuse(version, err)
				if !errors.Is(err, ErrImage) {
					s.retry = time.AfterFunc(s.opts.RetryApply, func() {
						s.post(func() {
							if seq == s.applySeq {
								s.resolveAndApply(desired, version)
							}
						})
					})
				}
				return
			}
			s.converge(dep, resolved, desired, version)
		})
	}()
}

func (s *Supervisor) currentDigests() map[string]string {
	d := map[string]string{}
	for name, in := range s.mods {
		d[name] = in.digest
	}
	return d
}

type resolvedImage struct {
	digest, prog, argv0 string
	args                []string
}

// argv0 is the name a module's program sees as argv[0]: the image's file
// name when the image is a path or a name on PATH (multi-call programs
// such as busybox depend on it), the program's path inside an archive, the
// module's name for an executable named by digest — never the cache's
// sha256-… file name.
func argv0(m Module, prog string, archive bool) string {
	if archive {
		return filepath.Base(prog)
	}
	if !digestRe.MatchString(m.Image) {
		return filepath.Base(m.Image)
	}
	return m.Name
}

// resolveImages runs off the loop: it reads only its arguments.
func (s *Supervisor) resolveImages(dep *Deployment, current map[string]Module, running, known map[string]string) (map[string]resolvedImage, error) {
	out := map[string]resolvedImage{}
	names := slices.Sorted(maps.Keys(dep.Modules))
	for _, name := range names {
		m := dep.Modules[name]
		digest := ""
		if cur, ok := current[name]; ok && same(cur, m) {
			digest = running[name]
		}
		if digest == "" {
			d, err := s.images.resolve(s.ctx, m.Image, m.ImagePullPolicy != "never")
			if k := known[m.Image]; err != nil && k != "" && s.images.verify(k) == nil {
				s.log.Info("module image not reachable; running the cached copy", "module", name, "image", m.Image, "digest", k, "err", err)
				d, err = k, nil
			}
			if err != nil {
				return nil, fmt.Errorf("modules.%s.settings.image: %w", name, err)
			}
			digest = d
		}
		prog, args, archive, err := s.images.program(digest, m.Create.Entrypoint, m.Create.Cmd)
		if err != nil {
			return nil, fmt.Errorf("modules.%s.settings.image: %w", name, err)
		}
		out[name] = resolvedImage{digest: digest, prog: prog, args: args, argv0: argv0(m, prog, archive)}
	}
	return out, nil
}

func (s *Supervisor) refuse(version int64, err error) {
	code := 500
	var me *ManifestError
	if errors.As(err, &me) || errors.Is(err, ErrImage) {
		code = 400
	} else {
		err = fmt.Errorf("%w; retrying every %s, the modules in force keep running", err, s.opts.RetryApply)
	}
	s.log.Warn("deployment not applied; the modules in force keep running", "version", version, "code", code, "err", err)
	s.desiredVersion = version
	s.desiredStatus = DesiredStatus{Code: code, Description: err.Error()}
	s.changed()
}

// converge puts dep in force: it stops what is removed or changed, then
// starts what should run, in startupOrder.
func (s *Supervisor) converge(dep *Deployment, images map[string]resolvedImage, desired []byte, version int64) {
	var stopping []*instance
	for name, in := range s.mods {
		m, keep := dep.Modules[name]
		switch {
		case !keep:
			s.log.Info("module removed", "module", name)
			stopping = append(stopping, in)
			delete(s.mods, name)
		case !same(in.spec, m) || m.Status == "stopped":
			stopping = append(stopping, in)
		}
	}
	s.stopAll(stopping)
	for name := range s.logs {
		if _, ok := dep.Modules[name]; !ok {
			s.closeLog(name)
		}
	}
	var starts []*instance
	for _, name := range slices.Sorted(maps.Keys(dep.Modules)) {
		m, img := dep.Modules[name], images[name]
		in := s.mods[name]
		prevStatus := ""
		if in != nil {
			prevStatus = in.spec.Status
		}
		if in == nil || !same(in.spec, m) {
			in = &instance{st: ModuleStatus{RuntimeStatus: "stopped", StatusDescription: "created"}}
			if old := s.mods[name]; old != nil {
				in.gen = old.gen
			}
			s.mods[name] = in
		}
		in.spec, in.digest, in.prog, in.argv0, in.args = m, img.digest, img.prog, img.argv0, img.args
		s.known[m.Image] = img.digest
		if m.Status == "stopped" {
			in.st.RuntimeStatus, in.st.StatusDescription = "stopped", "desired status is stopped"
			continue
		}
		// A module that ended under its restart policy stays as it is;
		// new, changed and newly running modules start.
		if in.proc == nil && in.backoff == nil && (in.st.LastStartTimeUtc == "" || prevStatus == "stopped") {
			starts = append(starts, in)
		}
	}
	sort.SliceStable(starts, func(i, j int) bool { return starts[i].spec.StartupOrder < starts[j].spec.StartupOrder })
	for _, in := range starts {
		s.start(in)
	}
	s.desiredVersion, s.desiredStatus = version, DesiredStatus{Code: 200}
	if err := s.saveApplied(desired, version); err != nil {
		s.log.Error("deployment applied but not saved; an offline restart would not restore it", "err", err)
	}
	s.log.Info("deployment applied", "version", version, "modules", len(dep.Modules))
	s.changed()
}

// stopAll stops the instances' processes in parallel.
func (s *Supervisor) stopAll(ins []*instance) {
	var wg sync.WaitGroup
	for _, in := range ins {
		s.cancelTimers(in)
		in.gen++
		if in.proc == nil {
			continue
		}
		wg.Add(1)
		go func(in *instance, p *process) {
			defer wg.Done()
			p.stop(s.grace(in))
		}(in, in.proc)
	}
	wg.Wait()
	now := time.Now()
	for _, in := range ins {
		if in.proc != nil {
			in.st.ExitCode, in.st.LastExitTimeUtc = in.proc.exit.code, utc(now)
			s.note(in.spec.Name, "stopped (%s)", in.proc.exit)
			in.proc = nil
		}
		in.st.RuntimeStatus, in.st.StatusDescription = "stopped", "stopped by the supervisor"
	}
}

func (s *Supervisor) grace(in *instance) time.Duration {
	if t := in.spec.Create.StopTimeout; t != nil {
		return time.Duration(*t) * time.Second
	}
	return s.opts.StopGrace
}

func (s *Supervisor) cancelTimers(in *instance) {
	if in.backoff != nil {
		in.backoff.Stop()
		in.backoff = nil
	}
	if in.healthOK != nil {
		in.healthOK()
		in.healthOK = nil
	}
}

// start runs the instance's process; a failure to start counts as a
// failed run (restart policy and backoff apply). A module whose user
// cannot be had is not started: that is the deployment's to mend.
func (s *Supervisor) start(in *instance) {
	name := in.spec.Name
	in.gen++
	gen := in.gen
	cred, err := s.credential(in)
	if err != nil {
		s.notStarted(in, err)
		return
	}
	now := time.Now()
	in.st.LastStartTimeUtc = utc(now)
	in.fails = 0
	vars, dir, err := s.launch(in, cred)
	if err != nil {
		s.log.Warn("module did not start", "module", name, "err", err)
		s.exited(in, exitStatus{code: -1, err: err}, now)
		return
	}
	in.st.RuntimeStatus, in.st.StatusDescription = "running", "running"
	s.note(name, "started %s (pid %d)", in.spec.Image, in.proc.cmd.Process.Pid)
	s.log.Info("module started", "module", name, "pid", in.proc.cmd.Process.Pid, "restart_count", in.st.RestartCount, "user", in.st.User)
	p := in.proc
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-p.done
		s.post(func() {
			if in.gen == gen && in.proc == p {
				in.proc = nil
				s.cancelTimers(in)
				s.exited(in, p.exit, now)
				s.changed()
			}
		})
	}()
	if hc := in.spec.Create.Healthcheck; hc != nil {
		s.watchHealth(in, gen, *hc, vars, dir, cred)
	}
}

// launch spawns the instance's process as cred (nil: as the edge) and
// returns its environment and working directory for health checks.
func (s *Supervisor) launch(in *instance, cred *syscall.Credential) (vars []string, dir string, err error) {
	name := in.spec.Name
	log, err := s.logFor(name)
	if err != nil {
		return nil, "", err
	}
	if vars, err = s.env(in); err != nil {
		return nil, "", err
	}
	if dir, err = s.workDir(name, in.spec.Create.WorkingDir, cred); err != nil {
		return nil, "", err
	}
	in.proc, err = spawn(in.prog, in.argv0, in.args, vars, dir, log, in.spec.Create.HostConfig, cred)
	return vars, dir, err
}

// credential is the uid and gid the module runs as; nil when modules run
// as the edge's user.
func (s *Supervisor) credential(in *instance) (*syscall.Credential, error) {
	user := in.spec.Create.User
	if s.users == nil {
		if user != "" {
			return nil, fmt.Errorf("createOptions.User %q: %w; modules run as the edge's user (remove User, or run the edge as root)", user, ErrCannotSwitchUser)
		}
		return nil, nil
	}
	if err := reachable(s.opts.Dir); err != nil {
		return nil, err
	}
	cred, warn, err := s.users.credential(in.spec.Name, user)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		s.log.Warn(warn, "module", in.spec.Name)
		s.note(in.spec.Name, "%s", warn)
	}
	in.st.User = fmt.Sprintf("%d:%d", cred.Uid, cred.Gid)
	return cred, nil
}

// notStarted reports a module that cannot be started as the deployment
// says; it stays stopped until a deployment changes it (or the edge
// restarts).
func (s *Supervisor) notStarted(in *instance, err error) {
	in.st.RuntimeStatus, in.st.StatusDescription = "failed", "not started: "+err.Error()
	s.note(in.spec.Name, "not started: %v", err)
	s.log.Error("module not started", "module", in.spec.Name, "err", err)
}

// env is the module's environment: a few of the edge's variables, the
// module's own env, then the variables that connect it to the edge.
func (s *Supervisor) env(in *instance) ([]string, error) {
	vars := baseEnv()
	vars = append(vars, "HOME="+s.home(in.spec.Name))
	for _, k := range slices.Sorted(maps.Keys(in.spec.Env)) {
		vars = append(vars, k+"="+in.spec.Env[k])
	}
	vars = append(vars, in.spec.Create.Env...)
	sys, err := s.opts.Env(in.spec.Name)
	if err != nil {
		return nil, fmt.Errorf("module environment: %w", err)
	}
	return dedupEnv(append(vars, sys...)), nil
}

// dedupEnv keeps the last value of each variable.
func dedupEnv(vars []string) []string {
	idx := map[string]int{}
	var out []string
	for _, v := range vars {
		k, _, _ := strings.Cut(v, "=")
		if i, ok := idx[k]; ok {
			out[i] = v
			continue
		}
		idx[k] = len(out)
		out = append(out, v)
	}
	return out
}

// exited applies the restart policy to a process that ended (or could not
// start). Restarts back off 10 s·2^n up to 5 minutes; a module that ran
// HealthyAfter has its count reset. There is no permanent give-up.
func (s *Supervisor) exited(in *instance, exit exitStatus, startedAt time.Time) {
	now := time.Now()
	in.st.ExitCode, in.st.LastExitTimeUtc = exit.code, utc(now)
	if now.Sub(startedAt) >= s.opts.HealthyAfter {
		in.st.RestartCount = 0
	}
	s.note(in.spec.Name, "exited (%s)", exit)
	p := in.spec.RestartPolicy
	restart := in.spec.Status == "running" && (p == Always || (p > Never && exit.code != 0))
	if !restart {
		in.st.RuntimeStatus = "stopped"
		if exit.code != 0 {
			in.st.RuntimeStatus = "failed"
		}
		in.st.StatusDescription = fmt.Sprintf("%s; restartPolicy %s", exit, p)
		s.log.Info("module ended", "module", in.spec.Name, "exit", exit.String(), "restart_policy", p.String())
		return
	}
	delay := s.opts.BackoffUnit << min(in.st.RestartCount, 30)
	if delay > s.opts.BackoffMax || delay <= 0 {
		delay = s.opts.BackoffMax
	}
	in.st.RuntimeStatus = "backoff"
	in.st.StatusDescription = fmt.Sprintf("%s; restarting in %s", exit, delay)
	s.log.Warn("module ended; restarting after backoff", "module", in.spec.Name, "exit", exit.String(), "delay", delay, "restart_count", in.st.RestartCount)
	gen := in.gen
	in.backoff = time.AfterFunc(delay, func() {
		s.post(func() {
			if in.gen != gen || in.backoff == nil || s.mods[in.spec.Name] != in {
				return
			}
			in.backoff = nil
			in.st.RestartCount++
			in.st.LastRestartTimeUtc = utc(time.Now())
			s.start(in)
			s.changed()
		})
	})
}

func (s *Supervisor) restart(name string) error {
	in := s.mods[name]
	if in == nil {
		return fmt.Errorf("%w %q", ErrNoModule, name)
	}
	if in.spec.Status != "running" {
		return fmt.Errorf("module %q is stopped by its deployment (status: stopped)", name)
	}
	s.stopAll([]*instance{in})
	s.note(name, "restart requested")
	s.start(in)
	s.changed()
	return nil
}

// home is a module's directory: its HOME and, unless WorkingDir says
// otherwise, its working directory.
func (s *Supervisor) home(name string) string { return filepath.Join(s.opts.Dir, "run", name) }

func (s *Supervisor) logFor(name string) (*logFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[name]; l != nil {
		return l, nil
	}
	l, err := openLog(filepath.Join(s.opts.Dir, "logs", name), s.opts.MaxLogBytes)
	if err != nil {
		return nil, fmt.Errorf("module log: %w", err)
	}
	s.logs[name] = l
	return l, nil
}

func (s *Supervisor) closeLog(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[name]; l != nil {
		l.Close()
		delete(s.logs, name)
	}
}

func (s *Supervisor) note(name, format string, args ...any) {
	if l, err := s.logFor(name); err == nil {
		l.note(format, args...)
	}
}

func (s *Supervisor) appliedPath() string { return filepath.Join(s.opts.Dir, "applied.json") }

func (s *Supervisor) loadApplied() (*applied, error) {
	data, err := os.ReadFile(s.appliedPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a applied
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", s.appliedPath(), err)
	}
	return &a, nil
}

func (s *Supervisor) saveApplied(desired []byte, version int64) error {
	data, err := json.Marshal(applied{Desired: desired, Version: version, Digests: s.currentDigests()})
	if err != nil {
		return err
	}
	// 0600: a deployment's env may carry secrets.
	return writeAtomic(s.appliedPath(), data, 0o600)
}
