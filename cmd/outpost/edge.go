package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/downstream"
	"github.com/outpost-edge/outpost/sync/upstream"
)

const defaultEdgeAPI = "127.0.0.1:18081"

var edgeCfg struct {
	edge.Config
	durability    string
	logLevel      string
	cpuProfile    string
	memProfile    string
	maxQueueBytes string
	moduleUIDs    string
	overflow      string
	maxImageMiB   int64
	memoryBudget  string
}

var edgeCmd = cli.Command{
	Name:    "edge",
	Summary: "run the edge: MQTT broker with IoT Hub conventions, store-and-forward queues, twins; `edge status` reports on one, `edge logs` prints a module's output, `edge clients` lists the connected MQTT clients, `edge restart MODULE` restarts a module, `edge dashboard` prints a browser login URL, `edge check` diagnoses one (config, certificates, hub and credentials, clock, disk, ports, images, duplicate identity)",
	Usage:   "--data DIR --connection-string-file F [--mqtt ADDR] [--mqtts ADDR] [--ws ADDR] [flags] | --config FILE | status [--data DIR | --api ADDR] | logs MODULE --data DIR [--tail N] [--follow] | clients --data DIR [-o json|table] | restart MODULE --data DIR | dashboard --data DIR | check [--data DIR | --api ADDR] [--config FILE] [-o json]",
	Config:  true,
	Secrets: []cli.Secret{{Flag: "connection-string", Env: "OUTPOST_EDGE_CONNECTION_STRING"}},
	Flags: func(fs *flag.FlagSet) {
		c := &edgeCfg
		fs.StringVar(&c.DataDir, "data", "", "data directory (store, certificates)")
		fs.StringVar(&c.ConnectionString, "connection-string", "", "the edge device's connection string; keep it off the command line: --connection-string-file, env OUTPOST_EDGE_CONNECTION_STRING or --config")
		fs.StringVar(&c.HubURL, "hub-url", "", "URL of the hub, or a comma-separated list of a hub cluster's nodes (default: https://<HostName of the connection string>, http:// when that is loopback); off: run standalone, $upstream messages stay queued")
		fs.BoolVar(&c.InsecureLink, "insecure-link", false, "allow plain http:// to a hub that is not on loopback (anyone on the path can read keys and push deployments); logs a warning on every start")
		fs.StringVar(&c.ClientCA, "client-ca", "", "CA certificates (PEM) that sign the client certificates of leaf devices with certificateAuthority authentication")
		fs.StringVar(&c.HubCA, "hub-ca", "", "CA certificate (PEM) that signed the hub's TLS certificate, when the system does not trust it")
		fs.StringVar(&c.Hostname, "hostname", "", "name leaf devices use for this edge (GatewayHostName); goes into the server certificate")
		fs.StringVar(&c.MQTT, "mqtt", "", "plain MQTT listener address, for loopback (e.g. 127.0.0.1:1883)")
		fs.StringVar(&c.MQTTS, "mqtts", "", "MQTT over TLS listener address (e.g. :8883); the default when no listener is given")
		fs.StringVar(&c.WS, "ws", "", "MQTT over WebSocket listener address (TLS), path /$iothub/websocket")
		fs.StringVar(&c.API, "api", defaultEdgeAPI, "local HTTP API address (\"\" to disable): liveness, and on loopback status and metrics, open; twins, queues, C2D, methods and logs need the operator token <data>/api-token")
		fs.StringVar(&c.Downstream, "downstream", "", "serve the edge link to child edges on this address (nested edges; TLS with the edge's certificate; children authenticate with their edge SAS)")
		fs.StringVar(&c.TLSCert, "tls-cert", "", "server certificate (PEM); without it the edge makes a local CA in the data directory")
		fs.StringVar(&c.TLSKey, "tls-key", "", "server key (PEM)")
		fs.StringVar(&c.Deployment, "deployment", "", "deployment manifest for a standalone edge: routes from $edgeHub, modules from $edgeAgent (SIGHUP reloads it)")
		fs.DurationVar(&c.ModuleBackoff, "module-backoff", 10*time.Second, "first restart delay of a failed module; doubles per restart up to 5 minutes, reset after 10 minutes running")
		fs.StringVar(&edgeCfg.moduleUIDs, "module-uids", supervisor.DefaultModuleUIDs.String(), "when the edge runs as root, each module runs under its own uid (and gid) from this range, recorded in DIR/modules/uids.json; createOptions.User overrides")
		fs.StringVar(&c.MachineIDFile, "machine-id-file", os.Getenv("OUTPOST_MACHINE_ID_FILE"), "file with this machine's id (env OUTPOST_MACHINE_ID_FILE; default /etc/machine-id): a data directory started under another machine id takes a new instance id")
		fs.StringVar(&c.Identities, "identities", "", "JSON array of IoT Hub device/module identities to add to the offline cache")
		mqttLimitFlags(fs, &c.MQTTLimits)
		fs.StringVar(&edgeCfg.maxQueueBytes, "max-queue-bytes", fmt.Sprintf("%d%%", edge.DefaultQueueShare),
			"cap on all queues together: bytes (e.g. 512MiB, 2GiB) or a share of the data filesystem (e.g. 40%); the deployment's storeAndForwardConfiguration.maxBytes overrides it")
		fs.StringVar(&edgeCfg.overflow, "overflow", "reject", "what a full queue does: reject (MQTT 5 PUBACK 0x97, MQTT 3.1.1 disconnect) or drop-oldest; a deployment's overflow overrides it")
		fs.Int64Var(&edgeCfg.maxImageMiB, "max-image-size", upstream.DefaultMaxImageSize>>20, "largest module image the edge downloads from the hub, in MiB (a download is also held to the size the hub announces)")
		fs.StringVar(&edgeCfg.memoryBudget, "memory-budget", "", "memory the edge may use (e.g. 64MiB, 1GiB, bytes; at least 32MiB): five eighths is the Go memory limit, Badger's memtables and caches are sized to fit half; default: the memory limit of the edge's cgroup (v2 memory.max or memory.high, v1 memory.limit_in_bytes), else none (a 128 MiB Go limit); GOMEMLIMIT, if set, still sets the Go limit")
		fs.StringVar(&edgeCfg.durability, "durability", "process", "process (acknowledged messages survive kill -9) or power (fsync before PUBACK)")
		fs.StringVar(&edgeCfg.logLevel, "log-level", "info", "debug, info, warn or error")
		fs.StringVar(&edgeCfg.cpuProfile, "cpuprofile", "", "write a CPU profile to this file until the edge stops (diagnostics)")
		fs.StringVar(&edgeCfg.memProfile, "memprofile", "", "write an allocation profile (every allocation since start) to this file when the edge stops (diagnostics)")
	},
	Run: runEdge,
}

func runEdge(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
	switch fs.Arg(0) {
	case "status":
		return edgeStatus(env, fs.Args()[1:])
	case "logs":
		return edgeLogs(ctx, env, fs.Args()[1:])
	case "dashboard":
		return edgeDashboard(ctx, env, fs.Args()[1:])
	case "check":
		return edgeCheck(ctx, env, fs.Args()[1:])
	case "restart":
		return edgeRestart(ctx, env, fs.Args()[1:])
	case "clients":
		return edgeClients(ctx, env, fs.Args()[1:])
	}
	if fs.NArg() > 0 {
		return cli.Usagef("unexpected argument %q", fs.Arg(0))
	}
	c := edgeCfg.Config
	if c.DataDir == "" || c.ConnectionString == "" {
		return cli.Usagef("--data and the connection string are required (--connection-string-file F, env OUTPOST_EDGE_CONNECTION_STRING, or connection-string in --config)")
	}
	d, err := kv.ParseDurability(edgeCfg.durability)
	if err != nil {
		return cli.Usagef("--durability: %v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(edgeCfg.logLevel)); err != nil {
		return cli.Usagef("--log-level: %v", err)
	}
	if c.MQTT == "" && c.MQTTS == "" && c.WS == "" {
		c.MQTTS = ":8883"
	}
	c.Durability, c.Stdout, c.Stderr = d, env.Stdout, env.Stderr
	if edgeCfg.maxImageMiB < 1 {
		return cli.Usagef("--max-image-size %d: want at least 1 (MiB)", edgeCfg.maxImageMiB)
	}
	c.MaxImageSize = edgeCfg.maxImageMiB << 20
	if edgeCfg.memoryBudget != "" {
		if c.MemoryBudget, err = disk.ParseSize(edgeCfg.memoryBudget); err != nil || c.MemoryBudget == 0 {
			return cli.Usagef("--memory-budget: want a size such as 64MiB or 1GiB: %v", err)
		}
	}
	if err := queueFlags(&c); err != nil {
		return err
	}
	if c.ModuleUIDs, err = supervisor.ParseUIDRange(edgeCfg.moduleUIDs); err != nil {
		return cli.Usagef("--module-uids: %v", err)
	}
	if edgeCfg.cpuProfile != "" {
		f, err := os.OpenFile(edgeCfg.cpuProfile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	c.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	if edgeCfg.memProfile == "" {
		return edge.Run(ctx, c)
	}
	f, err := os.OpenFile(edgeCfg.memProfile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	err = edge.Run(ctx, c)
	if perr := pprof.Lookup("allocs").WriteTo(f, 0); perr != nil && err == nil {
		err = fmt.Errorf("--memprofile: %w", perr)
	}
	return err
}

// queueFlags reads --max-queue-bytes and --overflow into c.
func queueFlags(c *edge.Config) error {
	if p, ok := strings.CutSuffix(strings.TrimSpace(edgeCfg.maxQueueBytes), "%"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 100 {
			return cli.Usagef("--max-queue-bytes %q: want a share from 1%% to 100%%, or a size such as 512MiB", edgeCfg.maxQueueBytes)
		}
		c.MaxQueueShare = n
	} else {
		n, err := disk.ParseSize(edgeCfg.maxQueueBytes)
		if err != nil || n == 0 {
			return cli.Usagef("--max-queue-bytes: want a size such as 512MiB or a share such as 40%%: %v", err)
		}
		c.MaxQueueBytes = n
	}
	switch edgeCfg.overflow {
	case "reject":
		c.Overflow = queue.Reject
	case "drop-oldest":
		c.Overflow = queue.DropOldest
	default:
		return cli.Usagef("--overflow %q: want reject or drop-oldest", edgeCfg.overflow)
	}
	return nil
}

func edgeStatus(env cli.Env, args []string) error {
	fs := cli.SubFlags("edge status", "[--data DIR | --api ADDR] [-o table|json]", "print the state of a running edge: link, clock, queues, broker, disk, deployment, modules")
	api := fs.String("api", "", "the edge's --api address (default: from --data, else "+defaultEdgeAPI+"); on loopback status needs no token")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory: its API address (ready.json) and operator token (api-token)")
	asJSON := fs.String("o", "table", "output: table or json")
	if err := cli.Parse(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.SubUsagef(fs, "edge status takes no arguments, got %q", fs.Arg(0))
	}
	if *asJSON != "json" && *asJSON != "table" {
		return cli.SubUsagef(fs, "-o %q: want json or table", *asJSON)
	}
	c, err := edgeClient(*data, *api, false)
	if err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if *asJSON == "json" {
		return json.NewEncoder(env.Stdout).Encode(st)
	}
	return printStatus(env.Stdout, st)
}

// printStatus writes st as `outpost edge status` shows it.
func printStatus(out io.Writer, st localapi.Status) error {
	fmt.Fprintf(out, "edge %s\nlink: %s\n", st.DeviceID, st.Link)
	if c := st.Clock; !c.Plausible {
		fmt.Fprintf(out, "clock: IMPLAUSIBLE, using the %s time %s: %s\n", c.Source, c.Estimate.Format(time.RFC3339), c.Reason)
	} else {
		fmt.Fprintf(out, "clock: %s time %s\n", c.Source, c.Estimate.Format(time.RFC3339))
	}
	if u := st.Uplink; u != nil {
		printUplink(out, u)
	}
	if d := st.Downstream; d != nil {
		printDownstream(out, d)
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tDEPTH\tBYTES\tOLDEST\tEXPIRED\tDROPPED\tREJECTED")
	for _, q := range localapi.HideIdleLanes(st.Queues) {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.0fs\t%d\t%d\t%d\n", q.Name, q.Depth, q.Bytes, q.OldestSeconds, q.Expired, q.Dropped, q.Rejected)
	}
	w.Flush()
	printBroker(out, st.Broker)
	printDisk(out, st.Disk)
	printMemory(out, st.Memory)
	if st.ModuleIsolation != "" {
		fmt.Fprintf(out, "module isolation: %s\n", st.ModuleIsolation)
	}
	fmt.Fprintf(out, "\ndeployment: %s\n", deploymentLine(st.DeploymentVersion, st.Deployment.Code, st.Deployment.Description))
	if len(st.Modules) == 0 {
		fmt.Fprintln(out, "modules: none")
		return nil
	}
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MODULE\tSTATUS\tPID\tRESTARTS\tEXIT\tDESCRIPTION")
	for _, n := range slices.Sorted(maps.Keys(st.Modules)) {
		m := st.Modules[n]
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", n, m.RuntimeStatus, m.PID, m.RestartCount, m.ExitCode, m.StatusDescription)
	}
	return w.Flush()
}

func printDownstream(out io.Writer, d *downstream.Stats) {
	fmt.Fprintf(out, "child edges: %d messages queued from them in %d batches, %d sent again (held already), %d refused\n",
		d.Messages, d.Batches, d.Duplicates, d.Refused)
	if d.Collisions > 0 {
		fmt.Fprintf(out, "ERROR: %d messages of a child edge collided with others it had sent under the same numbers (all queued): a copy of a child's data directory runs; see docs/operations.md, \"Cloned data directories\"\n", d.Collisions)
	}
	for _, c := range d.Children {
		fmt.Fprintf(out, "  %s: backlog %d, %d messages queued here, last seen %s (%s)\n", c.ID, c.Backlog, c.Messages,
			c.LastSeen.Format(time.RFC3339), c.Instance)
	}
}

func printUplink(out io.Writer, u *upstream.Status) {
	fmt.Fprintf(out, "link traffic: %d messages sent in %d batches, %d twin deltas up, %d down, %d C2D received, %d methods\n",
		u.Sent, u.Batches, u.TwinsUp, u.TwinsDown, u.C2D, u.Methods)
	fmt.Fprintf(out, "instance: %s\n", u.Instance)
	if u.DuplicateInstance {
		fmt.Fprintf(out, "WARNING: another edge is online with this edge's identity (instances %s): give each gateway its own device identity, or stop one; see outpost edge check\n",
			strings.Join(u.OtherInstances, ", "))
	}
	if u.InstanceCollisions > 0 {
		fmt.Fprintf(out, "ERROR: another edge sends under this instance id (a copy of this data directory): %d messages collided at the hub (all stored); see docs/operations.md, \"Cloned data directories\"\n",
			u.InstanceCollisions)
	}
	if u.HubAnswersIgnored+u.ImagesRefused > 0 {
		fmt.Fprintf(out, "WARNING: %d answers of the hub ignored (they claimed more than this edge sent; nothing was dropped), %d image downloads refused (larger than announced or than --max-image-size): is --hub-url an outpost hub, over TLS? see the edge's log\n",
			u.HubAnswersIgnored, u.ImagesRefused)
	}
	if u.TwinsRemoved+u.TwinsReset+u.MessagesPurged+u.MessagesRefused+u.TwinsRefused > 0 {
		fmt.Fprintf(out, "deleted identities: %d twins removed, %d started afresh, %d queued messages purged, %d messages and %d twin deltas refused\n",
			u.TwinsRemoved, u.TwinsReset, u.MessagesPurged, u.MessagesRefused, u.TwinsRefused)
	}
}

func printBroker(out io.Writer, b localapi.BrokerStatus) {
	fmt.Fprintf(out, "\nmessages: %d received, %d stored, %d without route, %d refused, %d delivered; %d failed logins, %d ACL denials\n",
		b.Received, b.Stored, b.NoRoute, b.Refused, b.Delivered, b.AuthFailed, b.Denied)
	if b.TopicReceived > 0 {
		fmt.Fprintf(out, "free topics: %d messages received, %d stored by /topics/ routes, %d without route\n", b.TopicReceived, b.TopicStored, b.TopicNoRoute)
	}
	if b.SessionStateFailed > 0 {
		fmt.Fprintf(out, "MQTT session state: %d writes failed or refused by a full disk (that state will not survive a restart)\n", b.SessionStateFailed)
	}
	if cuts := nonZero(b.ConnectionsRefusedBy); cuts != "" || b.SubscriptionsRefused > 0 {
		fmt.Fprintf(out, "connections: %d open; refused or cut before authenticating: %s; %d topic filters over the subscription cap\n",
			b.Connections, cuts, b.SubscriptionsRefused)
	} else {
		fmt.Fprintf(out, "connections: %d open\n", b.Connections)
	}
	if b.SessionsRevoked+b.SessionsExpired > 0 {
		fmt.Fprintf(out, "sessions ended with their credentials: %d revoked (deleted, disabled, credentials changed), %d expired tokens\n",
			b.SessionsRevoked, b.SessionsExpired)
	}
	if b.Refused > 0 {
		fmt.Fprintf(out, "refused by reason: %s\n", nonZero(b.RefusedBy))
	}
}

// nonZero lists the non-zero counts of byReason, sorted by reason:
// "reason n, reason n".
func nonZero(byReason map[string]int64) string {
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		if n := byReason[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	return strings.Join(parts, ", ")
}

func printDisk(out io.Writer, d localapi.DiskStatus) {
	ballast := "released"
	if d.BallastHeld {
		ballast = disk.FormatSize(d.Ballast) + " held"
	}
	fmt.Fprintf(out, "disk: %s; %s free for the store (reserve %s, allowance %s), ballast %s; queues hold %s of %s (overflow %s)\n",
		d.State, disk.FormatSize(d.Free), disk.FormatSize(d.Reserve), disk.FormatSize(d.Allowance), ballast,
		disk.FormatSize(d.QueueBytes), disk.FormatSize(d.MaxQueueBytes), d.Overflow)
}

// printMemory writes the memory line: the budget and its source, the Go
// limit in force and Badger's sizes.
func printMemory(out io.Writer, m localapi.MemoryStatus) {
	if m.Source == "" { // an edge from before memory budgets
		return
	}
	budget := "no budget"
	if m.Budget > 0 {
		budget = "budget " + disk.FormatSize(m.Budget) + " (" + m.Source + ")"
	}
	fmt.Fprintf(out, "memory: %s; Go memory limit %s (%s); Badger memtables %d × %s, tables %s, block cache %s, index cache %s\n",
		budget, disk.FormatSize(m.GoLimit), m.GoLimitFrom, m.NumMemtables, disk.FormatSize(m.MemTableSize),
		disk.FormatSize(m.BaseTableSize), disk.FormatSize(m.BlockCacheSize), disk.FormatSize(m.IndexCacheSize))
}

func edgeLogs(ctx context.Context, env cli.Env, args []string) error {
	fs := cli.SubFlags("edge logs", "MODULE --data DIR [--tail N] [--follow] [--api ADDR]", "print what a module wrote to stdout and stderr")
	api := fs.String("api", "", "the edge's --api address (default: from --data)")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory: its API address (ready.json) and operator token (api-token)")
	tail := fs.Int("tail", 0, "only the last N lines (0: all that is kept)")
	follow := fs.Bool("follow", false, "keep printing what the module writes")
	name, err := parseModuleArg(env, fs, args)
	if err != nil {
		return err
	}
	c, err := edgeClient(*data, *api, true)
	if err != nil {
		return err
	}
	return c.Logs(ctx, name, *tail, *follow, env.Stdout)
}

// parseModuleArg parses the flags of an edge subcommand that takes one
// module name, before or after its flags.
func parseModuleArg(env cli.Env, fs *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := cli.Parse(env, fs, args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if name == "" || fs.NArg() > 0 {
		return "", cli.SubUsagef(fs, "%s takes one module name", fs.Name())
	}
	return name, nil
}

// edgeRestart restarts a module, as `iotedge restart MODULE`:
// outpost edge restart MODULE [--data DIR] [--api ADDR].
func edgeRestart(ctx context.Context, env cli.Env, args []string) error {
	fs := cli.SubFlags("edge restart", "MODULE --data DIR [--api ADDR] [-o json|table]", "restart a module of a running edge, as iotedge restart")
	api := fs.String("api", "", "the edge's --api address (default: from --data)")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory: its API address (ready.json) and operator token (api-token)")
	out := fs.String("o", "json", "output: json or table")
	name, err := parseModuleArg(env, fs, args)
	if err != nil {
		return err
	}
	if *out != "json" && *out != "table" {
		return cli.SubUsagef(fs, "-o %q: want json or table", *out)
	}
	c, err := edgeClient(*data, *api, true)
	if err != nil {
		return err
	}
	mr, err := c.Restart(ctx, name)
	if err != nil {
		return err
	}
	if *out == "table" {
		_, err = fmt.Fprintf(env.Stdout, "module %s restarted\n", mr.Module)
		return err
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(mr)
}

// edgeDashboard prints a single-use login URL for a browser:
// outpost edge dashboard --data DIR. The browser gets a session cookie,
// never the token.
func edgeDashboard(ctx context.Context, env cli.Env, args []string) error {
	fs := cli.SubFlags("edge dashboard", "--data DIR [--api ADDR]", "print a single-use URL that logs a browser in to the edge's dashboard")
	api := fs.String("api", "", "the edge's --api address (default: from --data)")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory: its API address (ready.json) and operator token (api-token)")
	if err := cli.Parse(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.SubUsagef(fs, "unexpected argument %q", fs.Arg(0))
	}
	c, err := edgeClient(*data, *api, true)
	if err != nil {
		return err
	}
	u, err := c.LoginURL(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, "open this URL in a browser within 60 s; it works once:")
	fmt.Fprintln(env.Stdout, u)
	return nil
}

// edgeClient is the local API of the edge whose data directory is data
// (address from ready.json, token from api-token), or at api. With
// needToken, a missing token is an error that says how to pass it.
func edgeClient(data, api string, needToken bool) (localapi.Client, error) {
	if data == "" {
		if needToken {
			return localapi.Client{}, fmt.Errorf("this needs the edge's operator token: pass --data DIR, the edge's data directory (it holds api-token)")
		}
		if api == "" {
			api = defaultEdgeAPI
		}
		return localapi.Client{Addr: api}, nil
	}
	c, err := localapi.ClientFromData(data)
	if err != nil && (needToken || (c.Addr == "" && api == "")) {
		return c, err
	}
	if api != "" {
		c.Addr = api
	}
	return c, nil
}

// deploymentLine says what became of the last $edgeAgent deployment, in
// words and with IoT Edge's lastDesiredStatus code.
func deploymentLine(version int64, code int, description string) string {
	switch {
	case version == 0 && (code == 0 || code == 200):
		return "none yet (outpost deploy, or --deployment FILE without a hub)"
	case code == 200:
		return fmt.Sprintf("version %d applied (200)", version)
	case description == "":
		return fmt.Sprintf("version %d: %d", version, code)
	}
	return fmt.Sprintf("version %d: %d %s", version, code, description)
}
