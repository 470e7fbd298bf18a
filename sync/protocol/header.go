package protocol

// InstancesHeader is set on the hub's answers to an edge's link requests
// when other instances (edge stores) of the same edge identity are live:
// their instance ids, comma-separated. Two gateways use one device
// identity (a second install with the same connection string, a copy of
// the data directory on another machine). It is a header, not a frame
// field, so that edges and hubs that do not know it ignore it (frames
// refuse unknown fields).
const InstancesHeader = "Outpost-Other-Instances"

// LeaderHeader is set by a hub cluster on its answers to link requests: the
// base URL of the leader's API, which answers every request (a follower
// forwards it there). An edge whose list of hub nodes names that URL moves
// to it, saving the forward.
const LeaderHeader = "Outpost-Leader"
