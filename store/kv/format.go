package kv

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// formatVersion is the layout version of the records under all prefixes.
// Bump it when a change cannot be read by older code.
const formatVersion = 1

var formatKey = []byte{PrefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}

func (db *DB) checkFormat() error {
	var have uint64
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return Unmarshal(v, &have) })
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		v, _ := Marshal(uint64(formatVersion))
		return db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, v) })
	case err != nil:
		return fmt.Errorf("read store format: %w", err)
	case have > formatVersion:
		return fmt.Errorf("%w (format %d, this binary reads up to %d): upgrade outpost or use another --data directory", ErrFormat, have, formatVersion)
	}
	return nil
}
