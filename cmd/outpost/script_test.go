package main

import (
	"os"
	"path/filepath"
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
