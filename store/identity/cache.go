package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// Layout under kv.PrefixIdentity ('i'):
//
//	i 'r' <id> 0  → Identity (CBOR), id = "d" or "d/m"
//
// The 'r' leaves room for cache metadata (last refresh, hub generation) later.
const recordTag = 'r'

func recordPrefix() []byte { return []byte{kv.PrefixIdentity, recordTag} }

func recordKey(id string) []byte { return kv.AppendString(recordPrefix(), id) }

// Options configure a Cache.
type Options struct {
	Logger *slog.Logger
}

// Cache holds the identities in this edge's scope. kv is the system of
// record; the map is a read copy loaded at Open and updated after each
// successful commit, so Authenticate never touches the disk. Safe for
// concurrent use; writes are serialised (they are rare: hub syncs).
type Cache struct {
	db  *kv.DB
	log *slog.Logger

	wmu sync.Mutex // serialises writers: read-modify-commit-publish
	mu  sync.RWMutex
	ids map[string]Identity
	enc map[string][]byte // stored bytes, to skip rewriting unchanged records

	watchMu  sync.Mutex
	watchers []func(ids []string)
}

// Open loads the cache from db. A record that no longer decodes (written by a
// newer outpost, or damaged) is skipped and logged, so the edge still starts
// and authenticates everyone else; the hub's next snapshot rewrites it.
func Open(ctx context.Context, db *kv.DB, opts Options) (*Cache, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{db: db, log: opts.Logger, ids: map[string]Identity{}, enc: map[string][]byte{}}
	skipped := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: recordPrefix(), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			b, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			key := item.KeyCopy(nil)
			id, err := decodeIdentity(b)
			if err != nil || !bytes.Equal(key, recordKey(id.ID())) {
				skipped++
				c.log.Warn("identity cache: skipping unreadable record", "key", fmt.Sprintf("%q", key), "err", err)
				continue
			}
			c.ids[id.ID()], c.enc[id.ID()] = id, b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load identity cache: %w", err)
	}
	c.log.Info("identity cache loaded", "identities", len(c.ids), "skipped", skipped)
	return c, nil
}

// Get returns the identity "d" or "d/m".
func (c *Cache) Get(id string) (Identity, bool, error) {
	if _, _, err := SplitID(id); err != nil {
		return Identity{}, false, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.ids[id]
	return v.clone(), ok, nil
}

// List returns every identity, sorted by ID.
func (c *Cache) List() ([]Identity, error) {
	c.mu.RLock()
	out := make([]Identity, 0, len(c.ids))
	for _, v := range c.ids {
		out = append(out, v.clone())
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// Put adds or replaces ids atomically (one kv commit). When the same id
// appears twice, the last one wins.
func (c *Cache) Put(ctx context.Context, ids ...Identity) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	next, err := index(ids)
	if err != nil {
		return fmt.Errorf("put identities: %w", err)
	}
	return c.apply(ctx, next, nil, "put identities")
}

// Delete removes the identity "d" or "d/m"; deleting a device also removes
// its modules, as IoT Hub does. Deleting what is not there is not an error.
func (c *Cache) Delete(ctx context.Context, id string) error {
	if _, _, err := SplitID(id); err != nil {
		return fmt.Errorf("delete identity: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var gone []string
	c.mu.RLock()
	for k := range c.ids {
		if k == id || (!strings.Contains(id, "/") && strings.HasPrefix(k, id+"/")) {
			gone = append(gone, k)
		}
	}
	c.mu.RUnlock()
	return c.apply(ctx, nil, gone, fmt.Sprintf("delete identity %q", id))
}

// Replace makes the cache exactly ids (the hub's full snapshot of this
// edge's scope): everything else is removed, atomically. Unchanged records
// are not rewritten.
func (c *Cache) Replace(ctx context.Context, ids []Identity) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	next, err := index(ids)
	if err != nil {
		return fmt.Errorf("replace identities: %w", err)
	}
	var gone []string
	c.mu.RLock()
	for k := range c.ids {
		if _, keep := next[k]; !keep {
			gone = append(gone, k)
		}
	}
	c.mu.RUnlock()
	return c.apply(ctx, next, gone, "replace identities")
}

type encoded struct {
	id Identity
	b  []byte
}

// index validates and encodes ids, last one winning per id.
func index(ids []Identity) (map[string]encoded, error) {
	out := make(map[string]encoded, len(ids))
	for _, id := range ids {
		if err := id.Validate(); err != nil {
			return nil, err
		}
		id = id.clone()
		b, err := id.encode()
		if err != nil {
			return nil, err
		}
		out[id.ID()] = encoded{id, b}
	}
	return out, nil
}

// apply commits sets and deletes in one transaction, publishes them to the
// read copy and tells the watchers. Callers hold wmu, so the read copy
// cannot change meanwhile and watchers learn of changes in commit order.
func (c *Cache) apply(ctx context.Context, set map[string]encoded, del []string, op string) error {
	var ops []kv.Op
	var changed []string
	for k, e := range set {
		if !bytes.Equal(c.enc[k], e.b) {
			ops = append(ops, kv.Set(recordKey(k), e.b))
			changed = append(changed, k)
		}
	}
	for _, k := range del {
		ops = append(ops, kv.Op{Key: recordKey(k), Delete: true, Freed: len(c.enc[k])})
		changed = append(changed, k)
	}
	if len(ops) == 0 {
		return nil
	}
	if err := c.db.Commit(ctx, ops...); err != nil {
		if errors.Is(err, kv.ErrTooLarge) {
			return fmt.Errorf("%s: %d changes do not fit one transaction: %w", op, len(ops), err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	c.mu.Lock()
	for k, e := range set {
		c.ids[k], c.enc[k] = e.id, e.b
	}
	for _, k := range del {
		delete(c.ids, k)
		delete(c.enc, k)
	}
	c.mu.Unlock()
	c.log.Debug("identity cache updated", "op", op, "written", len(ops)-len(del), "removed", len(del))
	c.notify(changed)
	return nil
}
