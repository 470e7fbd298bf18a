// Package downstream is a parent edge's side of the link to its child
// edges (nested edges, ISA-95 layers): `outpost edge --downstream ADDR`
// serves the frames of sync/protocol that the hub serves, so a child edge
// runs unchanged with its --hub-url pointing at its parent.
//
// What it serves today:
//   - hello: the cursors this parent holds for the child's incarnation;
//   - messages: each frame of a child's upstream queue goes into the
//     parent's queue of the same name, with the child's cursor (the highest
//     sequence number taken, per incarnation and queue) in the same commit:
//     a retransmitted message is counted as a duplicate, never queued twice.
//     Each message keeps its source and records the child in its EdgePath;
//     the parent drains it upward as its own, and the hub records the whole
//     path. A message whose source is not in the child's subtree is
//     acknowledged and refused (counted), as the hub does;
//   - pull: the identities of the child's subtree (the parent holds them:
//     the hub's scope of an edge covers its subtree); the fields of its
//     subtree's twins it lacks (the hub's desired properties among them,
//     with their original stamps); the cloud-to-device messages queued here
//     for its subtree's devices, removed once the child says it stored them;
//     direct methods for its subtree (Invoke). Held until there is
//     something or the wait passes;
//   - twins: the child's twin changes, fields written by incarnations of
//     edges in its subtree, merged as they are (never re-stamped, or
//     replicas would not converge); the parent's link sends them up with
//     its own (Forwards), and a tombstone under a child waits for that
//     child's ack (ChildMembers);
//   - methods: the child's answer to a call it was handed;
//   - images: a module image from this edge's cache, fetched through its
//     own link (and kept) when missing (Options.Image).
//
// Without Options.Twins (or Image) those paths answer 501, which a child's
// link reports without dropping the link.
//
// Every request carries the child edge's SAS token, checked against the
// parent's identity cache (offline, as the MQTT listeners do): the child
// must be an enabled edge whose parent is this edge.
package downstream
