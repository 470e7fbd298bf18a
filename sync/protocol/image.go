package protocol

import "bytes"

// ImageHead is how many leading bytes of a module image ImageFormat looks at.
const ImageHead = 512

// Module image formats, as ImageFormat names them: what the edge's
// supervisor can run (an executable) or unpack (an archive).
const (
	ImageELF    = "ELF executable"
	ImageScript = "script (#!)"
	ImageGzip   = "tar.gz archive"
	ImageZip    = "zip archive"
	ImageTar    = "tar archive"
)

// ImageFormat names the format of a module image from its first bytes
// (up to ImageHead of them), or returns "" for bytes the edge can neither
// run nor unpack. The hub refuses those when they are pushed; the edge's
// supervisor tells archives apart by the same magic numbers.
func ImageFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return ImageELF
	case bytes.HasPrefix(head, []byte("#!")):
		return ImageScript
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return ImageGzip
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return ImageZip
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return ImageTar
	}
	return ""
}

// ImageFormatHint says what a module image may be, for errors about one
// that is none of those.
const ImageFormatHint = "a module image is an ELF executable, a #! script, or a .tar, .tar.gz or .zip archive"
