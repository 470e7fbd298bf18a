// Package twin keeps device and module twins in the store: IoT Hub patch
// semantics and limits on the way in, CRDT registers (store/crdt) in kv,
// IoT Hub JSON ($version, $metadata) on the way out, and deltas since a
// version vector for the link between edge and hub.
package twin
