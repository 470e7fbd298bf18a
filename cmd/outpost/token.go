package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

var tokenCmd = cli.Command{
	Name:    "token",
	Summary: "print a SAS token for a device, module or hub policy connection string",
	Usage:   "--connection-string-file F [--ttl 1h]  (or env OUTPOST_CONNECTION_STRING)",
	Secrets: []cli.Secret{{Flag: "connection-string", Env: "OUTPOST_CONNECTION_STRING"}},
	Flags: func(fs *flag.FlagSet) {
		fs.String("connection-string", "", "the identity's connection string: HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=… or HostName=…;SharedAccessKeyName=…;SharedAccessKey=…; keep it off the command line: --connection-string-file or env OUTPOST_CONNECTION_STRING")
		fs.Duration("ttl", time.Hour, "how long the token stays valid")
	},
	Run: func(_ context.Context, env cli.Env, fs *flag.FlagSet) error {
		if fs.NArg() > 0 {
			return cli.Usagef("token takes no arguments")
		}
		s := fs.Lookup("connection-string").Value.String()
		ttl := fs.Lookup("ttl").Value.(flag.Getter).Get().(time.Duration)
		switch {
		case s == "":
			return cli.Usagef("a connection string is required: --connection-string-file F or env OUTPOST_CONNECTION_STRING")
		case ttl <= 0:
			return cli.Usagef("--ttl must be positive, got %s", ttl)
		}
		cs, err := sas.ParseConnString(s)
		if err != nil {
			return err
		}
		if cs.X509 {
			return fmt.Errorf("connection string is for X.509 (x509=true): it has no key to sign a token with; connect with the client certificate")
		}
		_, err = fmt.Fprintln(env.Stdout, sas.NewToken(cs.Resource(), cs.SharedAccessKey, cs.SharedAccessKeyName, time.Now().Add(ttl)))
		return err
	},
}
