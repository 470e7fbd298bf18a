package hub

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// A snapshot is the FSM's whole kv state, streamed key by key from a
// read transaction (never held in memory): the magic line, then for each
// key uvarint(len key) key uvarint(len value) value, then a uvarint 0 and
// the number of keys as uvarint. Restore checks the count, so a cut
// stream is an error, not a smaller state.
const snapshotMagic = "outpost-hub-snapshot 1\n"

// maxSnapshotKey and maxSnapshotValue bound what Restore allocates for
// one record.
const (
	maxSnapshotKey   = 64 << 10
	maxSnapshotValue = 1 << 30
)

// Snapshot writes the FSM's state to w. It reads one consistent view; the
// caller may keep applying commands meanwhile (they are not in it).
func (f *FSM) Snapshot(w io.Writer) error {
	return f.db.View(func(txn *badger.Txn) error { return writeSnapshot(w, txn) })
}

// writeSnapshot streams what txn sees.
func writeSnapshot(w io.Writer, txn *badger.Txn) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("write hub snapshot: %w", err)
	}
	var n uint64
	err := func() error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := writeRecord(bw, item.Key()); err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error { return writeRecord(bw, v) }); err != nil {
				return err
			}
			n++
		}
		return nil
	}()
	if err == nil {
		err = writeUvarint(bw, 0)
	}
	if err == nil {
		err = writeUvarint(bw, n)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("write hub snapshot: %w", err)
	}
	return nil
}

func writeUvarint(w *bufio.Writer, v uint64) error {
	_, err := w.Write(binary.AppendUvarint(nil, v))
	return err
}

func writeRecord(w *bufio.Writer, b []byte) error {
	if err := writeUvarint(w, uint64(len(b))); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// Restore replaces the FSM's state with a snapshot: it drops every key,
// loads the snapshot in bounded batches and reopens the stores. The
// caller applies nothing meanwhile; readers on other goroutines load the
// stores from f.readers, which it replaces once they are open (one taken
// before answers from closed stores).
func (f *FSM) Restore(r io.Reader) error {
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore hub snapshot: close the stores: %w", err)
	}
	if err := f.db.Badger().DropAll(); err != nil {
		return fmt.Errorf("restore hub snapshot: drop the old state: %w", err)
	}
	loadErr := f.load(bufio.NewReaderSize(r, 256<<10))
	// The stores reopen over whatever is there, so the FSM stays usable;
	// after a failed load that is a partial state the caller must replace.
	if err := f.openStores(context.Background()); err != nil {
		return errors.Join(loadErr, fmt.Errorf("restore hub snapshot: reopen the stores: %w", err))
	}
	if loadErr != nil {
		return fmt.Errorf("restore hub snapshot (the state is partial; restore another): %w", loadErr)
	}
	return nil
}

func (f *FSM) load(r *bufio.Reader) error {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("not a hub snapshot (want %q at the start)", snapshotMagic[:len(snapshotMagic)-1])
	}
	wb := f.db.Badger().NewWriteBatch()
	defer wb.Cancel()
	var n uint64
	for {
		k, err := readRecord(r, maxSnapshotKey)
		if err != nil {
			return fmt.Errorf("key %d: %w", n+1, err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecord(r, maxSnapshotValue)
		if err != nil {
			return fmt.Errorf("value of key %d: %w", n+1, err)
		}
		if err := wb.Set(k, v); err != nil {
			return err
		}
		n++
	}
	want, err := binary.ReadUvarint(r)
	if err != nil || want != n {
		return fmt.Errorf("snapshot holds %d keys, its trailer says %d (%v): cut or corrupt", n, want, err)
	}
	return wb.Flush()
}

func readRecord(r *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("%w (cut snapshot?)", err)
	}
	if n > limit {
		return nil, fmt.Errorf("record of %d bytes, more than the %d a snapshot holds", n, limit)
	}
	// Read rather than allocate n up front: a few corrupt bytes must not
	// cost the 1 GiB a length may claim.
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("%w (cut snapshot?)", err)
	}
	if uint64(len(b)) != n {
		return nil, fmt.Errorf("%w (cut snapshot?)", io.ErrUnexpectedEOF)
	}
	return b, nil
}

// Restore replaces the hub's state with a snapshot (see FSM.Restore) and
// wakes the edges' pulls. Nothing else may use the hub meanwhile: a later
// step stops the servers around it.
func (h *Hub) Restore(r io.Reader) error {
	h.mu.Lock()
	err := h.fsm.Restore(r)
	h.mu.Unlock()
	h.wake()
	return err
}

// Snapshot writes the hub's state (see FSM.Snapshot).
func (h *Hub) Snapshot(w io.Writer) error { return h.fsm.Snapshot(w) }
