package supervisor

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUnpack: any bytes as an image archive either unpack into the
// module's directory or fail cleanly; nothing is written outside it and a
// failed unpack leaves no directory behind.
func FuzzUnpack(f *testing.F) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.WriteHeader(&tar.Header{Name: "bin/mod", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tb.Bytes())
	zw.Close()
	var zb bytes.Buffer
	z := zip.NewWriter(&zb)
	w, _ := z.Create("../../zipslip")
	_, _ = w.Write([]byte("x"))
	z.Close()
	f.Add(tb.Bytes())
	f.Add(gz.Bytes())
	f.Add(zb.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		blob := filepath.Join(root, "images", "sha256-x")
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(blob, data, 0o644); err != nil {
			t.Fatal(err)
		}
		kind, err := archiveKind(blob)
		if err != nil || kind == "" {
			return
		}
		dir := blob + ".d"
		err = unpack(blob, kind, dir)
		if _, serr := os.Stat(dir); (err == nil) != (serr == nil) {
			t.Fatalf("unpack error %v, directory present: %v", err, serr == nil)
		}
		_ = filepath.Walk(root, func(p string, info os.FileInfo, _ error) error {
			if p != root && !strings.HasPrefix(p, filepath.Join(root, "images")) {
				t.Fatalf("unpack wrote %s, outside the image cache", p)
			}
			if info != nil && info.Mode()&os.ModeSymlink != 0 {
				t.Fatalf("unpack made a link: %s", p)
			}
			return nil
		})
		// Leftover temporary unpack directories would fill the disk.
		entries, _ := os.ReadDir(filepath.Join(root, "images"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "unpack-") {
				t.Fatalf("temporary directory %s left behind", e.Name())
			}
		}
	})
}
