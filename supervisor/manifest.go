package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Deployment is the `$edgeAgent` desired properties (IoT Edge schema) as
// far as Outpost runs them: user modules as OS processes. `runtime` and
// `systemModules` are accepted for compatibility with IoT Edge manifests
// and not used: edgeAgent and edgeHub are built into `outpost edge`.
type Deployment struct {
	SchemaVersion string
	Modules       map[string]Module
}

// Module is one entry of `modules`, validated.
type Module struct {
	Name            string
	Version         string
	Type            string // "process"
	Status          string // "running" or "stopped"
	RestartPolicy   Policy
	StartupOrder    uint32
	ImagePullPolicy string
	Env             map[string]string
	Image           string // a path, a name on PATH, or sha256:<hex>
	Create          CreateOptions
	// RawCreateOptions is createOptions as written (chunks joined), kept
	// for the reported settings; Create is what it says.
	RawCreateOptions string
}

// CreateOptions is the Docker-style settings.createOptions JSON, the part
// that means something for a process.
type CreateOptions struct {
	// Entrypoint and Cmd are Docker's: the program runs with the
	// arguments Entrypoint[1:] then Cmd. Entrypoint[0] names the program
	// inside an archive image (default: the archive's only executable
	// file); an executable image is itself the program, so it takes no
	// Entrypoint.
	Entrypoint  StrSlice `json:"Entrypoint,omitempty"`
	Cmd         StrSlice `json:"Cmd,omitempty"`
	Env         []string `json:"Env,omitempty"`        // "NAME=value"
	WorkingDir  string   `json:"WorkingDir,omitempty"` // relative to the module's directory
	StopTimeout *int     `json:"StopTimeout,omitempty"`
	// User is Docker's: uid, uid:gid, name or name:group (names from
	// /etc/passwd and /etc/group). Without it a module runs under its own
	// uid from the edge's range; it needs an edge that runs as root.
	User        string       `json:"User,omitempty"`
	Healthcheck *Healthcheck `json:"Healthcheck,omitempty"`
	HostConfig  *HostConfig  `json:"HostConfig,omitempty"`
}

// StrSlice is Docker's strslice: a JSON array of strings, or one string
// for a one-element list.
type StrSlice []string

// UnmarshalJSON takes an array of strings or a single string.
func (s *StrSlice) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StrSlice{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		// The decoder names the field in a type error.
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[[]string]()}
	}
	*s = many
	return nil
}

func jsonKind(b []byte) string {
	t := bytes.TrimSpace(b)
	switch {
	case len(t) == 0:
		return "nothing"
	case t[0] == '{':
		return "object"
	case t[0] == '[':
		return "array with a non-string"
	case t[0] == 't' || t[0] == 'f':
		return "bool"
	case t[0] == 'n':
		return "null"
	}
	return "number"
}

// Healthcheck is Docker's: Test is ["CMD", prog, args…] or
// ["CMD-SHELL", "command line"]; durations in nanoseconds.
type Healthcheck struct {
	Test        []string `json:"Test"`
	Interval    int64    `json:"Interval,omitempty"`
	Timeout     int64    `json:"Timeout,omitempty"`
	StartPeriod int64    `json:"StartPeriod,omitempty"`
	Retries     int      `json:"Retries,omitempty"`
}

// HostConfig holds the resource limits a process can be given.
type HostConfig struct {
	Memory  int64    `json:"Memory,omitempty"` // bytes of address space (RLIMIT_AS)
	Ulimits []Ulimit `json:"Ulimits,omitempty"`
}

// Ulimit is one resource limit by its ulimit name (nofile, nproc, core,
// cpu, fsize, stack, as).
type Ulimit struct {
	Name string `json:"Name"`
	Soft uint64 `json:"Soft"`
	Hard uint64 `json:"Hard"`
}

// Policy is a restart policy; the order matters (as in IoT Edge: a policy
// above Never restarts something).
type Policy int

const (
	Never Policy = iota
	OnFailure
	OnUnhealthy
	Always
)

var policyNames = []string{"never", "on-failure", "on-unhealthy", "always"}

func (p Policy) String() string { return policyNames[p] }

// ManifestError says what is wrong with a deployment and where; it is
// reported in lastDesiredStatus with code 400.
type ManifestError struct {
	Path string // e.g. modules.sensor.restartPolicy
	Msg  string
}

func (e *ManifestError) Error() string {
	if e.Path == "" {
		return "deployment: " + e.Msg
	}
	return "deployment: " + e.Path + ": " + e.Msg
}

func bad(path, format string, args ...any) error {
	return &ManifestError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

var (
	moduleName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	envName    = regexp.MustCompile(`^[^+#$\s.]+$`)
	chunkKey   = regexp.MustCompile(`^createOptions(0[1-9]|[1-9][0-9])$`)
)

// ParseDeployment reads `$edgeAgent` desired properties. Keys starting with
// `$` (the twin's `$version`, `$metadata`) are ignored; any other unknown
// field is an error, so a misspelt setting is never silently ignored.
func ParseDeployment(data []byte) (*Deployment, error) {
	var top map[string]json.RawMessage
	if err := strictUnmarshal(data, &top); err != nil {
		return nil, bad("", "not a JSON object: %v", err)
	}
	d := &Deployment{Modules: map[string]Module{}}
	for k, v := range top {
		switch {
		case strings.HasPrefix(k, "$"):
		case k == "schemaVersion":
			if err := json.Unmarshal(v, &d.SchemaVersion); err != nil {
				return nil, bad(k, "must be a string such as \"1.1\"")
			}
		case k == "runtime", k == "systemModules":
			if !isObjectOrNull(v) {
				return nil, bad(k, "must be an object")
			}
		case k == "modules":
			mods, err := parseModules(v)
			if err != nil {
				return nil, err
			}
			d.Modules = mods
		default:
			return nil, bad(k, "unknown field (known: schemaVersion, runtime, systemModules, modules)")
		}
	}
	if d.SchemaVersion != "" && !strings.HasPrefix(d.SchemaVersion, "1.") {
		return nil, bad("schemaVersion", "%q is not supported (1.0 or 1.1)", d.SchemaVersion)
	}
	return d, nil
}

func isObjectOrNull(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	return len(t) > 0 && (t[0] == '{' || string(t) == "null")
}

func parseModules(data json.RawMessage) (map[string]Module, error) {
	var raw map[string]json.RawMessage
	if err := strictUnmarshal(data, &raw); err != nil {
		return nil, bad("modules", "must be an object of modules: %v", err)
	}
	mods := make(map[string]Module, len(raw))
	for name, v := range raw {
		path := "modules." + name
		if !moduleName.MatchString(name) || strings.EqualFold(name, "edgeAgent") || strings.EqualFold(name, "edgeHub") {
			return nil, bad(path, "invalid module name (letters, digits, _ and -; edgeAgent and edgeHub are built in)")
		}
		m, err := parseModule(path, v)
		if err != nil {
			return nil, err
		}
		m.Name = name
		mods[name] = m
	}
	return mods, nil
}

// moduleJSON is a module as written; unknown fields are refused.
type moduleJSON struct {
	Version         string                     `json:"version"`
	Type            string                     `json:"type"`
	Status          string                     `json:"status"`
	RestartPolicy   string                     `json:"restartPolicy"`
	StartupOrder    *uint32                    `json:"startupOrder"`
	ImagePullPolicy string                     `json:"imagePullPolicy"`
	Env             map[string]json.RawMessage `json:"env"`
	Settings        map[string]json.RawMessage `json:"settings"`
}

func parseModule(path string, data json.RawMessage) (Module, error) {
	var j moduleJSON
	if err := strictUnmarshal(data, &j); err != nil {
		return Module{}, bad(path, "%v (known: version, type, status, restartPolicy, startupOrder, imagePullPolicy, env, settings)", err)
	}
	m := Module{Version: j.Version, Type: j.Type, Status: j.Status, ImagePullPolicy: j.ImagePullPolicy, StartupOrder: ^uint32(0)}
	switch m.Type {
	case "process":
	case "":
		return Module{}, bad(path+".type", "missing; Outpost runs modules as processes: \"type\": \"process\"")
	default:
		return Module{}, bad(path+".type", "%q is not supported; Outpost runs modules as processes: \"type\": \"process\"", m.Type)
	}
	switch m.Status {
	case "":
		m.Status = "running"
	case "running", "stopped":
	default:
		return Module{}, bad(path+".status", "%q: must be running or stopped", m.Status)
	}
	p, err := parsePolicy(j.RestartPolicy)
	if err != nil {
		return Module{}, bad(path+".restartPolicy", "%v", err)
	}
	m.RestartPolicy = p
	switch m.ImagePullPolicy {
	case "", "on-create", "never":
	default:
		return Module{}, bad(path+".imagePullPolicy", "%q: must be on-create or never", m.ImagePullPolicy)
	}
	if j.StartupOrder != nil {
		m.StartupOrder = *j.StartupOrder
	}
	if m.Env, err = parseEnv(path+".env", j.Env); err != nil {
		return Module{}, err
	}
	if err := parseSettings(path+".settings", j.Settings, &m); err != nil {
		return Module{}, err
	}
	if m.RestartPolicy == OnUnhealthy && m.Create.Healthcheck == nil {
		return Module{}, bad(path+".restartPolicy", "on-unhealthy needs a health check: settings.createOptions {\"Healthcheck\":{\"Test\":[\"CMD\",…]}}")
	}
	return m, nil
}

func parsePolicy(s string) (Policy, error) {
	if s == "" {
		return Always, nil
	}
	for i, n := range policyNames {
		if s == n {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("%q: must be one of %s", s, strings.Join(policyNames, ", "))
}

func parseEnv(path string, env map[string]json.RawMessage) (map[string]string, error) {
	out := make(map[string]string, len(env))
	for k, raw := range env {
		if !envName.MatchString(k) {
			return nil, bad(path+"."+k, "invalid variable name (no spaces, +, #, $ or .)")
		}
		var v struct {
			Value any `json:"value"`
		}
		if err := strictUnmarshal(raw, &v); err != nil {
			return nil, bad(path+"."+k, "must be {\"value\": …}: %v", err)
		}
		switch x := v.Value.(type) {
		case string:
			out[k] = x
		case float64, bool:
			out[k] = fmt.Sprint(x)
		default:
			return nil, bad(path+"."+k+".value", "must be a string, number or boolean")
		}
	}
	return out, nil
}

func parseSettings(path string, s map[string]json.RawMessage, m *Module) error {
	if s == nil {
		return bad(path, "missing; settings.image names the module's executable or archive")
	}
	var chunks []string
	for k, v := range s {
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return bad(path+"."+k, "must be a string")
		}
		switch {
		case k == "image":
			m.Image = str
		case k == "createOptions":
			m.RawCreateOptions = str
		case chunkKey.MatchString(k):
			chunks = append(chunks, k)
		default:
			return bad(path+"."+k, "unknown field (known: image, createOptions, createOptions01…99)")
		}
	}
	// Long createOptions are chunked in 512-character pieces, as IoT Edge
	// does for twin values.
	sort.Strings(chunks)
	for i, k := range chunks {
		if want := fmt.Sprintf("createOptions%02d", i+1); k != want {
			return bad(path+"."+want, "missing (createOptions chunks must be consecutive)")
		}
		var str string
		_ = json.Unmarshal(s[k], &str)
		m.RawCreateOptions += str
	}
	if m.Image == "" {
		return bad(path+".image", "missing; a path to an executable or archive, a name on PATH, or sha256:<digest> from the hub (outpost image push)")
	}
	if err := checkImageRef(m.Image); err != nil {
		return bad(path+".image", "%v", err)
	}
	if m.RawCreateOptions != "" {
		if err := strictUnmarshal([]byte(m.RawCreateOptions), &m.Create); err != nil {
			return bad(path+".createOptions", "%v (known: Entrypoint, Cmd, Env, WorkingDir, User, StopTimeout, Healthcheck, HostConfig.Memory, HostConfig.Ulimits)", err)
		}
	}
	return checkCreate(path+".createOptions", &m.Create)
}

func checkCreate(path string, c *CreateOptions) error {
	if len(c.Entrypoint) > 0 && c.Entrypoint[0] == "" {
		return bad(path+".Entrypoint", "the first element names the program inside the archive image; it must not be empty")
	}
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || !envName.MatchString(k) {
			return bad(path+".Env", "%q: must be NAME=value", e)
		}
	}
	if strings.HasPrefix(c.WorkingDir, "/") || strings.Contains(c.WorkingDir, "..") {
		return bad(path+".WorkingDir", "%q: must be relative to the module's directory, without ..", c.WorkingDir)
	}
	if c.User != "" && !userSpec.MatchString(c.User) {
		return bad(path+".User", "%q: want uid, uid:gid, name or name:group", c.User)
	}
	if c.StopTimeout != nil && (*c.StopTimeout < 0 || *c.StopTimeout > 3600) {
		return bad(path+".StopTimeout", "%d: seconds between 0 and 3600", *c.StopTimeout)
	}
	if h := c.Healthcheck; h != nil {
		if len(h.Test) < 2 || (h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL") {
			return bad(path+".Healthcheck.Test", "must be [\"CMD\", program, args…] or [\"CMD-SHELL\", \"command\"]")
		}
		if h.Interval < 0 || h.Timeout < 0 || h.StartPeriod < 0 || h.Retries < 0 {
			return bad(path+".Healthcheck", "durations (ns) and Retries must not be negative")
		}
		if h.Interval != 0 && time.Duration(h.Interval) < 10*time.Millisecond {
			return bad(path+".Healthcheck.Interval", "%d ns is below 10 ms (Docker's durations are nanoseconds)", h.Interval)
		}
	}
	if hc := c.HostConfig; hc != nil {
		if hc.Memory < 0 || (hc.Memory > 0 && hc.Memory < 4<<20) {
			return bad(path+".HostConfig.Memory", "%d bytes: 0 (no limit) or at least 4 MiB", hc.Memory)
		}
		for _, u := range hc.Ulimits {
			if _, ok := rlimits[u.Name]; !ok {
				return bad(path+".HostConfig.Ulimits", "unknown ulimit %q (known: %s)", u.Name, strings.Join(rlimitNames(), ", "))
			}
			if u.Soft > u.Hard {
				return bad(path+".HostConfig.Ulimits", "%s: Soft %d is above Hard %d", u.Name, u.Soft, u.Hard)
			}
		}
	}
	return nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// same reports whether two modules are the same process (their runtime
// status aside): any other change means stop and start again.
func same(a, b Module) bool {
	a.Status, b.Status = "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
