package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// envelopeHome is the one file that spells out the {code,message} error
// envelope of Outpost's HTTP APIs (docs/ARCHITECTURE.md, glossary).
const envelopeHome = "sync/protocol/apierror.go"

// TestOneErrorEnvelope fails when a file other than envelopeHome spells
// out both keys of the error envelope, as a struct with json:"code" and
// json:"message" tags or a map with "code" and "message" keys: servers
// write it with protocol.WriteError, clients read it with
// protocol.ReadError.
func TestOneErrorEnvelope(t *testing.T) {
	root := moduleRoot(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && path != root)) {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.ToSlash(rel) == envelopeHome {
			return nil
		}
		if spellsEnvelope(t, path) {
			t.Errorf("%s writes or reads the {code,message} error envelope itself: use protocol.WriteError / protocol.ReadError (%s)", rel, envelopeHome)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEnvelopeCheckCatches keeps the check honest.
func TestEnvelopeCheckCatches(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"struct.go": "package x\ntype e struct{ C string `json:\"code\"`; M string `json:\"message,omitempty\"` }\n",
		"map.go":    "package x\nvar m = map[string]string{\"code\": \"X\", \"message\": \"y\"}\n",
	} {
		path := filepath.Join(dir, name)
		writeFile(t, path, src)
		if !spellsEnvelope(t, path) {
			t.Errorf("%s not caught", name)
		}
	}
	path := filepath.Join(dir, "ok.go")
	writeFile(t, path, "package x\nvar m = map[string]any{\"code\": 200, \"description\": \"\"}\n")
	if spellsEnvelope(t, path) {
		t.Error("a map with code and no message was caught")
	}
}

// spellsEnvelope: the file has both keys, as tags or as string literals.
func spellsEnvelope(t *testing.T, path string) bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var code, message bool
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v := lit.Value
		code = code || v == `"code"` || strings.Contains(v, `json:"code"`) || strings.Contains(v, `json:"code,`)
		message = message || v == `"message"` || strings.Contains(v, `json:"message"`) || strings.Contains(v, `json:"message,`)
		return true
	})
	return code && message
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
