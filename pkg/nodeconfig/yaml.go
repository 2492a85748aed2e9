package nodeconfig

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// toYAML writes v as YAML the way Kubernetes writes its own objects
// (sigs.k8s.io/yaml, what kubectl uses): through encoding/json first, so
// field names and omitempty follow the json tags, then block style with
// keys sorted, quoting every string a YAML 1.1 reader (the kubelet's)
// would read as something else. Rendered configs are kept (see
// pkg/assemble), so this is paid once per machine.
func toYAML(v any) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("write %T as YAML: %w", v, err)
	}
	return b, nil
}
