package edge

import (
	"strings"
	"testing"
)

func TestCheckManifest(t *testing.T) {
	const agent = `"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"filter":{"type":"process","settings":{"image":"sh"}}}}}`
	const hub = `"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}}`
	for _, tt := range []struct{ name, mc, want string }{
		{"good", `{` + agent + `,` + hub + `,"filter":{"properties.desired":{"threshold":3}}}`, ""},
		{"misspelt system module", `{` + agent + `,"$edgeAgnet":{"properties.desired":{}}}`, `modulesContent.$edgeAgnet: unknown system module`},
		{"no properties.desired", `{"$edgeHub":{"desired":{}}}`, `modulesContent.$edgeHub: unknown field "desired"`},
		{"misspelt setting", `{"$edgeAgent":{"properties.desired":{"modules":{"m":{"type":"process","restartPolcy":"always"}}}}}`, `unknown field "restartPolcy"`},
		{"bad route", `{"$edgeHub":{"properties.desired":{"routes":{"r":"FROM /messages/* INTO"}}}}`, `route "r"`},
		{"twin of no module", `{` + agent + `,"filtr":{"properties.desired":{}}}`, `modulesContent.filtr: a module twin for a module $edgeAgent does not run (its modules: filter)`},
		{"not an object", `[]`, `modulesContent: want`},
	} {
		err := CheckManifest([]byte(tt.mc))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
