// Package linkproxy is a TCP proxy that stands for the edge–hub link in
// tests: it forwards connections to a target and can cut the link, make it
// silent, delay it, throttle it or make it flap.
//
//	p, err := linkproxy.Open("127.0.0.1:0", hubAddr, linkproxy.Options{})
//	defer p.Close()
//	// point the edge at p.Addr(), then:
//	p.Cut()     // every connection is reset, new ones are reset on accept
//	p.Restore() // new connections are forwarded again
//
// # Faults
//
//   - Cut is a lost carrier: open connections are closed with an RST (both
//     the client and the target side) and new connections are accepted and
//     reset at once, so peers see errors quickly.
//   - Blackhole is a link that went silent: connections stay open but no
//     byte moves in either direction; new connections are accepted and never
//     forwarded (the target is not even dialled), so peers see timeouts.
//     Restore after Blackhole resets every connection that lived through
//     the blackhole and drops the bytes it held: the link is not replayed,
//     so a request the edge gave up on never reaches the hub late, and both
//     sides learn at once that their connections are gone.
//   - SetDelay adds one-way latency to each chunk in each direction. Chunks
//     wait in a bounded, timestamped queue (not a sleep before each read), so
//     delay does not cap throughput; a new delay applies to bytes read after
//     the call and chunks never overtake each other.
//   - SetRate throttles each direction separately to the given bytes per
//     second, like a real link: uploads and downloads each get the full
//     rate, and all connections going one way share it. Throttled bytes are
//     written in pieces of rate/50 bytes (at least 512) so pacing is smooth.
//   - StartFlap alternates Cut and Restore with random durations until
//     StopFlap, which leaves the link restored.
//
// Stats counts accepted connections, cuts and forwarded bytes.
//
// # Goroutines
//
// Open starts an accept loop; each forwarded connection runs a handler and
// a reader and a writer per direction; StartFlap starts one more. Close
// resets every connection and waits for all of them.
package linkproxy
