package cli

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/outpost-edge/outpost/cmd/internal/secret"
)

// addFlags adds --config and the --FLAG-file flags of cmd's secrets.
func addFlags(cmd Command, fs *flag.FlagSet) {
	if cmd.Config {
		fs.String("config", "", "TOML file that sets any of these flags (keys are flag names, e.g. data = \"/var/lib/outpost\"); flags on the command line override it. Mode 0600 when it holds a key")
	}
	for _, s := range cmd.Secrets {
		fs.String(s.Flag+"-file", "", fmt.Sprintf("file holding --%s, e.g. ${CREDENTIALS_DIRECTORY}/%s under systemd (mode 0600; a trailing newline is ignored)", s.Flag, s.Flag))
	}
}

// prepare applies --config and resolves the secrets: a key from the
// command line (warned about), the config file, --FLAG-file or the
// environment, in that order.
func prepare(cmd Command, env Env, fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	warn := func(msg string) { fmt.Fprintf(env.Stderr, "warning: %s\n", msg) }
	if cmd.Config {
		if path := fs.Lookup("config").Value.String(); path != "" {
			if err := applyConfig(fs, path, given, cmd.Secrets, warn); err != nil {
				return err
			}
		}
	}
	for _, s := range cmd.Secrets {
		if given[s.Flag] {
			warn(ArgvWarning(s.Flag, s.Flag+"-file", s.Env))
		}
		if err := resolve(s, env, fs, warn); err != nil {
			return err
		}
	}
	return nil
}

// ArgvWarning says why a key on the command line is a bad idea and what to
// use instead.
func ArgvWarning(flag, fileFlag, env string) string {
	alt := "--" + fileFlag + " FILE"
	if env != "" {
		alt += " or the environment variable " + env
	}
	return fmt.Sprintf("--%s puts a key in the command line, which every local user can read in /proc/PID/cmdline; use %s instead", flag, alt)
}

func resolve(s Secret, env Env, fs *flag.FlagSet, warn func(string)) error {
	value := fs.Lookup(s.Flag).Value.String()
	file := fs.Lookup(s.Flag + "-file").Value.String()
	switch {
	case value != "" && file != "":
		return Usagef("give --%s or --%s-file, not both", s.Flag, s.Flag)
	case file != "":
		v, err := secret.Read(file, "--"+s.Flag+"-file", warn)
		if err != nil {
			return err
		}
		return fs.Set(s.Flag, v)
	case value == "" && s.Env != "":
		if v := env.Getenv(s.Env); v != "" {
			return fs.Set(s.Flag, v)
		}
	}
	return nil
}

// applyConfig sets the flags that path names and the command line does not.
func applyConfig(fs *flag.FlagSet, path string, given map[string]bool, secrets []Secret, warn func(string)) error {
	var m map[string]any
	if _, err := toml.DecodeFile(path, &m); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return Usagef("--config %s: %s", path, perr.Error())
		}
		return Usagef("--config: %v", err)
	}
	holdsKey := false
	for _, key := range sortedKeys(m) {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return Usagef("--config %s: unknown key %q; valid keys: %s", path, key, strings.Join(validKeys(fs), ", "))
		}
		v, err := configValue(m[key])
		if err != nil {
			return Usagef("--config %s: %s: %v", path, key, err)
		}
		holdsKey = holdsKey || slices.ContainsFunc(secrets, func(s Secret) bool { return s.Flag == key })
		if given[key] {
			continue
		}
		if err := fs.Set(key, v); err != nil {
			return Usagef("--config %s: %s = %q: %v", path, key, v, err)
		}
	}
	if msg := secret.ModeWarning(path); holdsKey && msg != "" {
		warn(msg)
	}
	return nil
}

func configValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, a number or true/false, got %T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func validKeys(fs *flag.FlagSet) []string {
	var keys []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			keys = append(keys, f.Name)
		}
	})
	return keys
}
