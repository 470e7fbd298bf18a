package query

import (
	"errors"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	deep := "SELECT * FROM devices WHERE " + strings.Repeat("(", 33) + "a = 1" + strings.Repeat(")", 33)
	long := "SELECT * FROM devices WHERE deviceId IN [" + strings.Repeat("'x', ", 1001) + "'y']"
	huge := "SELECT * FROM devices WHERE a = '" + strings.Repeat("x", MaxTextBytes) + "'"
	tests := []struct {
		sql string
		pos int
		msg string
	}{
		{"SELECT * devices", 9, `(near "devices"): expected FROM (or ',' and another projection)`},
		{"SELEC * FROM devices", 0, "expected SELECT"},
		{"SELECT deviceId FROM devices WHERE", 34, "(end of text): expected a property path, a constant"},
		{"SELECT * FROM twins", 14, "expected devices, devices.modules or devices.jobs after FROM"},
		{"SELECT * FROM devices.twins", 14, "expected devices, devices.modules or devices.jobs"},
		{"SELECT * FROM devices WHERE tags.x = 'abc", 37, "unterminated string"},
		{"SELECT * FROM devices WHERE a = \"x\"", 32, "strings are single-quoted"},
		{"SELECT * FROM devices WHERE (a = 1", 34, "expected ) to close the ( at 28"},
		{"SELECT * FROM devices WHERE a IN [1, b]", 37, "an IN list holds constants"},
		{"SELECT * FROM devices WHERE a IN 'x'", 33, "expected [ after IN"},
		{"SELECT * FROM devices WHERE FOO(a)", 28, "unknown function FOO; the functions are ARRAY_CONTAINS,"},
		{"SELECT * FROM devices WHERE STARTSWITH(a)", 40, "STARTSWITH takes 2 argument(s), not 1"},
		{"SELECT TOP 0 * FROM devices", 11, "TOP takes a whole number"},
		{"SELECT TOP 2.5 * FROM devices", 11, "TOP takes a whole number"},
		{"SELECT deviceId, COUNT() FROM devices", 7, "deviceId is selected with COUNT() but not grouped; add GROUP BY deviceId"},
		{"SELECT status, COUNT() FROM devices GROUP BY tags.x", 7, "status is selected but not in GROUP BY"},
		{"SELECT * FROM devices GROUP BY status", 22, "SELECT * cannot be grouped"},
		{"SELECT COUNT(x) FROM devices", 13, "COUNT takes no argument"},
		{"SELECT LOWER(x) FROM devices", 7, "only COUNT() may be used in SELECT"},
		{"SELECT * FROM devices WHERE a = 1 ORDER BY a", 34, "ORDER BY is not supported"},
		{"SELECT * FROM devices WHERE a = 1 b = 2", 34, "expected AND, OR, GROUP BY or the end of the query"},
		{"SELECT * FROM devices WHERE a.5 = 1", 30, "expected a property name after '.'; write ['key']"},
		{"SELECT * FROM devices WHERE a[x] = 1", 30, "expected a quoted key or an array index"},
		{"SELECT x AS y, z AS y FROM devices", 22, `two columns are named "y"`},
		{"SELECT a.x, b.x FROM devices", 16, `two columns are named "x"`},
		{"SELECT * FROM devices WHERE from = 1", 28, "found the keyword FROM (a property with that name is written ['from'])"},
		{"SELECT * FROM devices WHERE a = 1e999", 32, "number out of range"},
		{"SELECT * FROM devices WHERE a = 12abc", 32, "a number runs into a name"},
		{"SELECT * FROM devices WHERE a - 1", 30, "'-' only starts a negative number"},
		{"SELECT * FROM devices WHERE a = 1 AND", 37, "expected a property path"},
		{deep, 28 + 32, "nested deeper than 32"},
		{long, 41 + 1000*5, "an IN list holds at most 1000 items"},
		{huge, MaxTextBytes, "text longer than 8192 bytes"},
	}
	for _, tt := range tests {
		q, err := Parse(tt.sql)
		var e *Error
		if !errors.As(err, &e) || q != nil {
			t.Errorf("%.60s: got %v, %v; want an *Error", tt.sql, q, err)
			continue
		}
		if e.Pos != tt.pos || !strings.Contains(err.Error(), tt.msg) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%.60s:\n got %d %v\nwant %d …%s…", tt.sql, e.Pos, err, tt.pos, tt.msg)
		}
	}
}

func TestErrorText(t *testing.T) {
	_, err := Parse("SELECT deviceId, status GROUP BY status")
	if want := `query: at 24 (near "GROUP"): expected FROM (or ',' and another projection)`; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestConditionErrors(t *testing.T) {
	tests := []struct {
		cond string
		pos  int
		msg  string
	}{
		{"tags.x = 'a' AND", 16, "expected a property path"},
		{"tags.x = 'a' GROUP BY x", 13, "expected AND, OR or the end of the condition"},
		{"tags.x == 'a'", 8, "expected a property path"},
		{strings.Repeat(" ", MaxTextBytes+1), MaxTextBytes, "text longer"},
		{strings.Repeat("NOT ", 33) + "true", 128, "nested deeper than 32"},
	}
	for _, tt := range tests {
		_, err := ParseCondition(tt.cond)
		var e *Error
		if !errors.As(err, &e) || e.Pos != tt.pos || !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("%.40q: got %v, want at %d …%s…", tt.cond, err, tt.pos, tt.msg)
		}
	}
}
