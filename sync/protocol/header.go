package protocol

// InstancesHeader is set on the hub's answers to an edge's link requests
// when other instances (edge stores) of the same edge identity are live:
// their instance ids, comma-separated. Two gateways use one device
// identity (a second install with the same connection string, a copy of
// the data directory on another machine). It is a header, not a frame
// field, so that edges and hubs that do not know it ignore it (frames
// refuse unknown fields).
const InstancesHeader = "Outpost-Other-Instances"
