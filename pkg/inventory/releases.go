package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/release"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// ImportResult is what `bootsrv assets import` reports.
type ImportResult struct {
	Assets  []release.Asset `json:"assets" yaml:"assets"`
	Skipped []string        `json:"skipped,omitempty" yaml:"skipped,omitempty"`
}

// ImportReleases verifies every release file under src (a directory, or a
// tar of one) against the checksums its project published, lays the
// binaries out under the assets dir (assetsDir, or the server's own when
// empty) and records them in the catalog, all in one go: if anything
// fails, nothing is imported.
func (s *Inventory) ImportReleases(_ context.Context, src, assetsDir string) (ImportResult, error) {
	// A running server serves its own assets dir: binaries imported
	// elsewhere would be in the catalog and 404 for every node.
	if served := s.AssetsDir; served != "" && assetsDir != "" && filepath.Clean(assetsDir) != filepath.Clean(served) {
		return ImportResult{}, fault.Invalidf("this server serves %s: importing into %s would record binaries it cannot serve; drop --assets-dir (or stop the server and import into the dir you will serve)", served, assetsDir)
	}
	if assetsDir == "" {
		assetsDir = s.AssetsDir
	}
	if assetsDir == "" {
		return ImportResult{}, fault.Invalidf("no assets dir to import into: give --assets-dir")
	}
	// One import at a time: two would each move directories into place.
	s.importMu.Lock()
	defer s.importMu.Unlock()
	staged, err := release.Stage(src, assetsDir)
	if err != nil {
		// The refusal names every bad file and its fix: pass it on as is.
		return ImportResult{}, &fault.Error{Kind: fault.KindInvalid, Msg: err.Error()}
	}
	defer staged.Abort()
	err = s.st.Update(func(tx state.Tx) error {
		// The import replaces each COMPONENT/VERSION/ARCH dir whole. A
		// release whose import lacks a binary that dir holds is refused,
		// rather than the binary vanishing from under the nodes.
		units := map[string]map[string]bool{}
		for _, a := range staged.Assets {
			u := a.Component + "/" + a.Version + "/" + a.Arch + "/"
			if units[u] == nil {
				units[u] = map[string]bool{}
			}
			units[u][a.Name] = true
		}
		for u, names := range units {
			var old []release.Asset
			var dropped []string
			if err := tx.Releases(u, func(a release.Asset) error {
				old = append(old, a)
				if !names[a.Name] {
					dropped = append(dropped, a.Name)
				}
				return nil
			}); err != nil {
				return err
			}
			if len(dropped) > 0 {
				return fault.Invalidf("import %s: it holds only part of %s, which replaces the imported one whole and would remove %s: import the whole release", src, strings.TrimSuffix(u, "/"), strings.Join(dropped, ", "))
			}
			for _, a := range old {
				if err := tx.DeleteRelease(a); err != nil {
					return err
				}
			}
		}
		for _, a := range staged.Assets {
			if err := tx.PutRelease(a); err != nil {
				return err
			}
		}
		gen := sha256.New()
		for _, a := range staged.Assets {
			gen.Write([]byte(a.Path + "=" + a.SHA512 + ";"))
		}
		fmt.Fprint(gen, s.now().UnixNano())
		if err := tx.PutReleasesGeneration(hex.EncodeToString(gen.Sum(nil))); err != nil {
			return err
		}
		// The files move into place last, inside the transaction: a failed
		// move leaves the catalog as it was, and a catalog that fails to
		// commit after the move puts the files back (Undo below).
		if err := staged.Swap(); err != nil {
			return fmt.Errorf("import %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, staged.Undo(err)
	}
	// The replaced files go once the catalog no longer names them, outside
	// the write transaction.
	if err := staged.Finish(); err != nil {
		return ImportResult{}, err
	}
	return ImportResult{Assets: staged.Assets, Skipped: staged.Skipped}, nil
}

// Releases lists the imported release binaries, sorted by key.
func (s *Inventory) Releases(_ context.Context) ([]release.Asset, error) {
	var out []release.Asset
	err := s.st.View(func(tx state.Tx) error {
		return tx.Releases("", func(a release.Asset) error {
			out = append(out, a)
			return nil
		})
	})
	return out, err
}
