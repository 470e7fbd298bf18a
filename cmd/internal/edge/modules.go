package edge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// agentModule is the $edgeAgent identity's module id.
const agentModule = "$edgeAgent"

// newSupervisor prepares the module supervisor; runSupervisor starts it
// once the listeners are up (modules need their addresses). An edge that
// runs as root gives each module its own uid and keeps the rest of its
// data directory from them.
func (e *edge) newSupervisor() error {
	var fetch supervisor.Fetcher
	if e.link != nil {
		fetch = e.link
	}
	euid := os.Geteuid()
	uids := moduleUIDs(euid, e.cfg.ModuleUIDs)
	e.isolation = moduleIsolation(euid)
	if uids.IsZero() {
		e.cfg.Logger.Warn("modules run as the edge's user and can read its data directory: run the edge as root to give each module its own uid")
	}
	if err := protectDataDir(e.cfg.DataDir, !uids.IsZero()); err != nil {
		return err
	}
	e.reports = make(chan supervisor.Report, 1)
	s, err := supervisor.New(supervisor.Options{
		Dir: filepath.Join(e.cfg.DataDir, "modules"), Fetcher: fetch, Env: e.moduleEnv,
		OnReport: e.queueReport, Logger: e.cfg.Logger.With("component", "supervisor"), BackoffUnit: e.cfg.ModuleBackoff,
		ModuleUIDs: uids,
	})
	e.sup = s
	return err
}

// runSupervisor starts the supervisor (which restores the last applied
// deployment, offline too), hands it the current deployment, and writes
// its reports to the $edgeAgent twin. It returns when ctx is done and every
// module has stopped.
func (e *edge) runSupervisor(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.sup.Run(ctx)
	}()
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		e.writeReports(ctx)
	}()
	e.applyAgent()
	return func() { <-done; <-reported }
}

// agentDesired returns the $edgeAgent desired properties: from the twin
// when the hub has delivered a deployment, else from --deployment.
func (e *edge) agentDesired() (desired []byte, version int64, from string, err error) {
	if e.hubURL != "" {
		v, err := e.twins.Get(e.cs.DeviceID + "/" + agentModule)
		if err == nil && v.Desired["modules"] != nil {
			data, err := json.Marshal(v.Desired)
			return data, v.DesiredVersion, "the $edgeAgent twin", err
		}
	}
	if e.cfg.Deployment == "" {
		return nil, 0, "", nil
	}
	m, err := e.readManifest()
	if err != nil {
		return nil, 0, "", err
	}
	return m["$edgeAgent"]["properties.desired"], 0, "deployment " + e.cfg.Deployment, nil
}

// readManifest reads --deployment: {"modulesContent":{…}}.
func (e *edge) readManifest() (map[string]map[string]json.RawMessage, error) {
	data, err := os.ReadFile(e.cfg.Deployment)
	if err != nil {
		return nil, fmt.Errorf("deployment: %w", err)
	}
	var m struct {
		ModulesContent map[string]map[string]json.RawMessage `json:"modulesContent"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("deployment %s: not a deployment manifest: %w", e.cfg.Deployment, err)
	}
	return m.ModulesContent, nil
}

// applyAgent hands the supervisor the current $edgeAgent desired
// properties (at start, on SIGHUP, and when the hub changes the twin).
func (e *edge) applyAgent() {
	desired, version, from, err := e.agentDesired()
	if err != nil {
		e.cfg.Logger.Error("modules: deployment not read; the modules in force keep running", "err", err)
		return
	}
	if desired == nil {
		return
	}
	if e.hubURL == "" {
		if err := e.localModuleIdentities(desired); err != nil {
			e.cfg.Logger.Error("modules: identities not created", "err", err)
		}
	}
	e.cfg.Logger.Info("modules: applying deployment", "from", from, "version", version)
	e.sup.Apply(desired, version)
}

// localModuleIdentities gives each module of a standalone edge's
// deployment an identity with a fresh key (with a hub, the hub creates
// them with the deployment and the link brings them).
func (e *edge) localModuleIdentities(desired []byte) error {
	dep, err := supervisor.ParseDeployment(desired)
	if err != nil {
		return nil // the supervisor reports it
	}
	var add []identity.Identity
	for name := range dep.Modules {
		if _, ok, _ := e.ids.Get(e.cs.DeviceID + "/" + name); !ok {
			add = append(add, identity.Identity{DeviceID: e.cs.DeviceID, ModuleID: name, Status: identity.Enabled,
				Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: sas.GenerateKey(), SecondaryKey: sas.GenerateKey()}})
		}
	}
	if len(add) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.ids.Put(ctx, add...)
}

// moduleEnv is what connects a module process to this edge, so that the
// Azure IoT SDKs' ModuleClient.fromEnvironment works unmodified.
func (e *edge) moduleEnv(module string) ([]string, error) {
	id, ok, err := e.ids.Get(e.cs.DeviceID + "/" + module)
	if err != nil {
		return nil, err
	}
	if !ok || len(id.Auth.PrimaryKey) == 0 {
		return nil, fmt.Errorf("module identity %s/%s is not known yet (the hub creates it with the deployment; it arrives with the link)", e.cs.DeviceID, module)
	}
	gateway := e.ready.MQTTS
	if gateway == "" {
		gateway = e.ready.MQTT
	}
	if gateway == "" {
		return nil, errors.New("modules connect over MQTT: give the edge --mqtts (or --mqtt) as well")
	}
	if _, port, err := net.SplitHostPort(gateway); err == nil && e.cfg.Hostname != "" {
		gateway = net.JoinHostPort(e.cfg.Hostname, port)
	}
	cs := fmt.Sprintf("HostName=%s;DeviceId=%s;ModuleId=%s;SharedAccessKey=%s;GatewayHostName=%s",
		e.cs.HostName, e.cs.DeviceID, module, base64.StdEncoding.EncodeToString(id.Auth.PrimaryKey), gateway)
	env := []string{
		"IOTEDGE_DEVICEID=" + e.cs.DeviceID, "IOTEDGE_MODULEID=" + module,
		"IOTEDGE_IOTHUBHOSTNAME=" + e.cs.HostName, "IOTEDGE_GATEWAYHOSTNAME=" + gateway,
		"IOTEDGE_AUTHSCHEME=sasToken", "EdgeHubConnectionString=" + cs,
	}
	if e.ready.CA != "" {
		env = append(env, "EdgeModuleCACertificateFile="+e.ready.CA)
	}
	return env, nil
}

// queueReport keeps only the latest report for writeReports (called on the
// supervisor's goroutine, so it must not block).
func (e *edge) queueReport(r supervisor.Report) {
	select {
	case <-e.reports:
	default:
	}
	e.reports <- r
}

// writeReports writes supervisor reports to the $edgeAgent twin's reported
// properties, as a diff against what was written before (null removes).
func (e *edge) writeReports(ctx context.Context) {
	last := map[string]any{}
	id := e.cs.DeviceID + "/" + agentModule
	if v, err := e.twins.Get(id); err == nil {
		for k, val := range v.Reported {
			if !strings.HasPrefix(k, "$") { // $version is the twin's, not ours
				last[k] = val
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-e.reports:
			var cur map[string]any
			data, _ := json.Marshal(r)
			_ = json.Unmarshal(data, &cur)
			patch := twin.Diff(last, cur)
			if len(patch) == 0 {
				continue
			}
			body, _ := json.Marshal(patch)
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			session, err := e.twins.BeginSession()
			if err == nil {
				_, err = e.twins.PatchReported(wctx, id, session, body)
			}
			cancel()
			if err != nil {
				e.cfg.Logger.Warn("$edgeAgent reported properties not written", "err", err)
				continue
			}
			last = cur
		}
	}
}

// invoke runs a direct method: $edgeAgent's own methods here, every other
// target through the broker.
func (e *edge) invoke(ctx context.Context, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult {
	if target == e.cs.DeviceID+"/"+agentModule {
		return e.agentMethod(ctx, name, payload)
	}
	if e.downstream != nil { // a device or module below a child edge (nested edges)
		if child := e.downstream.ChildOf(target); child != "" {
			return e.downstream.Invoke(ctx, child, target, name, payload, timeout)
		}
	}
	res, err := e.broker.InvokeMethod(ctx, target, name, payload, timeout)
	switch {
	case errors.Is(err, broker.ErrNotConnected):
		return protocol.MethodResult{Status: 404, Error: err.Error()}
	case errors.Is(err, broker.ErrTimeout):
		return protocol.MethodResult{Status: 504, Error: err.Error()}
	case err != nil:
		return protocol.MethodResult{Status: 500, Error: err.Error()}
	}
	return protocol.MethodResult{Status: res.Status, Payload: res.Payload}
}

// agentMethod serves $edgeAgent's direct methods: ping, RestartModule
// {"schemaVersion","id"} and GetModuleLogs {"schemaVersion","items":[{"id",
// "filter":{"tail"}}],"encoding":"none","contentType":"text"}.
func (e *edge) agentMethod(ctx context.Context, name string, payload []byte) protocol.MethodResult {
	answer := func(status int, v any) protocol.MethodResult {
		data, _ := json.Marshal(v)
		return protocol.MethodResult{Status: status, Payload: data}
	}
	fail := func(status int, format string, args ...any) protocol.MethodResult {
		return answer(status, map[string]string{"message": fmt.Sprintf(format, args...)})
	}
	switch name {
	case "ping":
		return protocol.MethodResult{Status: 200}
	case "RestartModule":
		var req struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(payload, &req); err != nil || req.ID == "" {
			return fail(400, "RestartModule wants {\"schemaVersion\":\"1.0\",\"id\":\"<module>\"}")
		}
		if err := e.sup.RestartModule(ctx, req.ID); err != nil {
			if errors.Is(err, supervisor.ErrNoModule) {
				return fail(404, "%v", err)
			}
			return fail(400, "%v", err)
		}
		return answer(200, map[string]string{})
	case "GetModuleLogs":
		return e.moduleLogsMethod(ctx, payload, answer, fail)
	}
	return fail(404, "$edgeAgent has no method %q (ping, RestartModule, GetModuleLogs)", name)
}

// maxMethodLogs bounds GetModuleLogs' answer (IoT Hub caps method
// payloads at 128 KiB).
const maxMethodLogs = 96 << 10

func (e *edge) moduleLogsMethod(ctx context.Context, payload []byte, answer func(int, any) protocol.MethodResult, fail func(int, string, ...any) protocol.MethodResult) protocol.MethodResult {
	var req struct {
		Items []struct {
			ID     string `json:"id"`
			Filter struct {
				Tail *int `json:"tail"`
			} `json:"filter"`
		} `json:"items"`
		Encoding    string `json:"encoding"`
		ContentType string `json:"contentType"`
	}
	if err := json.Unmarshal(payload, &req); err != nil || len(req.Items) == 0 {
		return fail(400, "GetModuleLogs wants {\"schemaVersion\":\"1.0\",\"items\":[{\"id\":\"<module regex>\",\"filter\":{\"tail\":100}}],\"encoding\":\"none\",\"contentType\":\"text\"}")
	}
	if (req.Encoding != "" && req.Encoding != "none") || (req.ContentType != "" && req.ContentType != "text") {
		return fail(400, "GetModuleLogs: only encoding none and contentType text are supported")
	}
	type item struct {
		ID      string `json:"id"`
		Payload string `json:"payload"`
	}
	var out []item
	mods := e.sup.Status().Modules
	for _, it := range req.Items {
		re, err := regexp.Compile("^(?:" + it.ID + ")$")
		if err != nil {
			return fail(400, "GetModuleLogs: id %q is not a regular expression: %v", it.ID, err)
		}
		tail := 100
		if it.Filter.Tail != nil {
			tail = *it.Filter.Tail
		}
		for _, name := range slices.Sorted(maps.Keys(mods)) {
			if !re.MatchString(name) {
				continue
			}
			var b strings.Builder
			_ = e.sup.Logs(ctx, name, tail, false, &b)
			text := b.String()
			if len(text) > maxMethodLogs/len(mods) {
				text = text[len(text)-maxMethodLogs/len(mods):]
			}
			out = append(out, item{ID: name, Payload: text})
		}
	}
	return answer(200, out)
}
