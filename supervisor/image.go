package supervisor

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Fetcher downloads an image by digest from the hub's image store into dst;
// it may be nil for a standalone edge.
type Fetcher interface {
	FetchImage(ctx context.Context, digest string, dst io.Writer) (int64, error)
}

// ErrImage marks an image that cannot be used (missing, digest mismatch,
// bad archive); the deployment is refused and the modules keep running.
var ErrImage = errors.New("image")

var digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func checkImageRef(ref string) error {
	if strings.HasPrefix(ref, "sha256:") && !digestRe.MatchString(ref) {
		return fmt.Errorf("%q: a digest is sha256:<64 lowercase hex>", ref)
	}
	return nil
}

// maxArchiveBytes bounds what one archive may unpack to (a zip bomb must
// not fill the gateway's disk).
const maxArchiveBytes = 2 << 30

// images is the edge's content-addressed image cache under dir: blobs named
// sha256-<hex>, archives unpacked next to them in sha256-<hex>.d.
type images struct {
	dir   string
	fetch Fetcher
}

// resolve makes ref available in the cache and returns its digest. A path
// or a name on PATH is hashed and copied in (the module then runs from the
// cache, also when the file moves or the edge restarts offline); a digest is
// taken from the cache or, unless pull is false (imagePullPolicy never),
// fetched from the hub; verified either way.
func (im *images) resolve(ctx context.Context, ref string, pull bool) (string, error) {
	if digestRe.MatchString(ref) {
		if err := im.verify(ref); err == nil {
			return ref, nil
		}
		if !pull {
			return "", fmt.Errorf("%w %s is not in the edge's cache and imagePullPolicy is never", ErrImage, ref)
		}
		if im.fetch == nil {
			return "", fmt.Errorf("%w %s is not in the cache and this edge has no hub to fetch it from", ErrImage, ref)
		}
		tmp, err := os.CreateTemp(im.dir, "fetch-*")
		if err != nil {
			return "", err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		h := sha256.New()
		if _, err := im.fetch.FetchImage(ctx, ref, io.MultiWriter(tmp, h)); err != nil {
			return "", fmt.Errorf("fetch image %s from the hub: %w", ref, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != ref {
			return "", fmt.Errorf("%w %s: digest mismatch: the hub sent %s", ErrImage, ref, got)
		}
		return ref, im.keep(tmp, ref)
	}
	path := ref
	if !strings.Contains(ref, "/") {
		p, err := exec.LookPath(ref)
		if err != nil {
			return "", fmt.Errorf("%w %q: not found on PATH (give a path, or push it with outpost image push and name its digest)", ErrImage, ref)
		}
		path = p
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrImage, ref, errors.Unwrap(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w %q: not a regular file", ErrImage, ref)
	}
	digest, err := hashFile(f)
	if err != nil {
		return "", err
	}
	if im.verify(digest) == nil {
		return digest, nil
	}
	tmp, err := os.CreateTemp(im.dir, "copy-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := io.Copy(tmp, f); err != nil {
		return "", fmt.Errorf("copy image %q into the cache: %w", ref, err)
	}
	return digest, im.keep(tmp, digest)
}

func hashFile(f io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (im *images) blob(digest string) string {
	return filepath.Join(im.dir, strings.Replace(digest, ":", "-", 1))
}

// verify checks that the cached blob exists and still has its digest.
func (im *images) verify(digest string) error {
	f, err := os.Open(im.blob(digest))
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := hashFile(f)
	if err != nil {
		return err
	}
	if got != digest {
		return fmt.Errorf("%w %s: the cached copy is corrupt (%s)", ErrImage, digest, got)
	}
	return nil
}

// keep syncs tmp and renames it to the blob of digest, executable.
func (im *images) keep(tmp *os.File, digest string) error {
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	_ = os.RemoveAll(im.blob(digest) + ".d") // unpacked from an older copy
	return os.Rename(tmp.Name(), im.blob(digest))
}

// program returns the executable to run for a cached image and its
// arguments, as Docker reads Entrypoint and Cmd: an executable image is
// itself the program (it takes no Entrypoint); in an archive, unpacked on
// first use, Entrypoint[0] names the program, by default its only
// executable file. The arguments are Entrypoint[1:] then Cmd. archive says
// whether the image is an archive.
func (im *images) program(digest string, entry, cmd []string) (prog string, args []string, archive bool, err error) {
	blob := im.blob(digest)
	kind, err := archiveKind(blob)
	if err != nil {
		return "", nil, false, err
	}
	if kind == "" {
		if len(entry) > 0 {
			return "", nil, false, fmt.Errorf("%w %s: createOptions Entrypoint %q names a program inside an archive image, but this image is an executable, which is the program itself: give its arguments in Cmd", ErrImage, digest, entry[0])
		}
		return blob, cmd, false, nil
	}
	dir := blob + ".d"
	if err := im.unpacked(blob, kind, dir); err != nil {
		return "", nil, true, fmt.Errorf("%w %s: %v", ErrImage, digest, err)
	}
	if len(entry) > 0 {
		p := filepath.Join(dir, filepath.Clean("/"+entry[0]))
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return "", nil, true, fmt.Errorf("%w %s: the archive has no file %q (createOptions Entrypoint[0] names the program inside the archive)", ErrImage, digest, entry[0])
		}
		return p, append(slices.Clone(entry[1:]), cmd...), true, nil
	}
	found := executables(dir)
	if len(found) == 0 {
		return "", nil, true, fmt.Errorf("%w %s: the archive has no executable file (mode +x) to run", ErrImage, digest)
	}
	if len(found) > 1 {
		return "", nil, true, fmt.Errorf("%w %s: the archive has %d executable files (%s); name the program with createOptions {\"Entrypoint\":[\"path/in/archive\"]} (Cmd holds its arguments)",
			ErrImage, digest, len(found), strings.Join(relative(dir, found), ", "))
	}
	return found[0], cmd, true, nil
}

// unpacked makes sure the archive blob is unpacked and published in dir.
func (im *images) unpacked(blob, kind, dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return unpack(blob, kind, dir)
	}
	if st.Mode().Perm() != 0o755 {
		// Unpacked by a version that kept it to the edge's user.
		return publish(dir)
	}
	return nil
}

// executables lists the regular files under dir that anyone may execute.
func executables(dir string) []string {
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil && info.Mode()&0o111 != 0 {
				found = append(found, p)
			}
		}
		return nil
	})
	return found
}

// relative returns paths relative to dir, at most five of them.
func relative(dir string, paths []string) []string {
	var out []string
	for i, p := range paths {
		if i == 5 {
			out = append(out, "…")
			break
		}
		r, _ := filepath.Rel(dir, p)
		out = append(out, r)
	}
	return out
}

func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return "tgz", nil
	case len(head) >= 4 && string(head[:4]) == "PK\x03\x04":
		return "zip", nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "tar", nil
	}
	return "", nil
}

// unpack extracts an archive into dir (through a temporary directory, so a
// failed unpack leaves nothing half done). Entries may not escape dir.
func unpack(blob, kind, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "unpack-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var budget int64 = maxArchiveBytes
	if kind == "zip" {
		err = unzip(blob, tmp, &budget)
	} else {
		err = untar(blob, kind, tmp, &budget)
	}
	if err != nil {
		return err
	}
	if err := publish(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// publish makes an unpacked image readable and runnable by every module
// (they run under their own uids), writable by none: directories 0755,
// files 0644, or 0755 when the archive gave them any execute bit.
// Links and devices are never unpacked. dir itself is changed last: its
// mode is what program checks to know the whole tree was published, so a
// walk that fails half-way is done again at the next start.
func publish(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() || info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if !d.IsDir() && !info.Mode().IsRegular() {
			return nil
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		return err
	}
	return os.Chmod(dir, 0o755)
}

func untar(blob, kind, dir string, budget *int64) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if kind == "tgz" {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bad archive: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if _, err := safeJoin(dir, h.Name); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeEntry(dir, h.Name, os.FileMode(h.Mode)&0o755, tr, budget); err != nil {
				return err
			}
		default:
			// Links and devices are not unpacked: a link could point out of
			// the module's directory.
		}
	}
}

func unzip(blob, dir string, budget *int64) error {
	zr, err := zip.OpenReader(blob)
	if err != nil {
		return fmt.Errorf("bad archive: %w", err)
	}
	defer zr.Close()
	for _, zf := range zr.File {
		if !zf.Mode().IsRegular() {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("bad archive: %w", err)
		}
		err = writeEntry(dir, zf.Name, zf.Mode()&0o755, rc, budget)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func safeJoin(dir, name string) (string, error) {
	p := filepath.Join(dir, filepath.Clean("/"+name))
	if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("archive entry %q escapes the archive", name)
	}
	return p, nil
}

func writeEntry(dir, name string, mode os.FileMode, r io.Reader, budget *int64) error {
	p, err := safeJoin(dir, name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, *budget+1))
	*budget -= n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if *budget < 0 {
		return fmt.Errorf("archive unpacks to more than %d bytes", int64(maxArchiveBytes))
	}
	return err
}
