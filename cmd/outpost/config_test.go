package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// TestExampleConfigs keeps docs/examples/edge.toml and hub.toml true to the
// commands: each mentions every key the command takes, and the real loader
// accepts the file as written and with every commented-out key uncommented.
func TestExampleConfigs(t *testing.T) {
	commented := regexp.MustCompile(`(?m)^# ?([a-z][a-z0-9-]*) = `)
	for _, tc := range []struct {
		file string
		cmd  cli.Command
	}{
		{"../../docs/examples/edge.toml", edgeCmd},
		{"../../docs/examples/hub.toml", hubCmd},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			for _, key := range cli.ConfigKeys(tc.cmd) {
				if !regexp.MustCompile(`(?m)^(# ?)?` + regexp.QuoteMeta(key) + ` = `).MatchString(text) {
					t.Errorf("%s does not mention %q (outpost %s --%s): add it, commented out with its default and what it does", tc.file, key, tc.cmd.Name, key)
				}
			}
			if err := cli.CheckConfig(tc.cmd, tc.file); err != nil {
				t.Errorf("as written: %v", err)
			}
			all := filepath.Join(t.TempDir(), "all.toml")
			if err := os.WriteFile(all, []byte(commented.ReplaceAllString(text, "$1 = ")), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := cli.CheckConfig(tc.cmd, all); err != nil {
				t.Errorf("with every key uncommented: %v", err)
			}
			if n := strings.Count(text, "\n"); n < 10 {
				t.Errorf("%s: %d lines, want each key explained", tc.file, n)
			}
		})
	}
}
