package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// What the commands that drive the hub's REST API (device, module, twin,
// deploy, events, c2d, method) share: the connection flags, -o, flags after
// positional arguments, and JSON output.

// hubCommand declares a command against the hub: it adds the shared flags
// to flags, and run gets the positional arguments with flags allowed
// anywhere among them (`device create sensor1 --parent gw1`).
func hubCommand(name, summary, usage string, flags func(*flag.FlagSet), run func(context.Context, *hubCall) error) cli.Command {
	return cli.Command{
		Name:    name,
		Summary: summary,
		Usage:   usage,
		Secrets: []cli.Secret{{Flag: hubCSFlag}},
		Flags: func(fs *flag.FlagSet) {
			fs.String(hubCSFlag, "", "the hub owner's connection string HostName=…;SharedAccessKeyName=owner;SharedAccessKey=… (default: env "+hubclient.EnvConnString+"; the hub writes it to <data>/owner.connection-string); keep it off the command line: env or --hub-connection-string-file")
			fs.String("hub-url", "", "URL of the hub's REST API, or a comma-separated list of a hub cluster's nodes (default: env "+hubclient.EnvURL+", else https://<HostName of the connection string>, http:// when that is loopback)")
			fs.String("hub-ca", "", "CA certificate (PEM) the hub's TLS certificate must chain to, instead of the system's roots (default: env "+hubclient.EnvCA+")")
			fs.Bool("insecure-link", false, "allow plain http:// to a hub that is not on loopback: the owner's token crosses the network readable (env "+hubclient.EnvInsecure+"=1)")
			if hasCS(name) {
				fs.String("o", "json", "output format: json, table, or cs (the connection string alone, for show and create)")
			} else {
				fs.String("o", "json", "output format: json or table")
			}
			if flags != nil {
				flags(fs)
			}
		},
		Run: func(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
			before := setFlags(fs)
			args, err := interspersed(fs)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := lateSecret(env, fs, before); err != nil {
				return err
			}
			h := &hubCall{env: env, fs: fs, args: args}
			switch o := fs.Lookup("o").Value.String(); {
			case o == "json":
			case o == "table":
				h.table = true
			case o == "cs" && hasCS(name):
				h.cs = true
			case hasCS(name):
				return cli.Usagef("-o %q: want json, table or cs", o)
			default:
				return cli.Usagef("-o %q: want json or table", o)
			}
			return run(ctx, h)
		},
	}
}

// interspersed returns fs's positional arguments after parsing the flags
// that follow them too: Go's flag package stops at the first non-flag. A
// "--" ends the flags; an unknown flag that is valid JSON (-5) is an
// argument. flag.ErrHelp means -h was given and the usage is printed.
func interspersed(fs *flag.FlagSet) ([]string, error) {
	var flags, pos []string
	rest := fs.Args()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil && json.Valid([]byte(a)) {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		if f == nil || hasValue || isBool(f) {
			continue
		}
		if i+1 < len(rest) {
			flags = append(flags, rest[i+1])
			i++
		}
	}
	if len(flags) == 0 {
		return pos, nil
	}
	// Parse prints its errors and the usage itself; this error goes through
	// cli.Main's usage path instead, like the first parse's would.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(flags)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage()
		return nil, err
	case err != nil:
		return nil, cli.Usagef("%v", err)
	}
	return pos, nil
}

const hubCSFlag = "hub-connection-string"

// hasCS reports whether command name prints identities, which have a
// connection string (-o cs).
func hasCS(name string) bool { return name == "device" || name == "module" }

func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// lateSecret does for --hub-connection-string and its -file given after
// the positional arguments what cli.Main does for those before them.
func lateSecret(env cli.Env, fs *flag.FlagSet, before map[string]bool) error {
	now := setFlags(fs)
	if now[hubCSFlag] && !before[hubCSFlag] {
		fmt.Fprintf(env.Stderr, "warning: %s\n", cli.ArgvWarning(hubCSFlag, hubCSFlag+"-file", hubclient.EnvConnString))
	}
	fileFlag := hubCSFlag + "-file"
	if !now[fileFlag] || before[fileFlag] {
		return nil
	}
	if now[hubCSFlag] {
		return cli.Usagef("give --%s or --%s, not both", hubCSFlag, fileFlag)
	}
	v, err := secret.Read(fs.Lookup(fileFlag).Value.String(), "--"+fileFlag, func(m string) { fmt.Fprintf(env.Stderr, "warning: %s\n", m) })
	if err != nil {
		return err
	}
	return fs.Set(hubCSFlag, v)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// hubCall is one run of a hub command.
type hubCall struct {
	env   cli.Env
	fs    *flag.FlagSet
	args  []string
	table bool // -o table
	cs    bool // -o cs: the connection string alone
}

// client connects to the hub named by the flags or the environment; it is
// made only once the arguments are known to be right.
func (h *hubCall) client() (*hubclient.Client, error) {
	trust := hubclient.Trust{CAFile: h.str("hub-ca"), Insecure: h.get("insecure-link").(bool)}
	c, err := hubclient.FromEnv(h.str(hubCSFlag), h.str("hub-url"), h.env.Getenv, trust)
	if err == nil && c.PlainRemote {
		fmt.Fprintf(h.env.Stderr, "outpost: warning: INSECURE LINK: plain HTTP to the hub at %s, which is not on this machine (--insecure-link): anyone on the path can read the owner's token\n", strings.Join(c.URLs, ","))
	}
	return c, err
}

func (h *hubCall) str(name string) string { return h.fs.Lookup(name).Value.String() }

func (h *hubCall) get(name string) any {
	return h.fs.Lookup(name).Value.(flag.Getter).Get()
}

// isSet reports whether flag name was given on the command line.
func (h *hubCall) isSet(name string) bool {
	set := false
	h.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// only refuses the flags in names that were given to subcommand sub, which
// does not use them.
func (h *hubCall) only(sub string, names ...string) error {
	for _, n := range names {
		if h.isSet(n) {
			return cli.Usagef("--%s does not apply to %s %s", n, h.fs.Name(), sub)
		}
	}
	return nil
}

// sub splits off the subcommand and checks the number of its arguments.
func (h *hubCall) sub(subs map[string]int) (string, []string, error) {
	if len(h.args) == 0 {
		return "", nil, cli.Usagef("missing subcommand")
	}
	name, args := h.args[0], h.args[1:]
	n, ok := subs[name]
	switch {
	case !ok:
		return "", nil, cli.Usagef("unknown subcommand %q", name)
	case len(args) != n:
		return "", nil, cli.Usagef("%s %s takes %d argument(s), got %d", h.fs.Name(), name, n, len(args))
	}
	return name, args, nil
}

// writeJSON prints raw JSON pretty-printed with a two-space indent, fields
// in the order received. Empty input prints nothing.
func (h *hubCall) writeJSON(raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the hub's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := h.env.Stdout.Write(buf.Bytes())
	return err
}

// write prints the hub's JSON answer as received, or with -o table as
// FIELD VALUE rows (see writeTable).
func (h *hubCall) write(raw []byte) error {
	if h.table {
		return writeTable(h.env.Stdout, raw)
	}
	return h.writeJSON(raw)
}

// writeValue prints v as pretty JSON.
func (h *hubCall) writeValue(v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	return h.write(b)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return bytes.TrimSpace(buf.Bytes()), err
}

// withField appends "key":value to the JSON object obj, keeping the
// object's fields and their order.
func withField(obj []byte, key string, value any) ([]byte, error) {
	obj = bytes.TrimSpace(obj)
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return nil, errors.New("the hub's answer is not a JSON object")
	}
	k, err := marshal(key)
	if err != nil {
		return nil, err
	}
	v, err := marshal(value)
	if err != nil {
		return nil, err
	}
	inner := bytes.TrimSpace(obj[1 : len(obj)-1])
	out := append([]byte{'{'}, inner...)
	if len(inner) > 0 {
		out = append(out, ',')
	}
	out = append(out, k...)
	out = append(out, ':')
	out = append(out, v...)
	return append(out, '}'), nil
}

// checkID refuses ids the hub would refuse, before asking it.
func checkID(what, id string) error {
	if err := sas.CheckID(what, id); err != nil {
		return cli.Usagef("%v", err)
	}
	return nil
}

// target parses D or D/M.
func target(s string) (d, m string, err error) {
	d, m, hasModule := strings.Cut(s, "/")
	if err := checkID("device id", d); err != nil {
		return "", "", err
	}
	if hasModule {
		if err := checkID("module id", m); err != nil {
			return "", "", err
		}
	}
	return d, m, nil
}

// jsonArg checks that the argument what is JSON (an object when object is
// set) and returns it; example shows a good one.
func jsonArg(what, s string, object bool, example string) (json.RawMessage, error) {
	s = strings.TrimSpace(s)
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON (%v); quote it for the shell, e.g. '%s'", what, err, example)
	}
	if _, ok := v.(map[string]any); object && !ok {
		return nil, fmt.Errorf("%s must be a JSON object {…}, got %s", what, short(s))
	}
	return json.RawMessage(s), nil
}

func short(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}
