package cli

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig: any --config file either sets known flags or fails with an
// error; a flag given on the command line is never changed by the file.
func FuzzConfig(f *testing.F) {
	f.Add("data = \"/var/lib/outpost\"\nmqtts = \":8883\"\n")
	f.Add("durability = \"power\"\nmax = 3\nverbose = true\n")
	f.Add("unknown = 1\n")
	f.Add("data = [1, 2]\n[table]\nx = 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("edge", flag.ContinueOnError)
		data := fs.String("data", "from-argv", "")
		fs.String("mqtts", "", "")
		fs.String("durability", "process", "")
		fs.Int("max", 0, "")
		fs.Bool("verbose", false, "")
		_ = applyConfig(fs, path, map[string]bool{"data": true}, []Secret{{Flag: "connection-string"}}, func(string) {})
		if *data != "from-argv" {
			t.Fatalf("the file changed a flag given on the command line: data = %q", *data)
		}
	})
}
