package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

var c2dCmd = hubCommand("c2d",
	"send a cloud-to-device message (queued on the hub until the device takes it)",
	"send D PAYLOAD [--prop k=v]... [--message-id ID]",
	func(fs *flag.FlagSet) {
		fs.Var(&propsFlag{}, "prop", "application property k=v, sent as header iothub-app-k (repeatable)")
		fs.String("message-id", "", "message id (default: random hex)")
	},
	runC2D,
)

func runC2D(ctx context.Context, h *hubCall) error {
	_, args, err := h.sub(map[string]int{"send": 2})
	if err != nil {
		return err
	}
	if err := checkID("device id", args[0]); err != nil {
		return err
	}
	msg := hubclient.C2D{
		MessageID:  h.str("message-id"),
		Properties: h.fs.Lookup("prop").Value.(*propsFlag).props,
		Payload:    []byte(args[1]),
	}
	if msg.MessageID == "" {
		msg.MessageID = randomID()
	} else if err := headerValue("--message-id", msg.MessageID); err != nil {
		return cli.Usagef("%v", err)
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	if err := c.SendC2D(ctx, args[0], msg); err != nil {
		return err
	}
	return h.writeValue(map[string]string{"messageId": msg.MessageID})
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// propsFlag collects repeated --prop k=v in order.
type propsFlag struct{ props [][2]string }

func (p *propsFlag) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(p.props))
	for i, kv := range p.props {
		s[i] = kv[0] + "=" + kv[1]
	}
	return strings.Join(s, ",")
}

func (p *propsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want k=v, got %q", s)
	}
	for i := 0; i < len(k); i++ {
		if !tokenChar(k[i]) {
			return fmt.Errorf("property name %q has %q; it goes into an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", k, rune(k[i]))
		}
	}
	if err := headerValue("property "+k, v); err != nil {
		return err
	}
	p.props = append(p.props, [2]string{k, v})
	return nil
}

// tokenChar reports whether c may appear in an HTTP header name (RFC 9110 token).
func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headerValue refuses what cannot travel in an HTTP header value.
func headerValue(what, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("%s has a control character; it goes into an HTTP header", what)
		}
	}
	return nil
}
