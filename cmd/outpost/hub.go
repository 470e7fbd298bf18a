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
	logLevel string
}

var hubCmd = cli.Command{
	Name:    "hub",
	Summary: "run the cloud side: registry, twins, deployments, event log, C2D, methods, REST API and the edge link",
	Usage:   "--data DIR --listen ADDR [--hostname H] [--tls-cert F --tls-key F] [--owner-key-file F] | --config FILE",
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
		fs.StringVar(&hubCfg.logLevel, "log-level", "info", "debug, info, warn or error")
		fs.String("node-id", "", "cluster: this node's id (not implemented yet: one node only)")
		fs.String("raft", "", "cluster: raft address (not implemented yet)")
		fs.String("join", "", "cluster: URL of a hub to join (not implemented yet)")
	},
	Run: func(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
		if fs.NArg() > 0 {
			return cli.Usagef("unexpected argument %q", fs.Arg(0))
		}
		for _, f := range []string{"node-id", "raft", "join"} {
			if fs.Lookup(f).Value.String() != "" {
				return cli.Usagef("--%s: the hub runs as one node for now; clustering is not implemented yet", f)
			}
		}
		c := hubCfg.Config
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
