package main

import (
	"context"
	"encoding/json"
	"flag"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

var methodCmd = hubCommand("method",
	"invoke a direct method on a device or module; prints its {\"status\",\"payload\"} answer",
	"invoke D[/M] NAME [JSON] [--timeout S] [--connect-timeout S]",
	func(fs *flag.FlagSet) {
		fs.Int("timeout", 30, "seconds to wait for the device's answer (responseTimeoutInSeconds)")
		fs.Int("connect-timeout", 0, "seconds to wait for the device to connect (connectTimeoutInSeconds; 0: it must be connected now)")
	},
	runMethod,
)

func runMethod(ctx context.Context, h *hubCall) error {
	if len(h.args) == 0 || h.args[0] != "invoke" {
		_, _, err := h.sub(map[string]int{"invoke": 2})
		return err
	}
	args := h.args[1:]
	if len(args) != 2 && len(args) != 3 {
		return cli.Usagef("method invoke takes D[/M], NAME and an optional JSON payload, got %d argument(s)", len(args))
	}
	d, m, err := target(args[0])
	if err != nil {
		return err
	}
	name := args[1]
	if name == "" {
		return cli.Usagef("the method name is empty")
	}
	timeout, connect := h.get("timeout").(int), h.get("connect-timeout").(int)
	if timeout <= 0 || connect < 0 {
		return cli.Usagef("--timeout must be positive and --connect-timeout not negative, got %d and %d", timeout, connect)
	}
	var payload json.RawMessage
	if len(args) == 3 {
		if payload, err = jsonArg("the method payload", args[2], false, `{"delay":5}`); err != nil {
			return err
		}
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	out, err := c.InvokeMethod(ctx, d, m, name, payload, time.Duration(timeout)*time.Second, time.Duration(connect)*time.Second)
	if err != nil {
		return err
	}
	return h.write(out)
}
