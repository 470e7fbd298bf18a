package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

var eventsCmd = hubCommand("events",
	"read device-to-cloud events from the hub's event log, one JSON event per line (bodyDecoded: the body as JSON or text); -o table: time, source, body",
	"[--from N] [--follow] [--limit K]",
	func(fs *flag.FlagSet) {
		fs.Uint64("from", 0, "first sequence number to read (0: the start of the log)")
		fs.Bool("follow", false, "keep waiting for new events until interrupted (Ctrl-C); retries while the hub is unreachable")
		fs.Int("limit", 0, "stop after this many events (0: no limit)")
	},
	runEvents,
)

const bodyColumn = 60 // characters of the body -o table shows

func runEvents(ctx context.Context, h *hubCall) error {
	if len(h.args) > 0 {
		return cli.Usagef("events takes no arguments, got %q", h.args[0])
	}
	o := hubclient.FollowOptions{
		From:   h.get("from").(uint64),
		Limit:  h.get("limit").(int),
		Follow: h.get("follow").(bool),
		OnRetry: func(err error, delay time.Duration) {
			fmt.Fprintf(h.env.Stderr, "events: %v; retrying in %s\n", err, delay)
		},
	}
	if o.Limit < 0 {
		return cli.Usagef("--limit must not be negative, got %d", o.Limit)
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	show := printEventJSON
	if h.table {
		fmt.Fprintf(h.env.Stdout, "%8s  %-24s  %-20s  %-20s  %s\n", "SEQ", "ENQUEUED", "DEVICE", "MESSAGE ID", "BODY")
		show = printEventRow
	}
	err = c.Follow(ctx, o, func(e hubclient.Event) error { return show(h, e) })
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: the normal end of --follow
	}
	return err
}

// printEventJSON prints the event compact on one line, fields as received
// and bodyDecoded after them: the body as a JSON value when it is JSON, as
// a string when it is UTF-8 text, absent otherwise.
func printEventJSON(h *hubCall, e hubclient.Event) error {
	raw := []byte(e.Raw)
	if v, ok := decodeBody(e); ok {
		var err error
		if raw, err = withField(raw, "bodyDecoded", v); err != nil {
			return fmt.Errorf("event %d: %w", e.Seq, err)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("event %d: %w", e.Seq, err)
	}
	buf.WriteByte('\n')
	_, err := h.env.Stdout.Write(buf.Bytes())
	return err
}

func printEventRow(h *hubCall, e hubclient.Event) error {
	src := e.DeviceID
	if e.ModuleID != "" {
		src += "/" + e.ModuleID
	}
	_, err := fmt.Fprintf(h.env.Stdout, "%8d  %-24s  %-20s  %-20s  %s\n", e.Seq, dash(e.EnqueuedTime), src, dash(e.MessageID), bodyText(e))
	return err
}

// decodeBody returns the event's body as a JSON value (json.RawMessage)
// when it is JSON, as a string when it is UTF-8 text; false otherwise.
func decodeBody(e hubclient.Event) (any, bool) {
	b, err := e.Body()
	switch {
	case err != nil || !utf8.Valid(b):
		return nil, false
	case json.Valid(b):
		var buf bytes.Buffer
		_ = json.Compact(&buf, b) // valid JSON always compacts
		return json.RawMessage(buf.Bytes()), true
	}
	return string(b), true
}

// bodyText shows a body on one line: JSON compacted, text as is (control
// characters as spaces), anything else as base64, cut to bodyColumn
// characters.
func bodyText(e hubclient.Event) string {
	s := e.BodyBase64
	if v, ok := decodeBody(e); ok {
		if j, isJSON := v.(json.RawMessage); isJSON {
			v = string(j)
		}
		s = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, v.(string))
	}
	if r := []rune(s); len(r) > bodyColumn {
		s = string(r[:bodyColumn-1]) + "…"
	}
	return s
}
