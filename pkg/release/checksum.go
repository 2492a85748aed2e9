package release

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Digest lengths in hex digits; the length is how a listing that may hold
// either (checksums.txt) tells them apart.
const (
	sha256Hex = 64
	sha512Hex = 128
)

// listings are the per-directory checksum files projects publish, with
// the digest length their name promises (0: either).
var listings = map[string]int{
	"SHA256SUMS":    sha256Hex,
	"SHA512SUMS":    sha512Hex,
	"sha256sum.txt": sha256Hex,
	"sha512sum.txt": sha512Hex,
	"checksums.txt": 0,
}

// checksumFile says whether name (a base name) is a checksum file: one
// beside the file it vouches for (<file>.sha256, <file>.sha512) or a
// listing for its directory, and the digest length its name promises.
func checksumFile(name string) (want int, beside, ok bool) {
	if w, ok := listings[name]; ok {
		return w, false, true
	}
	for ext, w := range map[string]int{".sha256": sha256Hex, ".sha512": sha512Hex} {
		if strings.HasSuffix(name, ext) && len(name) > len(ext) {
			return w, true, true
		}
	}
	return 0, false, false
}

// IsChecksumFile reports whether name (a base name) is a checksum file
// Stage reads rather than an asset.
func IsChecksumFile(name string) bool {
	_, _, ok := checksumFile(name)
	return ok
}

// algo names a digest by its length.
func algo(hexLen int) string {
	switch hexLen {
	case sha256Hex:
		return "sha256"
	case sha512Hex:
		return "sha512"
	}
	return fmt.Sprintf("%d-digit", hexLen)
}

// tagRE is the BSD style `sha256sum --tag` and some projects write.
var tagRE = regexp.MustCompile(`^(SHA256|SHA512) \((.+)\) = ([0-9A-Fa-f]+)$`)

// ParseChecksums reads the checksum file called name (its base name, which
// says its format and the digest length it may hold) and returns the hex
// digest, lower-cased, of each file it names, keyed by the name as written
// (cleaned: "./" and sha256sum's binary-mode '*' dropped).
//
// Accepted: a bare digest in <file>.sha256/.sha512 (as dl.k8s.io has them,
// keyed by <file>), and in any of them `HEX  NAME`, `HEX *NAME` (as
// sha256sum prints) or `SHA256 (NAME) = HEX` lines; blank lines and #
// comments are ignored. A digest whose length is not what the file's name
// says, or a name listed twice with different digests, is an error: such a
// file cannot be trusted to vouch for anything.
func ParseChecksums(name string, data []byte) (map[string]string, error) {
	want, beside, ok := checksumFile(name)
	if !ok {
		return nil, fmt.Errorf("%s is not a checksum file: expected <file>.sha256, <file>.sha512, SHA256SUMS, SHA512SUMS, sha256sum.txt, sha512sum.txt or checksums.txt", name)
	}
	sums := map[string]string{}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, " \t\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		var digest, file, tag string
		if m := tagRE.FindStringSubmatch(line); m != nil {
			tag, file, digest = strings.ToLower(m[1]), m[2], m[3]
		} else if sp := strings.IndexAny(line, " \t"); sp >= 0 {
			digest = line[:sp]
			file = strings.TrimLeft(line[sp:], " \t")
			file = strings.TrimPrefix(file, "*")
		} else {
			digest = line
			if !beside {
				return nil, fmt.Errorf("%s line %d: a digest without a file name (a listing has HEX  NAME lines)", name, i+1)
			}
			file = name[:len(name)-len(".sha256")] // .sha512 is as long
		}
		if !isHex(digest) {
			return nil, fmt.Errorf("%s line %d: %q is not a hex digest", name, i+1, short(digest))
		}
		if n := len(digest); n != sha256Hex && n != sha512Hex {
			return nil, fmt.Errorf("%s line %d: a %d-digit digest is neither sha256 (64) nor sha512 (128)", name, i+1, n)
		}
		if tag != "" && algo(len(digest)) != tag {
			return nil, fmt.Errorf("%s line %d: a %s digest tagged %s", name, i+1, algo(len(digest)), strings.ToUpper(tag))
		}
		if want != 0 && len(digest) != want {
			return nil, fmt.Errorf("%s line %d: a %s digest (%d hex digits) where its name says %s (%d)", name, i+1, algo(len(digest)), len(digest), algo(want), want)
		}
		if file == "" {
			return nil, fmt.Errorf("%s line %d: a digest without a file name", name, i+1)
		}
		if !strings.HasPrefix(file, "/") {
			file = path.Clean(file)
		}
		digest = strings.ToLower(digest)
		if old, dup := sums[file]; dup && old != digest {
			if len(old) != len(digest) {
				return nil, fmt.Errorf("%s lists %s with both a sha256 and a sha512 digest; bootsrv reads one digest per file from a listing", name, file)
			}
			return nil, fmt.Errorf("%s lists %s twice with different digests", name, file)
		}
		sums[file] = digest
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("%s names no file (empty or truncated)", name)
	}
	return sums, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// short keeps an error message about a garbled line readable.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
