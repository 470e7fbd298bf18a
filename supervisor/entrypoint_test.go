package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// argsScript is an archive module that writes its arguments to $HOME/args.
var argsScript = []byte("#!/bin/sh\necho \"$*\" > \"$HOME/args.tmp\" && mv \"$HOME/args.tmp\" \"$HOME/args\"\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n")

// Entrypoint and Cmd are read as Docker reads them: Entrypoint names the
// program (inside an archive; an executable image is the program itself),
// Cmd holds its arguments, after Entrypoint's extra elements.
func TestEntrypointAndCmd(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.tgz") // one executable, as the sample archives
	two := filepath.Join(dir, "two.tgz")
	write := func(p string, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(one, tarGz(tarEntry{"outpost-tempsensor", 0o755, argsScript}, tarEntry{"README", 0o644, []byte("hi")}))
	write(two, tarGz(tarEntry{"bin/", 0o755, nil}, tarEntry{"bin/mod", 0o755, argsScript}, tarEntry{"bin/other", 0o755, argsScript}))
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, image, create, want string
	}{
		{"docs example: Cmd is the arguments of the archive's only executable", one, `{"Cmd":["--verbose"]}`, "--verbose"},
		{"no createOptions", one, ``, ""},
		{"Entrypoint names the program, its extra elements come before Cmd", two, `{"Entrypoint":["bin/mod","-a"],"Cmd":["b","c"]}`, "-a b c"},
		{"Entrypoint and Cmd as strings", two, `{"Entrypoint":"bin/other","Cmd":"x"}`, "x"},
		{"an executable image takes Cmd as its arguments", h.exe, `{"Cmd":["sample","tempsensor"]}`, "sample tempsensor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := h.mod("env", map[string]any{"settings": map[string]any{"image": tc.image, "createOptions": tc.create}})
			h.apply(1, map[string]any{"m": m})
			h.waitDesired(1, 200)
			h.waitStatus("m", "running")
			args := filepath.Join(h.home("m"), "args")
			var got string
			h.waitFor("args written", func(Report) bool {
				data, err := os.ReadFile(args)
				got = strings.TrimRight(string(data), "\n")
				return err == nil
			})
			if got != tc.want {
				t.Errorf("arguments %q, want %q", got, tc.want)
			}
			h.apply(2, map[string]any{})
			h.waitDesired(2, 200)
			_ = os.RemoveAll(h.home("m"))
		})
	}
}

// What Docker would not run is refused with what to write instead.
func TestEntrypointRefused(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two.tgz")
	if err := os.WriteFile(two, tarGz(tarEntry{"bin/mod", 0o755, argsScript}, tarEntry{"bin/other", 0o755, argsScript}), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil)
	for i, tc := range []struct {
		name, image, create, want string
	}{
		{"two executables, no Entrypoint", two, `{"Cmd":["bin/mod"]}`, `the archive has 2 executable files (bin/mod, bin/other); name the program with createOptions {"Entrypoint":["path/in/archive"]}`},
		{"Entrypoint not in the archive", two, `{"Entrypoint":["bin/nothere"]}`, `the archive has no file "bin/nothere"`},
		{"Entrypoint on an executable image", h.exe, `{"Entrypoint":["x"],"Cmd":["a"]}`, `Entrypoint "x" names a program inside an archive image, but this image is an executable`},
		{"empty Entrypoint", two, `{"Entrypoint":[""]}`, `createOptions.Entrypoint: the first element names the program`},
		{"Cmd of numbers", two, `{"Cmd":[1]}`, `createOptions: json: cannot unmarshal array with a non-string into Go struct field CreateOptions.Cmd of type []string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := int64(i + 1)
			h.apply(v, map[string]any{"m": h.mod("", map[string]any{"settings": map[string]any{"image": tc.image, "createOptions": tc.create}})})
			if st := h.waitDesired(v, 400); !strings.Contains(st.Description, tc.want) {
				t.Errorf("description %q, want it to contain %q", st.Description, tc.want)
			}
		})
	}
}
