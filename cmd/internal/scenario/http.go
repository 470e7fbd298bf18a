package scenario

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// http METHOD URL [BODY]: prints the status line and the body; fails on
// 4xx/5xx unless negated.
func cmdHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: http METHOD URL [BODY]")
	}
	code, data := httpDo(ts, args[0], args[1], args[2:])
	httpReport(ts, neg, args[0], args[1], code, data)
}

// httpwait TIMEOUT METHOD URL [BODY]: like http, but repeats the request while
// it answers 404 (e.g. a direct method before the client has subscribed), for
// at most TIMEOUT.
func cmdHTTPWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: httpwait TIMEOUT METHOD URL [BODY]")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	deadline := time.Now().Add(d)
	for {
		code, data := httpDo(ts, args[1], args[2], args[3:])
		if code == 404 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		httpReport(ts, neg, args[1], args[2], code, data)
		return
	}
}

// httpDo sends one request (body: zero or one string) and returns the
// status and body.
func httpDo(ts *testscript.TestScript, method, url string, body []string) (int, []byte) {
	var r io.Reader
	if len(body) == 1 {
		r = strings.NewReader(body[0])
	}
	req, err := http.NewRequest(method, url, r)
	ts.Check(err)
	req.Header.Set("iothub-app-origin", "scenario")
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
