package scenario

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestLibraryReadsAsTheManual holds the library to what docs/scenarios.md
// promises: each scenario has a one-line summary, asserts with at least one
// golden file (cmp, cmptwins with a file, waitexec -cmp) and never sleeps.
func TestLibraryReadsAsTheManual(t *testing.T) {
	lib := Library()
	want := []string{"flapping_cellular", "full_disk", "power_cut_drain", "week_offline"}
	var names []string
	for _, e := range lib {
		names = append(names, e.Name)
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("library = %v, want %v", names, want)
	}
	golden := regexp.MustCompile(`(?m)^(cmp|cmpenv) |^cmptwins \S+ \S+ [^{\s]|^waitexec .*-cmp `)
	sleep := regexp.MustCompile(`(?m)^(\[[^]]*\] )?sleep `)
	for _, e := range lib {
		if e.Summary == "" || len(e.Summary) > 160 {
			t.Errorf("%s: summary %q: want one line of at most 160 characters", e.Name, e.Summary)
		}
		if !golden.MatchString(e.Text) {
			t.Errorf("%s asserts with no golden file", e.Name)
		}
		if sleep.MatchString(e.Text) {
			t.Errorf("%s sleeps: wait for a condition instead (waitexec, waitqueue, waitstatus, …)", e.Name)
		}
		if _, ok := Find(e.Name); !ok {
			t.Errorf("Find(%q) found nothing", e.Name)
		}
	}
	if _, ok := Find("no_such"); ok {
		t.Error("Find(no_such) found something")
	}
}

// TestDocsListEveryCommand keeps docs/scenarios.md complete: each command
// of Commands has a row there (| `name …` |), and each row a command.
func TestDocsListEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z]+)[ `]").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = true
	}
	cmds := Commands()
	for name := range cmds {
		if !rows[name] {
			t.Errorf("docs/scenarios.md has no row for the command %s", name)
		}
	}
	for name := range rows {
		if _, ok := cmds[name]; !ok {
			t.Errorf("docs/scenarios.md has a row for %s, which is no command of the harness", name)
		}
	}
}
