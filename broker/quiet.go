package broker

import (
	"sync"
	"sync/atomic"
)

// quietCap bounds the free topics quietTopics remembers; past it the
// memory starts over (topics are client-chosen and unbounded).
const quietCap = 1024

// quietTopics remembers the free topics that had no subscriber, so that a
// QoS 1 publish on them skips mochi's fan-out, which builds four maps and
// runs every hook again for each message even when nobody listens.
//
// A remembered answer holds only while no subscriber was added since: the
// epoch moves before and after every change that can add one to mochi's
// index (OnSubscribe and OnSubscribed around a SUBSCRIBE, whose SUBACK mochi
// writes after OnSubscribed; OnConnect and OnSessionEstablished around a
// session's inheritance), and an answer is kept only if the epoch did not
// move while mochi's index was read. Subscriptions restored at the start
// come before any publish. Removals only make "quiet" truer. Anything that
// subscribes through mochi's Server.Subscribe (inline subscriptions) must
// call bump too; nothing in Outpost does.
type quietTopics struct {
	epoch  atomic.Uint64
	topics sync.Map // topic → the epoch at which it had no subscriber
	n      atomic.Int64
}

// bump marks a change that may add a subscriber.
func (q *quietTopics) bump() { q.epoch.Add(1) }

// quiet reports whether topic has no subscriber; listened asks mochi's
// index whether it has one.
func (q *quietTopics) quiet(topic string, listened func(string) bool) bool {
	e := q.epoch.Load()
	if v, ok := q.topics.Load(topic); ok && v.(uint64) == e {
		return true
	}
	if listened(topic) {
		return false
	}
	if q.epoch.Load() == e {
		if q.n.Add(1) > quietCap {
			q.topics.Clear()
			q.n.Store(0)
		}
		q.topics.Store(topic, e)
	}
	return true
}
