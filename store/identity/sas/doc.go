// Package sas reads and writes Azure IoT Hub connection strings and shared
// access signature (SAS) tokens, and verifies tokens against an identity's
// keys, exactly as IoT Hub and IoT Edge do (shared/design/CONTRACT.md §2).
//
// It is pure (standard library only) so that the broker, the hub, the CLI and
// the module SDK can all use it. Errors never contain keys or signatures.
package sas
