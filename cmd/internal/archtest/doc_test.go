package archtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const archDoc = "docs/ARCHITECTURE.md"

// packageRow is a row of the package table: | `path` | what | `dep`, … |.
var packageRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\| [^|]+ \\| ([^|]+) \\|$")

// TestArchitectureDocListsEveryPackage fails when a package of the tree has
// no row in docs/ARCHITECTURE.md, a row names no package, or a row's
// imports differ from the package's project imports: the page is the tree
// as it is.
func TestArchitectureDocListsEveryPackage(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, archDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range docTableProblems(string(doc), projectImports(t)) {
		t.Error(p)
	}
}

// TestArchitectureDocCheckCatches keeps the table check honest.
func TestArchitectureDocCheckCatches(t *testing.T) {
	imports := map[string][]string{"store/kv": nil, "store/queue": {module + "/store/kv", "fmt"}}
	doc := "| `store/kv` | db | — |\n| `store/queue` | queues | `store/kv` |\n"
	if got := docTableProblems(doc, imports); len(got) != 0 {
		t.Errorf("a true table reported: %v", got)
	}
	for _, bad := range []string{
		"| `store/kv` | db | — |\n",                                                 // store/queue missing
		doc + "| `store/gone` | old | — |\n",                                        // no such package
		"| `store/kv` | db | — |\n| `store/queue` | queues | — |\n",                 // an import left out
		doc + strings.Replace(doc, "`store/kv` |\n", "`store/kv`, `broker` |\n", 1), // an import made up
	} {
		if got := docTableProblems(bad, imports); len(got) == 0 {
			t.Errorf("not caught:\n%s", bad)
		}
	}
}

func docTableProblems(doc string, imports map[string][]string) []string {
	rows := map[string]string{}
	for _, m := range packageRow.FindAllStringSubmatch(doc, -1) {
		rows[m[1]] = m[2]
	}
	var out []string
	for pkg, imps := range imports {
		want := projectDeps(imps)
		row, ok := rows[pkg]
		if !ok {
			out = append(out, fmt.Sprintf("%s: package %s has no row; add | `%s` | what it does | %s |", archDoc, pkg, pkg, depsCell(want)))
			continue
		}
		if got := depsOf(row); !slices.Equal(got, want) {
			out = append(out, fmt.Sprintf("%s: the row of %s lists imports %v, the code imports %v; write %s", archDoc, pkg, got, want, depsCell(want)))
		}
	}
	for pkg := range rows {
		if _, ok := imports[pkg]; !ok {
			out = append(out, fmt.Sprintf("%s: a row names %s, which is not a package of the tree", archDoc, pkg))
		}
	}
	sort.Strings(out)
	return out
}

func projectDeps(imps []string) []string {
	var deps []string
	for _, imp := range imps {
		if rel, ok := strings.CutPrefix(imp, module+"/"); ok && !slices.Contains(deps, rel) {
			deps = append(deps, rel)
		}
	}
	sort.Strings(deps)
	return deps
}

var backticked = regexp.MustCompile("`([^`]+)`")

func depsOf(cell string) []string {
	var deps []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		deps = append(deps, m[1])
	}
	sort.Strings(deps)
	return deps
}

func depsCell(deps []string) string {
	if len(deps) == 0 {
		return "—"
	}
	return "`" + strings.Join(deps, "`, `") + "`"
}

// repoPath is a word of the page that names a file or directory of the
// repository: under a top-level directory, or a Markdown or Go file.
var repoPath = regexp.MustCompile(`(?:^|[\s(` + "`" + `])((?:\.ci|broker|cmd|docs|store|supervisor|sync|testdata)/[A-Za-z0-9_./*-]*|[A-Za-z0-9_./-]+\.(?:md|go|txtar))`)

// TestArchitectureDocPathsExist fails when docs/ARCHITECTURE.md names a
// path (a package, a file, a directory) that is not in the repository.
func TestArchitectureDocPathsExist(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, archDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range missingPaths(root, string(doc)) {
		t.Errorf("%s names %s, which is not in the repository", archDoc, p)
	}
}

func TestArchitectureDocPathCheckCatches(t *testing.T) {
	root := moduleRoot(t)
	got := missingPaths(root, "see reference/crdt-twin.md and `store/nothing`, store/queue and docs/twins.md.")
	if strings.Join(got, " ") != "reference/crdt-twin.md store/nothing" {
		t.Errorf("missing paths = %v", got)
	}
}

func missingPaths(root, doc string) []string {
	var out []string
	for _, m := range repoPath.FindAllStringSubmatch(doc, -1) {
		p := strings.TrimRight(m[1], ".,;:")
		matches, _ := filepath.Glob(filepath.Join(root, filepath.FromSlash(p)))
		if len(matches) == 0 && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// TestDocsPathsExist: README.md and every page under docs/ name only files
// that are in the repository (relative to the top or to the page).
func TestDocsPathsExist(t *testing.T) {
	root := moduleRoot(t)
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	for _, page := range pages {
		doc, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		for _, p := range missingPaths(root, string(doc)) {
			if isPlaceholder(p) || strings.Contains(string(doc), "> "+p) { // a file the page's commands write
				continue
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(page), filepath.FromSlash(p))); len(m) > 0 {
				continue
			}
			t.Errorf("%s names %s, which is not in the repository", rel, p)
		}
	}
}

// isPlaceholder: a path written for the reader to fill in
// (testdata/script/NAME.txtar, cmd/...).
func isPlaceholder(p string) bool {
	return strings.Contains(p, "...") || strings.Contains(p, "…") || strings.ContainsAny(p, "<>") ||
		strings.ToUpper(filepath.Base(strings.TrimSuffix(p, filepath.Ext(p)))) == filepath.Base(strings.TrimSuffix(p, filepath.Ext(p)))
}
