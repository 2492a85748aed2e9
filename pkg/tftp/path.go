package tftp

import (
	"io/fs"
	"strings"
)

// CleanName decides whether a requested file name may be looked up at all,
// before any file system is touched. It accepts only relative, slash-separated
// names made of printable characters with no "..", "." or empty element, which
// is exactly what fs.FS and os.Root take. It refuses, with an access violation:
// absolute paths (firmware is handed relative names by bootsrv's DHCP, so a
// leading "/" is someone probing), "..", backslashes (a Windows-style path
// means a request that was not meant for us, or a traversal attempt through a
// server that maps them to "/"), and NUL or control characters.
//
// The jail itself is os.Root (which also refuses symlinks that lead out of the
// assets dir); this check keeps the answer clear and the same for the embedded
// files and the assets dir.
func CleanName(name string) (string, *Error) {
	switch {
	case name == "":
		return "", refuse(CodeAccessViolation, "empty file name")
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return "", refuse(CodeAccessViolation, "control character in file name")
	case strings.Contains(name, `\`):
		return "", refuse(CodeAccessViolation, "backslash in file name")
	case strings.HasPrefix(name, "/"):
		return "", refuse(CodeAccessViolation, "absolute path")
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", refuse(CodeAccessViolation, "'..' in path")
		}
	}
	if !fs.ValidPath(name) {
		return "", refuse(CodeAccessViolation, "not a clean relative path")
	}
	return name, nil
}
