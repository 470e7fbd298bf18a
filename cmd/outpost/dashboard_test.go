package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// The dashboards in a real headless Chromium (Debian's chromium driven by
// chromedp): a hub, an edge whose link runs through a proxy the test cuts,
// and a leaf device publishing. Gated like the browser tests of
// cmd/internal/localapi: skipped without chromium, a failure with
// OUTPOST_BROWSER_TESTS=1 (`make interop` sets it). With
// OUTPOST_SCREENSHOTS=DIR it saves edge-dashboard.png and hub-ui.png there
// (`make screenshots`).

const (
	browserEnv     = "OUTPOST_BROWSER_TESTS"
	screenshotsEnv = "OUTPOST_SCREENSHOTS"
)

func TestDashboardBrowser(t *testing.T) {
	browser := startChromium(t)
	w := startWorld(t)

	t.Run("edge", func(t *testing.T) { checkEdgeDashboard(t, browser, w) })
	t.Run("hub", func(t *testing.T) { checkHubDashboard(t, browser, w) })
}

// checkEdgeDashboard: the page loads without errors and shows the link going
// down and up, the backlog rising and falling, an offline twin change
// pending, the publisher among the connected clients, a module's log and
// its restart.
func checkEdgeDashboard(t *testing.T, browser context.Context, w *world) {
	tab, problems := newDashboardTab(t, browser)
	u, err := localapi.Client{Addr: w.api, Token: w.token}.LoginURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 1100), chromedp.Navigate(u)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, `document.getElementById("link-state").textContent === "online"`, "the link shown online")
	waitDOM(t, tab, `document.querySelector("#modules [data-module=ticker] button.restart") !== null`, "the ticker module with its restart button")
	waitDOM(t, tab, `document.querySelector("#children [data-child=gw2]") !== null`, "the child edge gw2 among the child edges")
	waitDOM(t, tab, `document.querySelector("#twins [data-twin=sensor1]") !== null && document.getElementById("twins").textContent.includes("firmware")`, "sensor1's twin with its reported field")
	// The clients card (operator only): the publisher, over plain MQTT 3.1.1.
	sensorRow := `document.querySelector("#client-list [data-client=sensor1]")`
	waitDOM(t, tab, sensorRow+` !== null && `+sensorRow+`.textContent.includes("3.1.1") && `+sensorRow+`.textContent.includes("mqtt")`,
		"the publisher sensor1 in the clients card")

	w.proxy.Cut()
	waitDOM(t, tab, `document.getElementById("link-state").textContent !== "online"`, "the link shown down after the cut")
	peak := waitNumber(t, tab, "upstream-depth", func(n int) bool { return n >= 20 }, "the $upstream depth rising while the link is down")
	// A twin change made offline is pending until the hub has it.
	w.report(t, `{"firmware":"1.2.4"}`)
	sensorPending := `document.querySelector("#twins [data-twin=sensor1] [data-path='reported.firmware']").textContent`
	waitDOM(t, tab, sensorPending+`.includes('"1.2.4"') && `+sensorPending+`.includes("pending")`, "sensor1's offline change shown pending")
	w.proxy.Restore()
	waitDOM(t, tab, `document.getElementById("link-state").textContent === "online"`, "the link shown online again")
	waitDOM(t, tab, `!`+sensorPending+`.includes("pending")`, "sensor1's change no longer pending once the hub has it")
	waitNumber(t, tab, "upstream-depth", func(n int) bool { return n < peak/2 }, "the $upstream depth falling after the link came back")
	waitDOM(t, tab, `document.querySelectorAll("#plot-depth polyline").length > 0 && document.querySelectorAll("#plot-depth rect.down").length > 0`,
		"the depth plot with the link-down band")
	// The module's log tail (operator only).
	if err := chromedp.Do(tab, chromedp.Click(`#modules [data-module=ticker] button.log`)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, `document.getElementById("logs").textContent.includes("tick")`, "the ticker's log tail")
	// Restart from the page: the module's restart count is the
	// supervisor's; the click goes through the API (cookie, JSON).
	before := w.lastStart(t)
	if err := chromedp.Do(tab, chromedp.Click(`#modules [data-module=ticker] button.restart`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return w.lastStart(t) != before }, "the ticker restarted by the dashboard's button")
	saveScreenshot(t, tab, "edge-dashboard.png", func() {
		waitNumber(t, tab, "upstream-depth", func(n int) bool { return n < 5 }, "the backlog drained")
	})
	problems.check(t)
}

// checkHubDashboard: log in with the owner connection string, see the fleet,
// an event arriving live and a twin; without the cookie, and from another
// site, the API's data is refused.
func checkHubDashboard(t *testing.T, browser context.Context, w *world) {
	tab, problems := newDashboardTab(t, browser)
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 1000), chromedp.Navigate(w.hubURL+"/ui/")); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, `!document.getElementById("login").hidden`, "the login form")
	// Without the session cookie the API's data is refused (in another
	// tab: the browser logs the 401 as an error).
	anon, _ := newDashboardTab(t, browser)
	if err := chromedp.Do(anon, chromedp.Navigate(w.hubURL+"/ui/")); err != nil {
		t.Fatal(err)
	}
	if got, err := chromedp.Run(anon, chromedp.Evaluate[string](`fetch("api/fleet").then(r => r.status + " " + r.statusText)`, chromedp.EvalAwaitPromise)); err != nil || !strings.HasPrefix(got, "401") {
		t.Errorf("GET /ui/api/fleet before the login: %q %v, want 401", got, err)
	}
	if err := chromedp.Do(tab, chromedp.SetValue(`#cs`, w.ownerCS), chromedp.Click(`#login-form button`)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, `!document.getElementById("main").hidden`, "the dashboard after the login")
	waitDOM(t, tab, `document.querySelector("#fleet [data-edge=gw1]") !== null && document.querySelector("#fleet [data-edge=gw1]").textContent.includes("online")`, "gw1 online in the fleet")
	waitDOM(t, tab, `document.querySelector("#fleet [data-edge=gw2] .parent") !== null && document.querySelector("#fleet [data-edge=gw2] .parent").textContent === "gw1"`,
		"gw2 below gw1 in the fleet")
	waitDOM(t, tab, `document.querySelectorAll("#events tr[data-seq]").length > 0`, "recent events")
	marker := fmt.Sprintf("live-%d", time.Now().UnixNano())
	w.publish(t, `{"marker":"`+marker+`"}`)
	waitDOM(t, tab, `document.getElementById("events").textContent.includes('{"marker":"`+marker+`"}')`, "the new event, its JSON body decoded, appearing live")
	if dc, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.cookie`)); strings.Contains(dc, "outpost_hub_session") {
		t.Errorf("document.cookie = %q: the page's scripts can read the session", dc)
	}
	if err := chromedp.Do(tab, chromedp.Click(`#devices a[data-device=sensor1]`)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, `document.getElementById("twin").textContent.includes('"firmware": "1.2.')`, "sensor1's twin with what the edge reported")
	saveScreenshot(t, tab, "hub-ui.png", nil)
	problems.check(t)

	// A page of another site sends the browser to the hub's API: the
	// cookie stays home (SameSite=Strict) and the hub refuses the
	// cross-site request.
	evil := serveEvil(t)
	other, _ := newDashboardTab(t, browser)
	if err := chromedp.Do(other, chromedp.Navigate(evil+"/?to="+w.hubURL+"/ui/api/fleet")); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, other, `location.href.includes("/ui/api/fleet") && document.body.innerText.includes("CrossOrigin")`, "the hub refusing the cross-site request")
}

// startChromium starts one headless chromium for the test.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(browserEnv) == "1" || os.Getenv(screenshotsEnv) != "" {
			t.Fatalf("no chromium (%v) with %s=1: `apt-get install -y chromium` (Debian) installs it", err, browserEnv)
		}
		t.Skipf("no chromium (%v): `apt-get install chromium` runs the dashboard test (with %s=1 this is a failure)", err, browserEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP evil.test 127.0.0.1"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return browser
}

// problems collects what a page reports as wrong: console errors,
// uncaught exceptions, failed loads.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, s)
}

func (p *problems) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.list {
		t.Errorf("the page reported: %s", s)
	}
}

// newDashboardTab opens a tab in a fresh profile (its own cookies) that
// records the page's errors.
func newDashboardTab(t *testing.T, browser context.Context) (context.Context, *problems) {
	t.Helper()
	p := &problems{}
	profile, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(profile, 2*time.Minute)
	t.Cleanup(cancelT)
	tab, cancelTab := chromedp.NewContext(ctx, chromedp.WithListener(func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p.add("console." + string(e.Type) + ": " + strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			p.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, desc))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				p.add("log: " + e.Entry.Text + " " + e.Entry.URL)
			}
		}
	}))
	t.Cleanup(cancelTab)
	if _, err := chromedp.Call(tab, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	return tab, p
}

// waitDOM waits (up to 60 s) until expr is true in the page.
// A navigation under way makes an evaluation fail: it is tried again.
func waitDOM(t *testing.T, tab context.Context, expr, what string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, err = chromedp.Run(tab, chromedp.Evaluate[bool](`!!(`+expr+`)`)); err == nil && ok {
			return
		}
	}
	body, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	t.Fatalf("waiting for %s: timed out (%v); the page shows:\n%s", what, err, body)
}

// waitNumber waits until the number in element id satisfies ok and
// returns it.
func waitNumber(t *testing.T, tab context.Context, id string, ok func(int) bool, what string) int {
	t.Helper()
	var n int
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("`+id+`").textContent`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(strings.ReplaceAll(s, ",", ""), &n); err == nil && ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: #%s shows %q", what, id, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
	}
}

// saveScreenshot writes name to $OUTPOST_SCREENSHOTS, after settle (when
// not nil) and a pause for the plots to show a few more samples.
func saveScreenshot(t *testing.T, tab context.Context, name string, settle func()) {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return
	}
	if settle != nil {
		settle()
	}
	time.Sleep(3 * time.Second) // not an assertion: the picture shows a little more history
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", filepath.Join(dir, name))
}

// serveEvil serves, as http://evil.test:PORT, a page that sends the
// browser to ?to=URL.
func serveEvil(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, `<!doctype html><script>location.href = new URLSearchParams(location.search).get("to");</script>`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://evil.test:" + port
}

// world is a hub, an edge linked to it through a proxy, a module and a
// leaf device publishing telemetry.
type world struct {
	hubURL, ownerCS string
	proxy           *linkproxy.Proxy
	api, token      string
	mqtt, devCS     string
	childCS         string // gw2, a child edge of gw1 (nested edges)
	pub             paho.Client
	rid             int
}

func startWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()     // removed after the hub and the edge stop (cleanups run last first)
	if os.Geteuid() == 0 { // modules run under their own uids: they must reach the data directory
		for _, p := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	w := &world{}
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	hubDir := filepath.Join(dir, "hub")
	run("hub", func() error {
		return hub.Run(ctx, hub.Config{DataDir: hubDir, Listen: "127.0.0.1:0", Logger: logger, Stdout: io.Discard})
	})
	var ready hub.Ready
	waitFor(t, func() bool { return readJSON(filepath.Join(hubDir, "ready.json"), &ready) == nil }, "the hub's ready.json")
	w.hubURL = ready.URL
	cs, err := os.ReadFile(filepath.Join(hubDir, "owner.connection-string"))
	if err != nil {
		t.Fatal(err)
	}
	w.ownerCS = strings.TrimSpace(string(cs))
	gwCS := w.createDevices(t, ctx)
	u := strings.TrimPrefix(w.hubURL, "http://")
	if w.proxy, err = linkproxy.Open("127.0.0.1:0", u, linkproxy.Options{Logger: logger}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.proxy.Close() })
	edgeDir := filepath.Join(dir, "edge")
	run("edge", func() error {
		return edge.Run(ctx, edge.Config{DataDir: edgeDir, ConnectionString: gwCS, HubURL: "http://" + w.proxy.Addr().String(),
			MQTT: "127.0.0.1:0", API: "127.0.0.1:0", Downstream: "127.0.0.1:0", ModuleBackoff: 200 * time.Millisecond, Logger: logger, Stdout: io.Discard})
	})
	var er edge.Ready
	waitFor(t, func() bool { return readJSON(filepath.Join(edgeDir, "ready.json"), &er) == nil }, "the edge's ready.json")
	// gw2 links to gw1's downstream listener (nested edges): both
	// dashboards show it.
	run("child edge", func() error {
		return edge.Run(ctx, edge.Config{DataDir: filepath.Join(dir, "child"), ConnectionString: w.childCS, HubURL: "https://" + er.Downstream,
			HubCA: er.CA, MQTT: "127.0.0.1:0", Logger: logger, Stdout: io.Discard})
	})
	w.api, w.mqtt = er.API, er.MQTT
	if w.token, err = localapi.ReadToken(edgeDir); err != nil {
		t.Fatal(err)
	}
	w.startPublisher(t, ctx)
	return w
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// createDevices makes gw1 (an edge with a ticker module) and its leaf
// sensor1 at the hub; it returns gw1's connection string.
func (w *world) createDevices(t *testing.T, ctx context.Context) string {
	t.Helper()
	ocs, err := sas.ParseConnString(w.ownerCS)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hubclient.New(ocs, w.hubURL)
	if err != nil {
		t.Fatal(err)
	}
	var gw, dev identity.JSON
	if err := c.Do(ctx, http.MethodPut, "/devices/gw1", identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}}, &gw); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPut, "/devices/sensor1", identity.JSON{DeviceID: "sensor1", ParentScopes: []string{gw.DeviceScope}}, &dev); err != nil {
		t.Fatal(err)
	}
	w.devCS = c.ConnectionString(dev)
	var child identity.JSON
	if err := c.Do(ctx, http.MethodPut, "/devices/gw2", identity.JSON{DeviceID: "gw2", Capabilities: &identity.Capabilities{IoTEdge: true}, ParentScopes: []string{gw.DeviceScope}}, &child); err != nil {
		t.Fatal(err)
	}
	w.childCS = c.ConnectionString(child)
	manifest := json.RawMessage(`{"modulesContent":{
	  "$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{
	    "ticker":{"type":"process","restartPolicy":"always","settings":{"image":"sh","createOptions":"{\"Cmd\":[\"-c\",\"trap 'exit 0' TERM; while :; do echo tick; sleep 1; done\"]}"}}}}},
	  "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}}}}`)
	if err := c.Do(ctx, http.MethodPost, "/devices/gw1/applyConfigurationContent", manifest, nil); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionString(gw)
}

// startPublisher connects sensor1 to the edge, reports a twin property
// and publishes telemetry ten times a second until the test ends.
func (w *world) startPublisher(t *testing.T, ctx context.Context) {
	t.Helper()
	cs, err := sas.ParseConnString(w.devCS)
	if err != nil {
		t.Fatal(err)
	}
	tok := sas.NewToken(sas.ResourceURI(cs.HostName, "sensor1", ""), cs.SharedAccessKey, "", time.Now().Add(time.Hour))
	o := paho.NewClientOptions().AddBroker("tcp://" + w.mqtt).SetClientID("sensor1").
		SetUsername(cs.HostName + "/sensor1/?api-version=2021-04-12").SetPassword(tok).SetProtocolVersion(4).
		SetAutoReconnect(true).SetConnectTimeout(5 * time.Second).SetWriteTimeout(3 * time.Second)
	w.pub = paho.NewClient(o)
	// The edge learns sensor1 from the hub on its first pull, which may
	// come after the edge is ready: until then CONNECT is refused.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		tk := w.pub.Connect()
		if tk.WaitTimeout(10*time.Second) && tk.Error() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sensor1 connects to the edge: %v", tk.Error())
		}
	}
	t.Cleanup(func() { w.pub.Disconnect(100) })
	w.report(t, `{"firmware":"1.2.3"}`)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				w.pub.Publish("devices/sensor1/messages/events/", 1, false, fmt.Sprintf(`{"temperature":%.1f,"n":%d}`, 20+float64(i%50)/10, i)).WaitTimeout(3 * time.Second)
			}
		}
	}()
}

// report patches sensor1's reported properties.
func (w *world) report(t *testing.T, patch string) {
	t.Helper()
	w.rid++
	topic := fmt.Sprintf("$iothub/twin/PATCH/properties/reported/?$rid=%d", w.rid)
	if tk := w.pub.Publish(topic, 1, false, patch); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("sensor1 reports %s: %v", patch, tk.Error())
	}
}

func (w *world) publish(t *testing.T, body string) {
	t.Helper()
	if tk := w.pub.Publish("devices/sensor1/messages/events/", 1, false, body); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish %s: %v", body, tk.Error())
	}
}

// lastStart reads the ticker module's last start from /status.
func (w *world) lastStart(t *testing.T) string {
	t.Helper()
	st, err := localapi.FetchStatus(w.api)
	if err != nil {
		t.Fatal(err)
	}
	return st.Modules["ticker"].LastStartTimeUtc
}
