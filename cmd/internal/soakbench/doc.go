// Package soakbench holds the soak benchmark: a day of an edge's life
// compressed into the benchmark budget. A real `outpost hub` and `outpost
// edge` (processes of a binary built once per run) carry QoS 1 telemetry
// at 1 000 msg/s from in-process MQTT publishers for SOAK_SECONDS (default
// 600), with the hub frozen (SIGSTOP, SIGCONT) for 15 s of every minute so
// the edge queues and drains again and again. The edge's anonymous memory,
// threads, goroutines, open file descriptors and data directory are sampled every 5 s;
// after a warm-up each gets its mean and its least-squares slope per hour
// (a leak is a slope away from 0). At the end the edge drains to the hub
// and every acknowledged message must be in the hub's event log exactly
// once. Run it with `make bench` (see .ci/bench).
package soakbench
