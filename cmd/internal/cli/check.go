package cli

import "io"

// CheckConfig reads a --config file for cmd as the command would before it
// runs, and returns what is wrong with it (a file that is not TOML, an
// unknown key, a value its flag refuses), without running the command. It
// sets cmd's flag variables as a run would.
func CheckConfig(cmd Command, path string) error {
	fs := newFlagSet(cmd, io.Discard)
	return applyConfig(fs, path, map[string]bool{}, cmd.Secrets, func(string) {})
}

// ConfigKeys lists the keys a --config file may set for cmd: its flags and
// the -file flags of its secrets.
func ConfigKeys(cmd Command) []string {
	return validKeys(newFlagSet(cmd, io.Discard))
}
