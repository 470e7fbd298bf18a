// Package supervisor runs the modules of an IoT Edge deployment (the
// `$edgeAgent` desired properties) as OS processes and keeps them in the
// desired state: it diffs the deployment against what runs and converges
// (start, stop, update, remove, in startupOrder), applies restart policies
// with exponential backoff and no permanent give-up, runs health checks,
// captures each module's output in bounded log files, and keeps module
// images in a content-addressed cache so that an edge that restarts without
// a network brings every module back.
//
// With Options.ModuleUIDs (the edge runs as root) each module runs under its
// own uid and gid, recorded so it keeps them across restarts, or under its
// createOptions.User; health checks run as the module, its directory is its
// own, and of the rest of the supervisor's directory it can read only the
// images.
//
// A bad deployment (unknown field, bad restart policy, missing image,
// digest mismatch) is refused as a whole with a clear lastDesiredStatus;
// the modules in force keep running.
//
// Run owns all state in one goroutine; it starts a goroutine per running
// process (waiting for its exit), per health check and per deployment being
// resolved, and waits for all of them before it returns.
package supervisor
