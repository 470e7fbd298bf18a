package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/sync/protocol"
)

var imageCmd = hubCommand("image",
	"push, list or delete module images (executables, .tar, .tar.gz, .zip) in the hub's image store",
	"push FILE | list | delete DIGEST",
	nil,
	runImage,
)

func runImage(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"push": 1, "list": 0, "delete": 1})
	if err != nil {
		return err
	}
	switch sub {
	case "push":
		return imagePush(ctx, h, args[0])
	case "list":
		c, err := h.client()
		if err != nil {
			return err
		}
		raw, err := c.Images(ctx)
		if err != nil {
			return err
		}
		return writeImages(h, raw, true)
	default:
		if _, err := protocol.DigestHex(args[0]); err != nil {
			return cli.Usagef("digest %q: want sha256:<64 lowercase hex>, as `outpost image list` prints it", short(args[0]))
		}
		c, err := h.client()
		if err != nil {
			return err
		}
		return c.DeleteImage(ctx, args[0])
	}
}

// imagePush uploads file and checks that the hub stored it under the digest
// of what was read.
func imagePush(ctx context.Context, h *hubCall, file string) error {
	f, size, err := openImage(file)
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := h.client()
	if err != nil {
		return err
	}
	sum := sha256.New()
	p := newProgress(h.env.Stderr, "push "+file, size)
	raw, created, err := c.PushImage(ctx, p.reader(io.TeeReader(f, sum)), size)
	p.end(err)
	if err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	var img hubclient.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return fmt.Errorf("push %s: the hub's answer: %w", file, err)
	}
	if want := "sha256:" + hex.EncodeToString(sum.Sum(nil)); img.Digest != want || img.Size != size {
		return fmt.Errorf("push %s: the hub stored %s (%d bytes), but the file is %s (%d bytes); was it changed while it was sent?", file, img.Digest, img.Size, want, size)
	}
	if !created {
		fmt.Fprintf(h.env.Stderr, "note: the hub had %s already\n", img.Digest)
	}
	return writeImages(h, raw, false)
}

// openImage opens file for pushing: it must be a non-empty regular file.
// It is checked before it is opened: opening a FIFO would block.
func openImage(file string) (*os.File, int64, error) {
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("image file %s does not exist", file)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("image file: %w", err)
	}
	if err := checkImageFile(file, fi); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, fmt.Errorf("image file: %w", err)
	}
	if fi, err = f.Stat(); err == nil {
		err = checkImageFile(file, fi) // it may have been replaced meanwhile
	}
	if err == nil {
		err = checkImageFormat(file, f, fi.Mode())
	}
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// checkImageFormat refuses what the edge could neither run nor unpack,
// before sending it (the hub refuses it too): f must start as an ELF
// executable, a #! script with exec bits, or an archive. It leaves f at its
// start.
func checkImageFormat(file string, f *os.File, mode fs.FileMode) error {
	head := make([]byte, protocol.ImageHead)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("image file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("image file: %w", err)
	}
	switch protocol.ImageFormat(head[:n]) {
	case "":
		return fmt.Errorf("image file %s is neither an executable nor an archive (%s)", file, protocol.ImageFormatHint)
	case protocol.ImageScript:
		if mode&0o111 == 0 {
			return fmt.Errorf("image file %s is a script without exec bits; chmod +x %s if it is the module's program", file, file)
		}
	}
	return nil
}

func checkImageFile(file string, fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		return fmt.Errorf("image file %s is a directory; push an executable or an archive of it (tar czf app.tar.gz -C %s .)", file, file)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("image file %s is not a regular file (%s); push an executable or an archive", file, fi.Mode().Type())
	case fi.Size() == 0:
		return fmt.Errorf("image file %s is empty; a module image is an executable or an archive (.tar, .tar.gz, .zip)", file)
	}
	return nil
}

// writeImages prints the hub's answer (an array when list is set, else one
// image) as received, or with -o table one row each.
func writeImages(h *hubCall, raw json.RawMessage, list bool) error {
	if !h.table {
		return h.writeJSON(raw)
	}
	var imgs []hubclient.Image
	if !list {
		raw = append(append(json.RawMessage{'['}, raw...), ']')
	}
	if err := json.Unmarshal(raw, &imgs); err != nil {
		return fmt.Errorf("the hub's image list: %w", err)
	}
	w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DIGEST\tSIZE\tCREATED")
	for _, img := range imgs {
		fmt.Fprintf(w, "%s\t%d\t%s\n", img.Digest, img.Size, img.Created)
	}
	return w.Flush()
}
