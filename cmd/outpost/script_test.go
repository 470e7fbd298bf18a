package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run this test binary as the real `outpost`
// process, so scenarios exercise signals, exits and restarts for real.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"outpost": func() { os.Exit(run(os.Args[1:])) },
	})
}

// TestScripts runs every scenario in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams())
}

func scriptParams() testscript.Params {
	return testscript.Params{
		Dir:                 "../../testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds:                scriptCmds,
	}
}
