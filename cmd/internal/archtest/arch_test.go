package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/outpost-edge/outpost"

// rule forbids packages under from importing anything matched by deny,
// except what allow names.
type rule struct {
	from  string   // package path prefix (relative to the module)
	deny  []string // import path prefixes (relative); "*" = any project package
	why   string
	allow []string // exact packages (relative) exempt from deny
}

var rules = []rule{
	{"store/crdt", []string{"*"}, "the CRDT core is pure and imports the standard library only", nil},
	{"broker/route", []string{"*"}, "the route language is pure", nil},
	{"broker/bag", []string{"*"}, "the property-bag codec is pure (the module SDK uses it without the broker)", nil},
	{"sync/hub/query", []string{"*"}, "the IoT Hub query language is pure (the hub and deployments evaluate it over plain JSON)", nil},
	{"supervisor", []string{"*"}, "the supervisor talks to the rest through small interfaces", nil},
	{"store", []string{"broker", "sync", "supervisor", "cmd"}, "storage is below everything", nil},
	{"broker", []string{"sync", "supervisor", "cmd"}, "the broker never reaches the uplink or the supervisor", nil},
	// broker/route is pure (stdlib only): the hub's message routing
	// (sync/hub/egress) speaks the edge's route language with it.
	{"sync/hub", []string{"broker", "supervisor", "sync/upstream", "cmd"}, "the hub never links edge-only code", []string{"broker/route"}},
	{"sync/downstream", []string{"broker", "supervisor", "sync/upstream", "sync/hub", "cmd"}, "a parent edge serves its children from its stores, as the hub does, without the uplink's code", nil},
	{"sync", []string{"cmd"}, "only cmd/internal composes packages", nil},
}

// stdlibOnly lists packages whose non-test code may import nothing outside the standard library.
var stdlibOnly = []string{"store/crdt", "store/identity/sas", "broker/route", "broker/bag", "sync/hub/query"}

func TestDependencyRules(t *testing.T) {
	for _, v := range violations(projectImports(t)) {
		t.Error(v)
	}
}

// TestRulesCatchViolations keeps the checker honest: each synthetic import
// below breaks one rule and must be reported.
func TestRulesCatchViolations(t *testing.T) {
	bad := map[string][]string{
		"store/crdt":     {"github.com/fxamacker/cbor/v2"},
		"store/queue":    {module + "/broker"},
		"broker":         {module + "/sync/upstream"},
		"sync/hub":       {module + "/supervisor"},
		"supervisor":     {module + "/store/kv"},
		"broker/client":  {module + "/cmd/internal/cli"},
		"sync/hub/query": {module + "/store/crdt"},
		// The broker/route exception is that package alone, not its siblings.
		"sync/hub/egress": {module + "/broker/routes"},
	}
	if got := violations(bad); len(got) != len(bad) {
		t.Errorf("want %d violations, got %d: %v", len(bad), len(got), got)
	}
	ok := map[string][]string{"broker": {module + "/store/queue", "fmt"}, "cmd/outpost": {module + "/cmd/internal/cli"},
		"sync/hub/egress": {module + "/broker/route"}}
	if got := violations(ok); len(got) != 0 {
		t.Errorf("allowed imports reported: %v", got)
	}
}

func violations(imports map[string][]string) []string {
	var out []string
	for pkg, imps := range imports {
		for _, imp := range imps {
			rel, ours := strings.CutPrefix(imp, module+"/")
			if stdlibOnlyPkg(pkg) && !ours && strings.Contains(strings.Split(imp, "/")[0], ".") {
				out = append(out, pkg+" imports "+imp+": it must use the standard library only")
			}
			if !ours {
				continue
			}
			if strings.HasPrefix(rel, "cmd/") && !strings.HasPrefix(pkg, "cmd/") {
				out = append(out, pkg+" imports "+rel+": nothing outside cmd imports cmd/...")
				continue
			}
			for _, r := range rules {
				if under(pkg, r.from) && denied(rel, r.deny) && !slices.Contains(r.allow, rel) {
					out = append(out, pkg+" imports "+rel+": "+r.why)
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestLayout(t *testing.T) {
	root := moduleRoot(t)
	want := []string{".ci", "Makefile", "README.md", "broker", "cmd", "docs", "go.mod", "go.sum", "store", "supervisor", "sync", "testdata"}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Name() == "bin" { // make build's output, ignored by git
			continue
		}
		if !strings.HasPrefix(e.Name(), ".") || e.Name() == ".ci" {
			got = append(got, e.Name())
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("top level is %v, ARCHITECTURE.md asks for %v (plus bin/ when built, which git ignores)", got, want)
	}
	goFiles, _ := filepath.Glob(filepath.Join(root, "sync", "*.go"))
	if len(goFiles) > 0 {
		t.Errorf("Go files directly in sync/ (%v): a package named sync would shadow the standard library", goFiles)
	}
}

func stdlibOnlyPkg(pkg string) bool {
	for _, p := range stdlibOnly {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

func under(pkg, prefix string) bool { return pkg == prefix || strings.HasPrefix(pkg, prefix+"/") }

func denied(imp string, deny []string) bool {
	for _, d := range deny {
		if d == "*" || under(imp, d) {
			return true
		}
	}
	return false
}

// projectImports maps each package directory (relative to the module root)
// to the imports of its non-test Go files.
func projectImports(t *testing.T) map[string][]string {
	t.Helper()
	root := moduleRoot(t)
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && path != root)) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		out[rel] = append(out[rel], []string{}...) // a package that imports nothing is still one
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[rel] = append(out[rel], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", dir, err)
	}
	return dir
}
