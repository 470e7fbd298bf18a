package broker

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy authorizes the free pub/sub topics that local clients use between
// themselves (everything outside their IoT Hub topics). It is the
// `mqttBroker.authorizations` list of the $edgeHub desired properties, as
// IoT Edge 1.2 defined it:
//
//	{"mqttBroker": {"authorizations": [
//	  {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:publish","mqtt:subscribe"], "resources": ["shared/{{iot:device_id}}/#"]}]},
//	  {"identities": ["gw1/filter"], "deny": [{"operations": ["mqtt:publish"], "resources": ["shared/#"]}]}]}}
//
// Identities are client ids ("d" or "d/m"); "{{iot:identity}}" matches
// every client. Resources are MQTT topic filters and may use
// {{iot:identity}}, {{iot:device_id}} and {{iot:module_id}} of the client.
// A deny that matches wins over any allow; without a matching allow the
// operation is refused. The zero Policy refuses every free topic.
type Policy struct {
	rules []rule
}

type rule struct {
	identities []string
	allow      bool
	operations map[string]bool
	resources  []string
}

type policyJSON struct {
	MQTTBroker struct {
		Authorizations []struct {
			Identities []string    `json:"identities"`
			Allow      []operation `json:"allow"`
			Deny       []operation `json:"deny"`
		} `json:"authorizations"`
	} `json:"mqttBroker"`
}

type operation struct {
	Operations []string `json:"operations"`
	Resources  []string `json:"resources"`
}

// ParsePolicy reads the policy from $edgeHub desired properties; a document
// without mqttBroker.authorizations gives the refuse-all policy.
func ParsePolicy(desired []byte) (*Policy, error) {
	var doc policyJSON
	if err := json.Unmarshal(desired, &doc); err != nil {
		return nil, fmt.Errorf("authorization policy: %w", err)
	}
	p := &Policy{}
	for i, st := range doc.MQTTBroker.Authorizations {
		if len(st.Identities) == 0 {
			return nil, fmt.Errorf("authorization policy: statement %d has no identities", i)
		}
		for _, set := range []struct {
			ops   []operation
			allow bool
		}{{st.Allow, true}, {st.Deny, false}} {
			for _, op := range set.ops {
				r, err := newRule(st.Identities, set.allow, op)
				if err != nil {
					return nil, fmt.Errorf("authorization policy: statement %d: %w", i, err)
				}
				p.rules = append(p.rules, r)
			}
		}
	}
	return p, nil
}

func newRule(ids []string, allow bool, op operation) (rule, error) {
	r := rule{identities: ids, allow: allow, operations: map[string]bool{}, resources: op.Resources}
	for _, o := range op.Operations {
		switch o {
		case "mqtt:publish", "mqtt:subscribe", "mqtt:connect":
			r.operations[o] = true
		default:
			return r, fmt.Errorf("unknown operation %q (want mqtt:publish, mqtt:subscribe or mqtt:connect)", o)
		}
	}
	return r, nil
}

// Allowed reports whether client id may publish to topic (write) or
// subscribe to / receive on filter topic.
func (p *Policy) Allowed(id, topic string, write bool) bool {
	if p == nil {
		return false
	}
	op := "mqtt:subscribe"
	if write {
		op = "mqtt:publish"
	}
	allowed := false
	for _, r := range p.rules {
		if !r.operations[op] || !r.hasIdentity(id) || !r.coversTopic(id, topic) {
			continue
		}
		if !r.allow {
			return false
		}
		allowed = true
	}
	return allowed
}

func (r rule) hasIdentity(id string) bool {
	for _, i := range r.identities {
		if i == "{{iot:identity}}" || i == id {
			return true
		}
	}
	return false
}

func (r rule) coversTopic(id, topic string) bool {
	for _, res := range r.resources {
		if f, ok := substitute(res, id); ok && filterCovers(f, topic) {
			return true
		}
	}
	return false
}

// substitute fills the placeholders of a resource with the client's ids.
// A substituted value must stay inside one topic level and match only
// itself, so it can never widen a grant: a value that is empty (a module
// placeholder for a device client) or holds '+', '#', '/' or NUL (an id
// that bypassed validation) makes the resource match nothing (false).
// {{iot:identity}} of a module is "d/m": two levels, each checked.
func substitute(res, id string) (string, bool) {
	if !strings.Contains(res, "{{") {
		return res, true
	}
	device, module, isModule := strings.Cut(id, "/")
	for _, p := range []struct {
		placeholder string
		ok          bool
	}{
		{"{{iot:identity}}", safeLevel(device) && (!isModule || safeLevel(module))},
		{"{{iot:device_id}}", safeLevel(device)},
		{"{{iot:module_id}}", safeLevel(module)},
	} {
		if !p.ok && strings.Contains(res, p.placeholder) {
			return "", false
		}
	}
	// ReplaceAll allocates only where a placeholder is present: this runs
	// per ACL check (each publish and subscription on a free topic).
	res = strings.ReplaceAll(res, "{{iot:identity}}", id)
	res = strings.ReplaceAll(res, "{{iot:device_id}}", device)
	return strings.ReplaceAll(res, "{{iot:module_id}}", module), true
}

// safeLevel tells a value that is one topic level matching only itself.
func safeLevel(v string) bool {
	return v != "" && !strings.ContainsAny(v, "+#/\x00")
}

// filterCovers reports whether filter f matches every topic that t (a topic
// or itself a filter) can stand for.
func filterCovers(f, t string) bool {
	fs, ts := strings.Split(f, "/"), strings.Split(t, "/")
	for i, seg := range fs {
		if seg == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if seg == "+" {
			if ts[i] == "#" {
				return false
			}
			continue
		}
		if seg != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}
