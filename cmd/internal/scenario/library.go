package scenario

import (
	"embed"
	"io/fs"
	"path"
	"strings"

	"github.com/rogpeppe/go-internal/txtar"
)

// library holds the ready scenarios users copy and adapt (`outpost
// scenario list|show|run NAME`); `go test ./cmd/outpost` runs them too.
//
//go:embed library/*.txtar
var library embed.FS

// LibraryDir is where the library's files are, relative to this package
// (for the test that runs them from the source tree).
const LibraryDir = "library"

// Entry is one scenario of the library.
type Entry struct {
	Name    string // the file name without .txtar, e.g. week_offline
	Summary string // the first line of its comment
	Text    string // the whole file, to copy and adapt
}

// Library lists the scenarios of the library, by name.
func Library() []Entry {
	files, _ := fs.Glob(library, LibraryDir+"/*.txtar") // sorted; the pattern is valid
	out := make([]Entry, 0, len(files))
	for _, f := range files {
		data, _ := library.ReadFile(f) // embedded: cannot fail
		out = append(out, Entry{Name: strings.TrimSuffix(path.Base(f), ".txtar"), Summary: summary(data), Text: string(data)})
	}
	return out
}

// Find returns the library's scenario called name.
func Find(name string) (Entry, bool) {
	for _, e := range Library() {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// summary is the first line of a scenario's comment, without its "# ".
func summary(data []byte) string {
	for _, l := range strings.Split(string(txtar.Parse(data).Comment), "\n") {
		if s := strings.TrimSpace(strings.TrimLeft(l, "#")); s != "" {
			return s
		}
	}
	return ""
}
