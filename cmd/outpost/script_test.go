package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/samples"
	"github.com/outpost-edge/outpost/cmd/internal/scenario"
)

// TestMain lets testscript run this test binary as the real `outpost`
// process, so scenarios exercise signals, exits and restarts for real.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"outpost":            func() { os.Exit(run(os.Args[1:])) },
		"outpost-tempsensor": samples.TempSensorMain,
		"outpost-filter":     samples.FilterMain,
	})
}

// TestScripts runs every scenario in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams())
}

// scriptParams are those of `outpost scenario run` (scenario.Run) but for
// the directory: the same commands and rules.
func scriptParams() testscript.Params {
	return testscript.Params{
		Dir:                 "../../testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds:                scenario.Commands(),
		Setup:               scenario.OpenWork,
	}
}

// TestLibrary runs the scenarios built into the binary (`outpost scenario
// list`), as `outpost scenario run NAME` does.
func TestLibrary(t *testing.T) {
	p := scriptParams()
	p.Dir = filepath.Join("..", "internal", "scenario", scenario.LibraryDir)
	testscript.Run(t, p)
}

// TestDocsScenarioExample runs the scenario that docs/scenarios.md shows
// under "Writing one", as written there.
func TestDocsScenarioExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n## Writing one\n")
	if ok {
		_, rest, ok = strings.Cut(rest, "\n```\n")
	}
	example, _, closed := strings.Cut(rest, "\n```\n")
	if !ok || !closed || !strings.Contains(example, "exec outpost edge") {
		t.Fatal("docs/scenarios.md: no scenario in a fenced block under \"Writing one\"")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docs_example.txtar"), []byte(example+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := scriptParams()
	p.Dir = dir
	testscript.Run(t, p)
}
