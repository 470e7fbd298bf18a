package cli

import (
	"flag"
	"io"
	"os"
)

// Load parses args as cmd's flags and applies its --config file and
// secrets (--FLAG-file, the environment) as Main does before Run. A command
// that reads another command's configuration uses it: `outpost edge check
// --config FILE` reads the edge's.
func Load(cmd Command, env Env, args []string) (*flag.FlagSet, error) {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	fs := newFlagSet(cmd, io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, Usagef("%v", err)
	}
	return fs, prepare(cmd, env, fs)
}
