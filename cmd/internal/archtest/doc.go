// Package archtest holds the test that enforces the layout and dependency
// rules of docs/ARCHITECTURE.md. It has no code of its own.
package archtest
