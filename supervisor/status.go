package supervisor

import (
	"runtime"
	"time"
)

// Report is what the supervisor writes to the `$edgeAgent` twin's reported
// properties (the IoT Edge shape).
type Report struct {
	SchemaVersion      string                  `json:"schemaVersion"`
	LastDesiredVersion int64                   `json:"lastDesiredVersion"`
	LastDesiredStatus  DesiredStatus           `json:"lastDesiredStatus"`
	Runtime            RuntimeInfo             `json:"runtime"`
	SystemModules      map[string]ModuleStatus `json:"systemModules"`
	Modules            map[string]ModuleStatus `json:"modules"`
}

// DesiredStatus says whether the last deployment was applied: 200 applied;
// 400 the manifest or an image is wrong (the modules in force keep
// running); 500 it could not be applied yet (an image could not be
// fetched) and is retried.
type DesiredStatus struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// RuntimeInfo describes the module runtime.
type RuntimeInfo struct {
	Type     string            `json:"type"`
	Platform map[string]string `json:"platform"`
}

// ModuleStatus is one module's runtime state. RuntimeStatus is one of
// running, stopped, backoff, failed, unhealthy, unknown.
type ModuleStatus struct {
	RuntimeStatus      string         `json:"runtimeStatus"`
	Status             string         `json:"status"`
	RestartPolicy      string         `json:"restartPolicy"`
	Version            string         `json:"version,omitempty"`
	Type               string         `json:"type"`
	ExitCode           int            `json:"exitCode"`
	StatusDescription  string         `json:"statusDescription"`
	LastStartTimeUtc   string         `json:"lastStartTimeUtc,omitempty"`
	LastExitTimeUtc    string         `json:"lastExitTimeUtc,omitempty"`
	RestartCount       int            `json:"restartCount"`
	LastRestartTimeUtc string         `json:"lastRestartTimeUtc,omitempty"`
	ImagePullPolicy    string         `json:"imagePullPolicy,omitempty"`
	Settings           ModuleSettings `json:"settings"`
	PID                int            `json:"pid,omitempty"`
	// User is the uid:gid the module runs as when the edge gives modules
	// their own (it runs as root); empty when modules run as the edge.
	User string `json:"user,omitempty"`
}

// ModuleSettings are the settings a module runs with.
type ModuleSettings struct {
	Image         string `json:"image"`
	ImageHash     string `json:"imageHash,omitempty"`
	CreateOptions string `json:"createOptions,omitempty"`
}

func utc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func runtimeInfo() RuntimeInfo {
	return RuntimeInfo{Type: "process", Platform: map[string]string{"os": runtime.GOOS, "architecture": runtime.GOARCH}}
}

// report builds the current Report; called by the loop only.
func (s *Supervisor) buildReport() Report {
	r := Report{
		SchemaVersion:      "1.1",
		LastDesiredVersion: s.desiredVersion,
		LastDesiredStatus:  s.desiredStatus,
		Runtime:            runtimeInfo(),
		Modules:            make(map[string]ModuleStatus, len(s.mods)),
	}
	sys := ModuleStatus{RuntimeStatus: "running", Status: "running", RestartPolicy: "always", Type: "process",
		StatusDescription: "built into outpost edge", LastStartTimeUtc: utc(s.started)}
	r.SystemModules = map[string]ModuleStatus{"edgeAgent": sys, "edgeHub": sys}
	for name, in := range s.mods {
		st := in.st
		st.Status, st.RestartPolicy, st.Version, st.Type = in.spec.Status, in.spec.RestartPolicy.String(), in.spec.Version, in.spec.Type
		st.ImagePullPolicy = in.spec.ImagePullPolicy
		st.Settings = ModuleSettings{Image: in.spec.Image, ImageHash: in.digest, CreateOptions: in.spec.RawCreateOptions}
		st.PID = 0
		if in.proc != nil {
			st.PID = in.proc.cmd.Process.Pid
		}
		r.Modules[name] = st
	}
	return r
}
