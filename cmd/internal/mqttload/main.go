// Command mqttload is the MQTT load generator of Outpost's ingest benchmark
// (shared/design/TARGETS.md, "How the ingest comparison is run"): the same
// tool drives Mosquitto and Outpost. Clients publish QoS 1 messages on their
// own topic with up to -inflight unacknowledged each, as fast as that allows
// or paced at -rate in total; after -warmup it measures PUBACKed msg/s and
// the PUBACK latency of each message over -duration, then drains and
// disconnects. With -pid it samples the broker's CPU time and RSS from
// /proc. It prints one JSON object on stdout and a summary on stderr.
//
// Mosquitto, with a subscriber standing in for the bridge:
//
//	mqttload -broker tcp://127.0.0.1:1883 -pid $(pidof mosquitto) -topic 'bench/%d' -subscribe 'bench/#' -label mosquitto
//
// Outpost, each client a device with a SAS token:
//
//	mqttload -broker ssl://127.0.0.1:8883 -cafile ca.pem -pid $PID -label outpost \
//	  -username 'hub.local/load-%d/?api-version=2021-04-12' \
//	  -password-cmd 'outpost token --connection-string "HostName=hub.local;DeviceId=load-%d;SharedAccessKey=…"'
//
// Every %d in -client-id, -topic, -username, -password and -password-cmd is
// the client's index (from -first); the subscriber takes the index after the
// last publisher's.
//
// Module to module, in two processes: a receiver (one client, index -first)
// subscribes, creates the -ready file, and measures deliveries per second and
// the latency from the send time that a publisher with -stamp writes in the
// first 8 bytes of each payload, over -duration starting -warmup after its
// first delivery; it prints its own JSON object (delivered_per_s,
// latency_p50_ms, …):
//
//	mqttload -receive 'devices/gw1/modules/b/inputs/#' -ready ready -client-id gw1/b -username … -password-cmd … -pid $PID &
//	mqttload -stamp -clients 1 -client-id gw1/a -topic 'devices/gw1/modules/a/messages/events/%24.on=out1' …
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Receive != "" {
		err = runReceive(ctx, cfg)
	} else {
		err = runLoad(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func runLoad(ctx context.Context, cfg config) error {
	rep, err := run(ctx, cfg)
	if rep.Seconds > 0 {
		if werr := writeReport(os.Stdout, os.Stderr, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func runReceive(ctx context.Context, cfg config) error {
	rep, err := receive(ctx, cfg)
	if rep.Seconds > 0 {
		if werr := writeLine(os.Stdout, os.Stderr, rep, receiveSummary(rep)); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("mqttload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Broker, "broker", "tcp://127.0.0.1:1883", "broker URL: tcp://host:port or ssl://host:port")
	fs.StringVar(&c.CAFile, "cafile", "", "PEM file of the CA that signed the broker's certificate (ssl://)")
	fs.IntVar(&c.Clients, "clients", 10, "publishing connections")
	fs.IntVar(&c.First, "first", 0, "index of the first client, substituted for %d")
	fs.IntVar(&c.QoS, "qos", 1, "QoS of the publishes")
	fs.IntVar(&c.Inflight, "inflight", 16, "unacknowledged publishes per client at most (1 = closed loop)")
	fs.IntVar(&c.Size, "size", 100, "payload bytes")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measured window")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "publishing before the window, not measured")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "how long to wait for outstanding acks after the window")
	fs.Float64Var(&c.Rate, "rate", 0, "total msg/s over all clients, evenly paced (0 = as fast as -inflight allows)")
	fs.IntVar(&c.PID, "pid", 0, "broker process to sample from /proc (CPU, VmRSS, VmHWM)")
	fs.StringVar(&c.Label, "label", "", "name echoed in the output")
	fs.StringVar(&c.ClientID, "client-id", "load-%d", "client identifier template")
	fs.StringVar(&c.Topic, "topic", "devices/load-%d/messages/events/", "topic template")
	fs.StringVar(&c.Username, "username", "", "user name template")
	fs.StringVar(&c.Password, "password", "", "password template")
	fs.StringVar(&c.PasswordCmd, "password-cmd", "", "shell command template printing the password, run once per client")
	fs.StringVar(&c.Subscribe, "subscribe", "", "topic filter of an extra QoS 1 subscriber counting deliveries")
	fs.BoolVar(&c.Stamp, "stamp", false, "write the send time in the first 8 bytes of each payload (for a -receive process)")
	fs.StringVar(&c.Receive, "receive", "", "receive on this topic filter (at -qos) instead of publishing: deliveries/s and latency from -stamp")
	fs.StringVar(&c.Ready, "ready", "", "with -receive: file to create once subscribed")
	fs.DurationVar(&c.ReceiveWait, "receive-wait", 30*time.Second, "with -receive: how long to wait for the first delivery")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mqttload: unexpected arguments %q\n", fs.Args())
		return c, fmt.Errorf("unexpected arguments")
	}
	return c, nil
}

func writeReport(stdout, stderr io.Writer, r report) error {
	return writeLine(stdout, stderr, r, summary(r))
}

// writeLine prints r as one JSON line on stdout and sum on stderr.
func writeLine(stdout, stderr io.Writer, r any, sum string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	_, err = fmt.Fprintln(stderr, sum)
	return err
}

func summary(r report) string {
	s := fmt.Sprintf("%s: %d clients qos%d inflight %d %dB", r.Label, r.Clients, r.QoS, r.Inflight, r.Size)
	if r.Label == "" {
		s = s[2:]
	}
	if r.Rate > 0 {
		s += fmt.Sprintf(" rate %g/s", r.Rate)
	}
	s += fmt.Sprintf(": %.0f msg/s (%d acked in %.1fs), puback p50 %.2f p90 %.2f p99 %.2f max %.1f ms, %d errors",
		r.MsgsPerS, r.Acked, r.Seconds, r.PubackP50ms, r.PubackP90ms, r.PubackP99ms, r.PubackMaxms, r.Errors)
	if r.Disconnects > 0 {
		s += fmt.Sprintf(" (%d disconnects)", r.Disconnects)
	}
	if r.Delivered != nil {
		s += fmt.Sprintf(", %d delivered", *r.Delivered)
	}
	return s + brokerSummary(r.BrokerCPUPct, r.BrokerUsPerMsg, r.BrokerRSSMB, r.BrokerRSSPeakMB)
}

// brokerSummary is the broker's part of a summary line, from -pid's
// samples ("" without them).
func brokerSummary(cpuPct, usPerMsg, rssMB, rssPeakMB *float64) string {
	if cpuPct == nil {
		return ""
	}
	s := fmt.Sprintf(", broker %.0f%% CPU", *cpuPct)
	if usPerMsg != nil {
		s += fmt.Sprintf(" %.1f µs/msg", *usPerMsg)
	}
	return s + fmt.Sprintf(" RSS %.1f MB (peak %.1f)", *rssMB, *rssPeakMB)
}
