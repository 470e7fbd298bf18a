package supervisor

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDeployment(t *testing.T) {
	const ok = `{"schemaVersion":"1.1","$version":4,
	  "runtime":{"type":"docker","settings":{}},"systemModules":{"edgeHub":{}},
	  "modules":{"sensor":{"version":"1.0","type":"process","status":"running","restartPolicy":"on-unhealthy","startupOrder":1,
	    "env":{"A":{"value":"x"},"N":{"value":2}},
	    "settings":{"image":"sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `",
	      "createOptions":"{\"Cmd\":[\"bin/s\"],\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"]}","createOptions01":",\"StopTimeout\":3}"}}}}`
	d, err := ParseDeployment([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	m := d.Modules["sensor"]
	if m.RestartPolicy != OnUnhealthy || m.StartupOrder != 1 || m.Env["N"] != "2" || m.Create.Cmd[0] != "bin/s" || *m.Create.StopTimeout != 3 {
		t.Fatalf("parsed %+v", m)
	}
	d, err = ParseDeployment([]byte(`{"modules":{"m":{"type":"process","settings":{"image":"/bin/true"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if m := d.Modules["m"]; m.RestartPolicy != Always || m.Status != "running" || m.StartupOrder != ^uint32(0) {
		t.Fatalf("defaults: %+v", m)
	}

	bad := []struct{ in, want string }{
		{`[]`, "not a JSON object"},
		{`{"modulez":{}}`, `modulez: unknown field`},
		{`{"schemaVersion":"2.0","modules":{}}`, `schemaVersion: "2.0" is not supported`},
		{`{"modules":{"a b":{}}}`, `modules.a b: invalid module name`},
		{`{"modules":{"edgeHub":{}}}`, `built in`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x"},"restartPolicy":"sometimes"}}}`, `modules.m.restartPolicy: "sometimes": must be one of`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x"},"status":"paused"}}}`, `modules.m.status`},
		{`{"modules":{"m":{"type":"process","settings":{}}}}`, `modules.m.settings.image: missing`},
		{`{"modules":{"m":{"type":"process"}}}`, `modules.m.settings: missing`},
		{`{"modules":{"m":{"settings":{"image":"x"}}}}`, `modules.m.type: missing`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","foo":"y"}}}}`, `modules.m.settings.foo: unknown field`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"sha256:abc"}}}}`, `a digest is sha256:<64 lowercase hex>`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions02":"{}"}}}}`, `createOptions01: missing`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions":"{\"Healthcheck\":{\"Test\":[\"NONE\"]}}"}}}}`, `Healthcheck.Test`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions":"{\"WorkingDir\":\"../x\"}"}}}}`, `WorkingDir`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions":"{\"HostConfig\":{\"Ulimits\":[{\"Name\":\"bogus\"}]}}"}}}}`, `unknown ulimit "bogus"`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x"},"env":{"a.b":{"value":"1"}}}}}`, `modules.m.env.a.b: invalid variable name`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x"},"env":{"A":{"value":{}}}}}}`, `must be a string, number or boolean`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x"},"extra":1}}}`, `unknown field "extra"`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions":"{\"User\":\"a:b:c\"}"}}}}`, `createOptions.User: "a:b:c": want uid, uid:gid, name or name:group`},
		{`{"modules":{"m":{"type":"process","settings":{"image":"x","createOptions":"{\"User\":\":0\"}"}}}}`, `createOptions.User`},
		{`{"modules":{}} {}`, `trailing data`},
	}
	for _, c := range bad {
		_, err := ParseDeployment([]byte(c.in))
		var me *ManifestError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want a ManifestError containing %q", c.in, err, c.want)
		}
	}
}

func FuzzParseDeployment(f *testing.F) {
	f.Add([]byte(`{"modules":{"m":{"type":"process","settings":{"image":"/bin/true","createOptions":"{\"Cmd\":[\"a\"]}"}}}}`))
	f.Add([]byte(`{"modules":{"m":{"type":"process","settings":{"image":"a.tgz","createOptions":"{\"Entrypoint\":\"bin/m\",\"Cmd\":null}"}}}}`))
	f.Add([]byte(`{"modules":{"m":{"type":"process","settings":{"image":"a.tgz","createOptions":"{\"Entrypoint\":[\"bin/m\",\"-v\"],\"Cmd\":[1]}"}}}}`))
	f.Add([]byte(`{"schemaVersion":"1.1","modules":{"m":{"type":"process","restartPolicy":"on-unhealthy","settings":{"image":"x","createOptions":"{\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"]}}"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDeployment(data)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error is not a ManifestError: %v", err)
			}
			return
		}
		for name, m := range d.Modules {
			if m.Image == "" || m.Type != "process" || (m.Status != "running" && m.Status != "stopped") {
				t.Fatalf("accepted an invalid module %q: %+v", name, m)
			}
			if m.RestartPolicy == OnUnhealthy && m.Create.Healthcheck == nil {
				t.Fatalf("on-unhealthy without a health check accepted")
			}
			if !same(m, m) {
				t.Fatal("a module differs from itself")
			}
		}
	})
}

func TestParseUIDRange(t *testing.T) {
	if r, err := ParseUIDRange("61000-61999"); err != nil || r != DefaultModuleUIDs {
		t.Fatalf("61000-61999: %v %v", r, err)
	}
	for _, bad := range []string{"", "61000", "0-10", "10-5", "a-b", "1-4294967295", "-5"} {
		if _, err := ParseUIDRange(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
