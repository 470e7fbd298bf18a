package check

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/outpost-edge/outpost/store/disk"
)

// checkDisk: the running edge's disk state and queue cap, else the data
// filesystem's free space.
func (r *run) checkDisk() {
	if st := r.status; st != nil {
		d := st.Disk
		free := fmt.Sprintf("%s free for the store (reserve %s); queues hold %s of %s", disk.FormatSize(d.Free), disk.FormatSize(d.Reserve),
			disk.FormatSize(d.QueueBytes), disk.FormatSize(d.MaxQueueBytes))
		switch {
		case d.State != "ok":
			r.add("disk", Error, fmt.Sprintf("the data filesystem is %s: %s; telemetry is refused (%d so far)", d.State, free, d.RefusedTelemetry),
				"free space on the filesystem of "+r.dataDir()+" (the edge resumes by itself), or move --data to a larger disk")
		case d.MaxQueueBytes > 0 && d.QueueBytes*10 >= d.MaxQueueBytes*9:
			r.add("disk", Warn, "the queues are at 90% of their cap: "+free,
				"bring the link up so they drain, or raise --max-queue-bytes (overflow "+d.Overflow+")")
		default:
			r.add("disk", OK, free, "")
		}
		return
	}
	dir := r.dataDir()
	if dir == "" {
		return
	}
	sp, err := disk.Statfs(existingParent(dir))
	if err != nil {
		r.add("disk", Error, err.Error(), "check that --data names a directory on a mounted filesystem")
		return
	}
	msg := fmt.Sprintf("%s free of %s on the filesystem of %s", disk.FormatSize(sp.Avail), disk.FormatSize(sp.Size), dir)
	switch {
	case sp.Avail < 64<<20:
		r.add("disk", Error, msg+": the edge would refuse telemetry at once", "free space there, or move --data to a larger disk")
	case sp.Avail*10 < sp.Size:
		r.add("disk", Warn, msg+": under 10% free", "free space there: the queues are capped at a share of it (--max-queue-bytes)")
	default:
		r.add("disk", OK, msg, "")
	}
}

func (r *run) dataDir() string { return r.opts.DataDir }

// existingParent is dir or its nearest existing parent (a data directory
// not created yet).
func existingParent(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// checkPorts: a running edge owns its listeners; otherwise each configured
// address must be free to listen on.
func (r *run) checkPorts() {
	if rd := r.ready; rd != nil {
		var own []string
		for _, l := range []struct{ name, addr string }{{"mqtt", rd.MQTT}, {"mqtts", rd.MQTTS}, {"ws", rd.WS}, {"api", rd.API}} {
			if l.addr != "" {
				own = append(own, l.name+" "+l.addr)
			}
		}
		r.add("ports", OK, "owned by this edge (pid "+fmt.Sprint(rd.PID)+"): "+join(own), "")
		return
	}
	c := r.cfg()
	addrs := map[string]string{"mqtt": c.MQTT, "mqtts": c.MQTTS, "ws": c.WS, "api": c.API}
	if c.MQTT == "" && c.MQTTS == "" && c.WS == "" {
		addrs["mqtts"] = ":8883" // the edge's default listener
	}
	var free, busy []string
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		a := addrs[name]
		if a == "" || strings.HasSuffix(a, ":0") {
			continue
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			reason := err.Error()
			if errors.Is(err, syscall.EADDRINUSE) {
				reason = "in use by another program"
			}
			busy = append(busy, fmt.Sprintf("--%s %s: %s", name, a, reason))
			continue
		}
		_ = l.Close()
		free = append(free, name+" "+a)
	}
	switch {
	case len(busy) > 0:
		r.add("ports", Error, join(busy), "stop the program that holds it (ss -ltnp shows which) or give the edge another address")
	case len(free) > 0:
		r.add("ports", OK, "free: "+join(free), "")
	}
}

// checkImages: every module of the running edge's deployment has its image
// in the edge's cache (<data>/modules/images), so it starts again offline.
func (r *run) checkImages() {
	st := r.status
	if st == nil {
		if dir := r.dataDir(); dir != "" {
			blobs, _ := filepath.Glob(filepath.Join(dir, "modules", "images", "sha256-*[0-9a-f]"))
			r.add("images", OK, plural(len(blobs), "module image", "module images")+" cached; the deployment is checked while the edge runs", "")
		}
		return
	}
	if len(st.Modules) == 0 {
		r.add("images", OK, "no modules deployed", "")
		return
	}
	var missing, failed []string
	for _, name := range slices.Sorted(maps.Keys(st.Modules)) {
		m := st.Modules[name]
		if h := m.Settings.ImageHash; h != "" && r.dataDir() != "" {
			blob := filepath.Join(r.dataDir(), "modules", "images", strings.Replace(h, ":", "-", 1))
			if _, err := os.Stat(blob); err != nil {
				missing = append(missing, name+" ("+m.Settings.Image+")")
			}
		}
		if m.RuntimeStatus == "failed" || m.RuntimeStatus == "backoff" || m.RuntimeStatus == "unhealthy" {
			failed = append(failed, fmt.Sprintf("%s %s: %s", name, m.RuntimeStatus, m.StatusDescription))
		}
	}
	switch {
	case len(missing) > 0:
		r.add("images", Error, "not in the edge's image cache: "+join(missing),
			"the edge fetches images from the hub while the link is up (outpost image push, imagePullPolicy); see outpost edge logs")
	case len(failed) > 0:
		r.add("images", Warn, "images cached; modules not running: "+join(failed), "outpost edge logs MODULE --data "+r.dataDir())
	default:
		r.add("images", OK, plural(len(st.Modules), "module", "modules")+" with their images cached", "")
	}
}

// checkIdentity: no other edge is online with this edge's identity (the
// hub's duplicate detection, through the running edge's link or the
// check's own Hello) and no copy sends under its instance id.
func (r *run) checkIdentity() {
	var others []string
	if st := r.status; st != nil && st.Uplink != nil {
		for _, o := range st.Uplink.OtherInstances {
			if o == st.Uplink.Instance {
				r.add("identity", Error, "another edge pulls under this edge's instance id "+o+" (a copy of its data directory on the same machine id)",
					"give the copy its own machine id (--machine-id-file) or a fresh data directory, and its own device identity")
				continue
			}
			others = append(others, o)
		}
		if st.Uplink.InstanceCollisions > 0 {
			r.add("identity", Error, fmt.Sprintf("another edge sends under this edge's instance id (a copy of its data directory): %d messages collided at the hub", st.Uplink.InstanceCollisions),
				"give the copy its own machine id (--machine-id-file) or a fresh data directory")
		}
	}
	if h := r.welcome; h != nil {
		for _, o := range h.others {
			if r.status == nil || r.status.Uplink == nil || o != r.status.Uplink.Instance {
				others = append(others, o)
			}
		}
	}
	slices.Sort(others)
	others = slices.Compact(others)
	switch {
	case len(others) > 0 && r.status == nil:
		r.add("identity", Error, "this edge is not running, yet the hub sees its identity online elsewhere (instances "+join(others)+")",
			"another gateway uses this connection string: give each gateway its own device identity (outpost device create ID --edge)")
	case len(others) > 0:
		r.add("identity", Error, "another edge is online with this edge's identity (instances "+join(others)+")",
			"two gateways share one connection string or a copied data directory: give each its own device identity (outpost device create ID --edge), or stop one")
	case len(find(r.findings, "identity")) > 0:
		// a copy under this instance id, said above
	case r.welcome != nil && r.welcome.status == 200 || r.status != nil && r.status.Uplink != nil && r.status.Uplink.State == "online":
		r.add("identity", OK, "no other edge online with this identity", "")
	}
}

// find returns the findings of one check.
func find(fs []Finding, check string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}
