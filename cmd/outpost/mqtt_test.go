package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// hash-password hashes the first line of stdin (never an argument), and
// refuses an empty one.
func TestMQTTHashPassword(t *testing.T) {
	run := func(stdin string, args ...string) (string, error) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { w.WriteString(stdin); w.Close() }()
		defer r.Close()
		var out, errOut bytes.Buffer
		err = hashPassword(cli.Env{Stdout: &out, Stderr: &errOut}, r, args)
		return strings.TrimSpace(out.String()), err
	}
	h, err := run("s3cret pass\r\nnext line\n", "--cost", "4")
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret pass")) != nil {
		t.Fatalf("%q is not the hash of the first line", h)
	}
	if c, _ := bcrypt.Cost([]byte(h)); c != 4 {
		t.Errorf("cost %d, want 4", c)
	}
	if _, err := run("", "--cost", "4"); err == nil || !strings.Contains(err.Error(), "no password on stdin") {
		t.Errorf("empty stdin: %v", err)
	}
	if _, err := run("x\n", "s3cret"); err == nil || !strings.Contains(err.Error(), "never from the command line") {
		t.Errorf("password in argv: %v", err)
	}
	if _, err := run("x\n", "--cost", "99"); err == nil {
		t.Error("cost 99 accepted")
	}
}
