// Package cli holds what every outpost subcommand shares: the command table,
// flag parsing with -h, --config files (TOML, keys are flag names), keys
// read from --FLAG-file or the environment (and a warning for keys in the
// command line), and the exit-status contract (0 ok, 1 error with one
// `error: …` line on stderr, 2 bad usage).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Version is set at build time with -ldflags "-X …/cli.Version=…".
var Version = "dev"

// ErrUsage marks an error caused by how the command was called; Main exits 2.
var ErrUsage = errors.New("bad usage")

// Env is what a command gets to work with.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Command is one subcommand of outpost.
type Command struct {
	Name    string
	Summary string // one line for `outpost help`
	Usage   string // the argument synopsis after the name
	// Flags registers the command's flags; may be nil.
	Flags func(fs *flag.FlagSet)
	// Run executes the command with the parsed flag set's remaining args.
	Run func(ctx context.Context, env Env, fs *flag.FlagSet) error
	// Config adds --config FILE: a TOML file whose keys are flag names and
	// that sets every flag not given on the command line.
	Config bool
	// Secrets are the flags that carry a key. Each gets a --FLAG-file
	// flag; a key given in the command line, readable by every local user
	// in /proc/PID/cmdline, draws a warning naming the file and the
	// environment variable.
	Secrets []Secret
}

// Secret is a flag that carries a key.
type Secret struct {
	Flag string // e.g. "connection-string"; --connection-string-file is added
	Env  string // the environment variable read when neither flag is given ("": none)
}

// Usagef returns an error that makes Main exit 2.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Main runs the command named by args[0] from cmds and returns the exit status.
func Main(args []string, cmds []Command, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 {
		help(env.Stderr, cmds)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		return helpCmd(args[1:], cmds, env)
	case "-v", "-version", "--version":
		name = "version"
	}
	cmd, ok := find(cmds, name)
	if !ok {
		fmt.Fprintf(env.Stderr, "error: unknown command %q; run 'outpost help' for the list\n", name)
		return 2
	}
	fs := newFlagSet(cmd, env.Stderr)
	if err := Parse(env, fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exit(cmd, env, err)
	}
	// From here on the flag set prints only the usage asked for with -h
	// among later arguments (`outpost device create X -h`): to stdout.
	fs.SetOutput(env.Stdout)
	if err := prepare(cmd, env, fs); err != nil {
		return exit(cmd, env, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return exit(cmd, env, cmd.Run(ctx, env, fs))
}

// exit prints err as the exit-status contract says and returns the status.
func exit(cmd Command, env Env, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		synopsis := fmt.Sprintf("usage: outpost %s %s", cmd.Name, cmd.Usage)
		var sub *subUsageError
		if errors.As(err, &sub) {
			synopsis = sub.synopsis
		}
		fmt.Fprintf(env.Stderr, "error: %s\n%s\n", strings.TrimPrefix(err.Error(), ErrUsage.Error()+": "), synopsis)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0 // -h of a subcommand: Parse printed its usage
	default:
		fmt.Fprintf(env.Stderr, "error: %s\n", oneLine(err.Error()))
		return 1
	}
}

// Parse parses args into fs. With -h (or --help) it prints fs's usage on
// stdout and returns flag.ErrHelp, which makes Main exit 0; a bad flag is a
// usage error (exit 2) that names it. Subcommands with flag sets of their
// own (`edge status`) parse with it too: see SubFlags.
func Parse(env Env, fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(env.Stdout)
		fs.Usage()
		fs.SetOutput(out)
		return flag.ErrHelp
	case err != nil:
		return SubUsagef(fs, "%v", err)
	}
	return nil
}

// subUsageError is a usage error of a subcommand with a flag set of its
// own (SubFlags): Main prints that subcommand's synopsis with it.
type subUsageError struct {
	err      error
	synopsis string
}

func (e *subUsageError) Error() string { return e.err.Error() }
func (e *subUsageError) Unwrap() error { return e.err }

// SubUsagef is Usagef for a subcommand whose flag set is fs: the synopsis
// printed with the error is fs's (the first line of its usage), not the
// whole command's.
func SubUsagef(fs *flag.FlagSet, format string, args ...any) error {
	var buf strings.Builder
	out := fs.Output()
	fs.SetOutput(&buf)
	fs.Usage()
	fs.SetOutput(out)
	synopsis, _, _ := strings.Cut(buf.String(), "\n")
	return &subUsageError{err: Usagef(format, args...), synopsis: synopsis}
}

// SubFlags is the flag set of subcommand name ("edge status") whose usage
// prints as every command's does: synopsis, summary, flags.
func SubFlags(name, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { printUsage(fs, name, usage, summary) }
	return fs
}

func printUsage(fs *flag.FlagSet, name, usage, summary string) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: outpost %s %s\n\n%s\n", name, usage, summary)
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}

func newFlagSet(cmd Command, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	addFlags(cmd, fs)
	fs.Usage = func() { printUsage(fs, cmd.Name, cmd.Usage, cmd.Summary) }
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func helpCmd(args []string, cmds []Command, env Env) int {
	if len(args) == 0 {
		help(env.Stdout, cmds)
		return 0
	}
	cmd, ok := find(cmds, args[0])
	if !ok {
		fmt.Fprintf(env.Stderr, "error: unknown command %q; run 'outpost help' for the list\n", args[0])
		return 2
	}
	fs := newFlagSet(cmd, env.Stdout)
	fs.Usage()
	return 0
}

func help(w io.Writer, cmds []Command) {
	fmt.Fprintf(w, "outpost %s: offline-first edge runtime speaking Azure IoT Hub conventions\n\nusage: outpost COMMAND [flags] [args]\n\ncommands:\n", Version)
	sorted := append([]Command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nRun 'outpost help COMMAND' or 'outpost COMMAND -h' for the flags of a command.")
}

func find(cmds []Command, name string) (Command, bool) {
	for _, c := range cmds {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
