package profiles

import (
	"github.com/bootsrv/bootsrv/pkg/render"
	"github.com/bootsrv/bootsrv/pkg/store"
)

// nodeContent is what a machine's role adds to its Ignition: for master
// and worker, everything that makes it a Kubernetes node.
func (s *Service) nodeContent(m Machine, p Profile, c Cluster) (render.Config, error) {
	return render.Config{}, nil
}

// dropCerts forgets a machine's issued certificates, so the next render
// issues new ones.
func dropCerts(tx store.Tx, mac string) error {
	var keys [][]byte
	if err := tx.Scan("certs", []byte(mac+"\x00"), func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete("certs", k); err != nil {
			return err
		}
	}
	return nil
}
