package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
)

// writeTable prints a JSON answer for people, as -o table: one row per
// leaf, FIELD (its dotted path, [i] for array elements) and VALUE (strings
// bare, the rest as JSON), fields sorted. Twin metadata ($metadata) is
// left out: it doubles every row and -o json has it.
func writeTable(w io.Writer, raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("the hub's answer is not JSON: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tVALUE")
	rows(tw, "", v)
	return tw.Flush()
}

func rows(w io.Writer, path string, v any) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			fmt.Fprintf(w, "%s\t{}\n", dashPath(path))
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if k == "$metadata" {
				continue
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			rows(w, p, v[k])
		}
	case []any:
		if len(v) == 0 {
			fmt.Fprintf(w, "%s\t[]\n", dashPath(path))
		}
		for i, e := range v {
			rows(w, path+"["+strconv.Itoa(i)+"]", e)
		}
	case string:
		fmt.Fprintf(w, "%s\t%s\n", dashPath(path), oneLineText(v))
	default:
		b, _ := json.Marshal(v) // numbers, booleans and null always marshal
		fmt.Fprintf(w, "%s\t%s\n", dashPath(path), b)
	}
}

func dashPath(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// oneLineText keeps a value on its row: line breaks and tabs as spaces.
func oneLineText(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, []byte(s)))
}
