package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/supervisor"
)

// CheckManifest checks a deployment's modulesContent with the parsers the
// edge applies it with, so that `outpost deploy` refuses before sending
// what the edge would refuse after: an unknown system module ($edgeAgnet),
// an entry without "properties.desired", a misspelt module setting, a route
// that does not parse, a module twin for a module the deployment does not
// run. Every problem is reported, each with its path.
func CheckManifest(modulesContent []byte) error {
	var mc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(modulesContent, &mc); err != nil {
		return fmt.Errorf("modulesContent: want {\"$edgeAgent\":{\"properties.desired\":…},…}: %w", err)
	}
	var errs []error
	var modules map[string]supervisor.Module
	names := make([]string, 0, len(mc))
	for name := range mc {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		desired, err := desiredOf(name, mc[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case name == "$edgeAgent":
			d, err := supervisor.ParseDeployment(desired)
			if err != nil {
				errs = append(errs, fmt.Errorf("$edgeAgent: %w", err))
				continue
			}
			modules = d.Modules
		case name == "$edgeHub":
			if _, err := parseEdgeHub(desired, "$edgeHub"); err != nil {
				errs = append(errs, err)
			}
		case strings.HasPrefix(name, "$"):
			errs = append(errs, fmt.Errorf("modulesContent.%s: unknown system module (want $edgeAgent or $edgeHub)", name))
		}
	}
	if modules != nil {
		for _, name := range names {
			if _, ok := modules[name]; !ok && !strings.HasPrefix(name, "$") {
				errs = append(errs, fmt.Errorf("modulesContent.%s: a module twin for a module $edgeAgent does not run (its modules: %s)",
					name, strings.Join(slices.Sorted(maps.Keys(modules)), ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// desiredOf returns an entry's "properties.desired", refusing other keys.
func desiredOf(name string, entry map[string]json.RawMessage) ([]byte, error) {
	for k := range entry {
		if k != "properties.desired" {
			return nil, fmt.Errorf("modulesContent.%s: unknown field %q (want \"properties.desired\")", name, k)
		}
	}
	d, ok := entry["properties.desired"]
	if !ok {
		return nil, fmt.Errorf("modulesContent.%s: no \"properties.desired\"", name)
	}
	return d, nil
}
