package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// The image records of the state machine. An image's bytes are files on
// every node (images.go); what the cluster agrees on is which images
// exist: a putImage applies once the bytes are on a majority of nodes
// (imagerepl.go), a deleteImage removes the record, and every node makes
// its files follow its records (the FSM tells the hub through onImage).
// A single hub records its images the same way: one code path.

var imagePrefix = []byte{kv.PrefixMeta, 'h', 'i'}

func imageKey(hexDigest string) []byte { return append(slices.Clip(imagePrefix), hexDigest...) }

// putImage records an image whose bytes a majority of nodes hold. An
// image recorded already keeps its first record.
type putImage struct {
	Digest  string `cbor:"1,keyasint"` // sha256:<hex>
	Size    int64  `cbor:"2,keyasint"`
	Created int64  `cbor:"3,keyasint"` // unix ms, decided by the proposer
}

// deleteImage removes an image's record; every node then removes its file.
type deleteImage struct {
	Digest string `cbor:"1,keyasint"`
}

func (c putImage) image() Image {
	return Image{Digest: c.Digest, Size: c.Size, Created: time.UnixMilli(c.Created).UTC()}
}

func (f *FSM) putImageLocked(ctx context.Context, c putImage) error {
	h, err := parseDigest(c.Digest)
	switch {
	case err != nil:
		return err
	case c.Size <= 0:
		return fmt.Errorf("%w: image %s: size %d", ErrInvalid, c.Digest, c.Size)
	}
	if _, ok, err := f.Image(c.Digest); err != nil || ok {
		return err
	}
	v, err := kv.Marshal(c)
	if err != nil {
		return err
	}
	if err := f.db.Commit(ctx, kv.Set(imageKey(h), v)); err != nil {
		return err
	}
	f.imageChanged(c.Digest, false)
	return nil
}

func (f *FSM) deleteImageLocked(ctx context.Context, c deleteImage) error {
	h, err := parseDigest(c.Digest)
	if err != nil {
		return err
	}
	if _, ok, err := f.Image(c.Digest); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: image %s is not in the hub's image store", ErrNotFound, c.Digest)
	}
	if err := f.db.Commit(ctx, kv.Del(imageKey(h))); err != nil {
		return err
	}
	f.imageChanged(c.Digest, true)
	return nil
}

// imageChanged tells the hub that a record came or went, so its files
// follow. It is a side effect outside the state, which stays deterministic.
func (f *FSM) imageChanged(digest string, deleted bool) {
	if f.onImage != nil {
		f.onImage(digest, deleted)
	}
}

// Image is the record of one image; ok is false when there is none.
func (f *FSM) Image(digest string) (img Image, ok bool, err error) {
	h, err := parseDigest(digest)
	if err != nil {
		return Image{}, false, err
	}
	err = f.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(imageKey(h))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		var c putImage
		if err := item.Value(func(v []byte) error { return kv.Unmarshal(v, &c) }); err != nil {
			return err
		}
		img, ok = c.image(), true
		return nil
	})
	return img, ok, err
}

// Images lists the recorded images, oldest first.
func (f *FSM) Images() ([]Image, error) {
	out := []Image{}
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: imagePrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c putImage
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &c) }); err != nil {
				return err
			}
			out = append(out, c.image())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	slices.SortFunc(out, func(a, b Image) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out, nil
}
