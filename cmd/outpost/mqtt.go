package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

var mqttCmd = cli.Command{
	Name:    "mqtt",
	Summary: "local MQTT accounts of generic devices: `mqtt hash-password` reads a password on stdin and prints its bcrypt hash for mqttBroker.accounts[].passwordHash",
	Usage:   "hash-password [--cost N]  (the password on stdin, never in argv)",
	Run: func(_ context.Context, env cli.Env, fs *flag.FlagSet) error {
		switch fs.Arg(0) {
		case "hash-password":
			return hashPassword(env, os.Stdin, fs.Args()[1:])
		case "":
			return cli.Usagef("mqtt needs a subcommand: hash-password")
		}
		return cli.Usagef("unknown mqtt subcommand %q; want hash-password", fs.Arg(0))
	},
}

// hashPassword prints the bcrypt hash of a password read from in: typed
// twice without echo on a terminal, else the first line.
func hashPassword(env cli.Env, in *os.File, args []string) error {
	fs := cli.SubFlags("mqtt hash-password", "[--cost N]  (the password on stdin)", "print the bcrypt hash of a password read on stdin, for an account's passwordHash in mqttBroker.accounts")
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d: each step doubles the time of a check (cost 10: ~50 ms); the edge bounds concurrent checks and caches successes", bcrypt.MinCost, bcrypt.MaxCost))
	if err := cli.Parse(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.SubUsagef(fs, "the password is read on stdin, never from the command line (where every local user sees it); got %q", fs.Arg(0))
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return cli.SubUsagef(fs, "--cost %d: want %d to %d", *cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	pw, err := readPassword(env, in)
	if err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword(pw, *cost)
	if err != nil {
		return fmt.Errorf("hash the password: %w", err)
	}
	_, err = fmt.Fprintln(env.Stdout, string(h))
	return err
}

func readPassword(env cli.Env, in *os.File) ([]byte, error) {
	if term.IsTerminal(int(in.Fd())) {
		fmt.Fprint(env.Stderr, "password: ")
		pw, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read the password: %w", err)
		}
		fmt.Fprint(env.Stderr, "again: ")
		again, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read the password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords differ; nothing was hashed")
		}
		return checkPassword(pw)
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the password from stdin: %w", err)
	}
	return checkPassword(bytes.TrimRight(line, "\r\n"))
}

func checkPassword(pw []byte) ([]byte, error) {
	switch {
	case len(pw) == 0:
		return nil, errors.New("no password on stdin; pipe it in (printf %s \"$PW\" | outpost mqtt hash-password) or type it at the prompt")
	case len(pw) > 72:
		return nil, fmt.Errorf("the password is %d bytes; bcrypt takes at most 72", len(pw))
	}
	return pw, nil
}
