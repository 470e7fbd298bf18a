package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hub"
)

var hubCfg struct {
	hub.Config
	logLevel    string
	snapshotMiB int64
}

var hubCmd = cli.Command{
	Name:    "hub",
	Summary: "run the cloud side: registry, twins, deployments, event log, C2D, methods, REST API and the edge link",
	Usage:   "--data DIR --listen ADDR [--hostname H] [--tls-cert F --tls-key F] [--owner-key-file F] [--routes FILE] [--node-id ID --raft ADDR [--raft-advertise ADDR] [--join URL]] | --config FILE | members | leave NODE-ID",
	Config:  true,
	Secrets: []cli.Secret{{Flag: "owner-key", Env: "OUTPOST_HUB_OWNER_KEY"}},
	Flags: func(fs *flag.FlagSet) {
		c := &hubCfg
		fs.StringVar(&c.DataDir, "data", "", "data directory (store, owner connection string)")
		fs.StringVar(&c.Listen, "listen", "", "address of the REST API and the edge link, e.g. 127.0.0.1:8080 (plain HTTP on loopback) or :8443 (HTTPS: see --tls-cert)")
		fs.StringVar(&c.Hostname, "hostname", "", "the hub's HostName in connection strings and SAS tokens (default: the listen address)")
		fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); without it, a hub on a non-loopback --listen address makes a CA and a certificate in <data>/certs and serves HTTPS (edges and the CLI trust <data>/certs/ca.pem)")
		fs.StringVar(&c.TLSKey, "tls-key", "", "key of --tls-cert (PEM)")
		fs.StringVar(&c.OwnerKey, "owner-key", "", "base64 key of the owner policy (default: generated on first start and written to <data>/owner.connection-string); keep it off the command line: --owner-key-file, env OUTPOST_HUB_OWNER_KEY or --config")
		fs.Int64Var(&c.MaxImageMiB, "max-image-size", hub.DefaultMaxImageMiB, "largest module image that outpost image push may store, in MiB")
		fs.DurationVar(&c.Retention, "retention", 7*24*time.Hour, "how long device-to-cloud events stay in the log (and the digests that recognise retransmitted batches); negative keeps them forever")
		fs.IntVar(&c.MaxLinkRequests, "max-link-requests", hub.DefaultMaxLinkRequests, "link requests one edge may have in flight; more are answered 429 with Retry-After")
		fs.DurationVar(&c.RequestTimeout, "request-timeout", hub.DefaultRequestTimeout, "time to read a REST request and write its answer; long polls, image transfers, method calls and the link are exempt once authenticated")
		fs.StringVar(&c.Routes, "routes", "", "message routing: a TOML file of endpoints (type nats: JetStream subject; kafka: brokers and topic; webhook: https URL, ca, headers) and routes (query = \"FROM /messages/* [WHERE <condition>] INTO <endpoint>\", conditions as in edge routes); each endpoint gets every event its routes select at least once, in hub order, with its seq (Nats-Msg-Id <hub>-<seq> and Outpost-Seq headers, Kafka header outpost-seq keyed by device, JSON arrays to webhooks); the file may hold secrets and must be chmod 600 (docs/operations.md, Routing events to NATS, Kafka and webhooks)")
		fs.StringVar(&hubCfg.logLevel, "log-level", "info", "debug, info, warn or error")
		fs.StringVar(&c.NodeID, "node-id", "", "cluster: this node's id (e.g. n1); with --raft, runs the hub as a node of a raft cluster (docs/operations.md)")
		fs.StringVar(&c.Raft, "raft", "", "cluster: address of this node's raft transport (mutual TLS), e.g. 10.0.0.1:7000")
		fs.StringVar(&c.RaftAdvertise, "raft-advertise", "", "cluster: the raft address the other nodes dial when it is not --raft (a NAT or a proxy in front of the port; default: --raft)")
		fs.StringVar(&c.Join, "join", "", "cluster: URL of any node of the cluster to join (every node but the first; needs the cluster's owner key)")
		fs.Uint64Var(&c.TrailingLogs, "raft-trailing-logs", hub.DefaultTrailingLogs, "cluster: log entries kept after a snapshot (one entry is an edge's frame of up to 1000 events)")
		fs.Uint64Var(&c.SnapshotThreshold, "raft-snapshot-threshold", hub.DefaultSnapshotThreshold, "cluster: entries since the last snapshot that trigger one")
		fs.Int64Var(&hubCfg.snapshotMiB, "raft-snapshot-size", hub.DefaultSnapshotBytes>>20, "cluster: MiB of commands since the last snapshot that trigger one, so the raft log stays bounded in bytes")
		fs.DurationVar(&c.SnapshotInterval, "raft-snapshot-interval", hub.DefaultSnapshotInterval, "cluster: how often to check the snapshot threshold")
	},
	Run: func(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
		switch fs.Arg(0) {
		case "members":
			return hubMembers(ctx, env, fs.Args()[1:])
		case "leave":
			return hubLeave(ctx, env, fs.Args()[1:])
		}
		if fs.NArg() > 0 {
			return cli.Usagef("unexpected argument %q", fs.Arg(0))
		}
		c := hubCfg.Config
		if hubCfg.snapshotMiB < 1 {
			return cli.Usagef("--raft-snapshot-size %d: want at least 1 (MiB)", hubCfg.snapshotMiB)
		}
		c.SnapshotBytes = hubCfg.snapshotMiB << 20
		if c.DataDir == "" || c.Listen == "" {
			return cli.Usagef("--data and --listen are required")
		}
		var level slog.Level
		if err := level.UnmarshalText([]byte(hubCfg.logLevel)); err != nil {
			return cli.Usagef("--log-level: %v", err)
		}
		c.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
		c.Stdout = env.Stdout
		return hub.Run(ctx, c)
	},
}
