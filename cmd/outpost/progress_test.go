package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestImagePushRefusesNonImages: what the edge could neither run nor
// unpack is refused before anything is sent, with what an image may be.
func TestImagePushRefusesNonImages(t *testing.T) {
	ih := newImageHub(t, 0)
	text := writeFile(t, "notes.txt", []byte("just some notes\n"))
	script := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, want string }{
		{text, "is neither an executable nor an archive (a module image is an ELF executable, a #! script, or a .tar, .tar.gz or .zip archive)"},
		{script, "is a script without exec bits; chmod +x"},
	} {
		if code, _, errs := ih.run("image", "push", c.file); code != 1 || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("push %s: exit %d, %q; want 1 and %q", c.file, code, errs, c.want)
		}
	}
	if imgs, err := ih.h.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("the hub has %v (%v)", imgs, err)
	}
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	ih.mustRun(t, "image", "push", script)
}

// TestProgressRateLimited: on a terminal the progress line is rewritten
// at most every progressEvery however small the reads, and ends with one
// final line.
func TestProgressRateLimited(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	p := &progress{w: &out, tty: true, what: "push app", total: 10 << 20, now: func() time.Time { return now }}
	p.start = now
	r := p.reader(io.LimitReader(zeros{}, 10<<20))
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			now = now.Add(time.Millisecond) // 1 KiB per ms: 10 s in all
		}
		if err != nil {
			break
		}
	}
	p.end(nil)
	updates := strings.Count(out.String(), "\rpush app: ")
	if updates < 10 || updates > 10*int(time.Second/progressEvery)+1 {
		t.Errorf("%d updates over 10 s, want a few a second", updates)
	}
	if !regexp.MustCompile(`\rpush app: 4\.\dMiB of 10MiB \(4\d%\)\r`).MatchString(out.String()) || !strings.HasSuffix(out.String(), "\r\x1b[Kpush app: 10MiB in 10.24s\n") {
		t.Errorf("output ends %q", out.String()[max(0, out.Len()-200):])
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }
