package nodeconfig

import "fmt"

// The subset of core/v1 Pod that static pods here use; json names follow
// k8s.io/api/core/v1 so the manifests decode strictly as a Pod.
type pod struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   podMetadata `json:"metadata"`
	Spec       podSpec     `json:"spec"`
}

type podMetadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

type podSpec struct {
	HostNetwork       bool         `json:"hostNetwork"`
	PriorityClassName string       `json:"priorityClassName"`
	SecurityContext   *podSecurity `json:"securityContext,omitempty"`
	Tolerations       []toleration `json:"tolerations,omitempty"`
	Containers        []container  `json:"containers"`
	Volumes           []volume     `json:"volumes"`
}

type podSecurity struct {
	SeccompProfile struct {
		Type string `json:"type"`
	} `json:"seccompProfile"`
}

type toleration struct {
	Operator string `json:"operator"`
}

type container struct {
	Name            string        `json:"name"`
	Image           string        `json:"image"`
	ImagePullPolicy string        `json:"imagePullPolicy"`
	Command         []string      `json:"command"`
	Resources       *resources    `json:"resources,omitempty"`
	LivenessProbe   *probe        `json:"livenessProbe,omitempty"`
	SecurityContext *containerSec `json:"securityContext,omitempty"`
	VolumeMounts    []volumeMount `json:"volumeMounts"`
}

type resources struct {
	Requests map[string]string `json:"requests"`
}

type probe struct {
	HTTPGet struct {
		Host   string `json:"host"`
		Path   string `json:"path"`
		Port   int    `json:"port"`
		Scheme string `json:"scheme"`
	} `json:"httpGet"`
	InitialDelaySeconds int `json:"initialDelaySeconds"`
	TimeoutSeconds      int `json:"timeoutSeconds"`
	PeriodSeconds       int `json:"periodSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
}

type containerSec struct {
	Privileged bool `json:"privileged"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type volume struct {
	Name     string `json:"name"`
	HostPath struct {
		Path string `json:"path"`
		Type string `json:"type"`
	} `json:"hostPath"`
}

// hostMount is one hostPath volume, mounted at the same path inside.
type hostMount struct {
	name, path, typ string
	readOnly        bool
}

// staticPod builds a kube-system host-network pod running one container.
// Paths are mounted at the same place inside, so the flags and the
// kubeconfigs name files as they lie on the host.
func staticPod(c checked, name, image string, cmd []string, mounts []hostMount, p *probe, cpu string, privileged bool) ([]byte, error) {
	ctr := container{
		Name:            name,
		Image:           c.imageRepo + "/" + image + ":" + c.version,
		ImagePullPolicy: "IfNotPresent",
		Command:         cmd,
		LivenessProbe:   p,
	}
	if cpu != "" {
		ctr.Resources = &resources{Requests: map[string]string{"cpu": cpu}}
	}
	po := pod{
		APIVersion: "v1",
		Kind:       "Pod",
		Metadata: podMetadata{
			Name:      name,
			Namespace: "kube-system",
			Labels:    map[string]string{"component": name, "tier": "node"},
		},
		Spec: podSpec{
			HostNetwork: true,
			// Critical so that the kubelet never evicts its own control
			// plane under pressure.
			PriorityClassName: "system-node-critical",
		},
	}
	if privileged {
		ctr.SecurityContext = &containerSec{Privileged: true}
		// kube-proxy runs on every node, tainted ones included.
		po.Spec.Tolerations = []toleration{{Operator: "Exists"}}
	} else {
		po.Metadata.Labels["tier"] = "control-plane"
		po.Spec.SecurityContext = &podSecurity{}
		po.Spec.SecurityContext.SeccompProfile.Type = "RuntimeDefault"
	}
	for _, m := range mounts {
		ctr.VolumeMounts = append(ctr.VolumeMounts, volumeMount{Name: m.name, MountPath: m.path, ReadOnly: m.readOnly})
		var v volume
		v.Name = m.name
		v.HostPath.Path, v.HostPath.Type = m.path, m.typ
		po.Spec.Volumes = append(po.Spec.Volumes, v)
	}
	po.Spec.Containers = []container{ctr}
	b, err := toYAML(po)
	if err != nil {
		return nil, fmt.Errorf("static pod %s: %w", name, err)
	}
	return b, nil
}

func httpsProbe(host string, port int, path string) *probe {
	p := &probe{InitialDelaySeconds: 10, TimeoutSeconds: 15, PeriodSeconds: 10, FailureThreshold: 8}
	p.HTTPGet.Host, p.HTTPGet.Port, p.HTTPGet.Path, p.HTTPGet.Scheme = host, port, path, "HTTPS"
	return p
}
