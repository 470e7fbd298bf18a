package client

import (
	"context"
	"fmt"
)

// SendEvent sends a telemetry message (QoS 1) on
// devices/{d}[/modules/{m}]/messages/events/{bag} and returns once the
// broker acknowledged it, which on an outpost edge means it is stored
// durably. Without a connection it waits for one until ctx is done. If the
// connection drops first it returns ErrConnectionLost: the message may
// have been stored, so send it again with the same MessageID.
func (c *Client) SendEvent(ctx context.Context, m Message) error {
	if err := c.send(ctx, "", m); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	return nil
}

// SendOutput sends a message on a module output ($.on=<output>), where the
// edge's routes (FROM /messages/modules/<m>/outputs/<output>) take it.
// It behaves as SendEvent otherwise.
func (c *Client) SendOutput(ctx context.Context, output string, m Message) error {
	if output == "" {
		return fmt.Errorf("send output: %w: empty output name", ErrBadMessage)
	}
	if c.ModuleID() == "" {
		return fmt.Errorf("send output %q: %w: outputs are for modules; a device sends events (SendEvent)", output, ErrBadMessage)
	}
	if err := c.send(ctx, output, m); err != nil {
		return fmt.Errorf("send output %q: %w", output, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, output string, m Message) error {
	bag, err := encodeBag(m, output)
	if err != nil {
		return err
	}
	cn, err := c.current(ctx)
	if err != nil {
		return err
	}
	tok := cn.pc.Publish(c.events+bag, 1, false, m.Body)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-cn.lost:
		if tok.WaitTimeout(0) { // acknowledged just before the connection ended
			return tok.Error()
		}
		return ErrConnectionLost
	case <-ctx.Done():
		return ctx.Err()
	}
}
