package scenario

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// httpReq is one request of the http commands.
type httpReq struct {
	method, url string
	body        *string
	token       string // sent as `Authorization: Bearer …` when set
	contentType string // default application/json when there is a body
	headers     []string
}

// parseHTTPArgs reads [-token FILE] [-type CT] [-H 'K: V']... METHOD URL
// [BODY].
func parseHTTPArgs(ts *testscript.TestScript, name string, args []string) httpReq {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	token := fs.String("token", "", "file holding the edge's operator token (e.g. $API_TOKEN), sent as `Authorization: Bearer …`")
	ct := fs.String("type", "application/json", "Content-Type of the body")
	var headers headerFlags
	fs.Var(&headers, "H", "an extra header 'Name: value' (repeatable)")
	fs.SetOutput(ts.Stderr())
	ts.Check(fs.Parse(args))
	args = fs.Args()
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: %s [-token FILE] [-type CT] [-H 'K: V'] METHOD URL [BODY]", name)
	}
	r := httpReq{method: args[0], url: args[1], contentType: *ct, headers: headers}
	if len(args) == 3 {
		r.body = &args[2]
	}
	if *token != "" {
		r.token = strings.TrimSpace(ts.ReadFile(*token))
	}
	return r
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// envToken is the operator token of the edge $API_TOKEN names (set by
// waitready), or "" when there is none.
func envToken(ts *testscript.TestScript) string {
	path := ts.Getenv("API_TOKEN")
	if path == "" {
		return ""
	}
	return strings.TrimSpace(ts.ReadFile(path))
}

// http [-token FILE] [-type CT] [-H 'K: V'] METHOD URL [BODY]: prints the
// status line and the body; fails on 4xx/5xx unless negated. A body is
// sent as application/json unless -type says otherwise; -token sends the
// edge's operator token.
func cmdHTTP(ts *testscript.TestScript, neg bool, args []string) {
	r := parseHTTPArgs(ts, "http", args)
	code, data := httpDo(ts, r)
	httpReport(ts, neg, r.method, r.url, code, data)
}

// httpwait TIMEOUT [options] METHOD URL [BODY]: like http, but repeats the
// request while it answers 404 (e.g. a direct method before the client
// has subscribed), for at most TIMEOUT.
func cmdHTTPWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: httpwait TIMEOUT [-token FILE] [-type CT] METHOD URL [BODY]")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	r := parseHTTPArgs(ts, "httpwait", args[1:])
	deadline := time.Now().Add(d)
	for {
		code, data := httpDo(ts, r)
		if code == 404 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		httpReport(ts, neg, r.method, r.url, code, data)
		return
	}
}

// httpDo sends one request and returns the status and body.
func httpDo(ts *testscript.TestScript, r httpReq) (int, []byte) {
	var body io.Reader
	if r.body != nil {
		body = strings.NewReader(*r.body)
	}
	req, err := http.NewRequest(r.method, r.url, body)
	ts.Check(err)
	req.Header.Set("iothub-app-origin", "scenario")
	if r.body != nil {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for _, h := range r.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			ts.Fatalf("-H %q: want 'Name: value'", h)
		}
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// httpReport prints status and body and fails on 4xx/5xx unless negated.
func httpReport(ts *testscript.TestScript, neg bool, method, url string, code int, data []byte) {
	fmt.Fprintf(ts.Stdout(), "%d\n%s\n", code, data)
	if (code >= 400) != neg {
		ts.Fatalf("%s %s: %d %s", method, url, code, data)
	}
}
