package plan

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"sigs.k8s.io/yaml"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Manifest is one Kubernetes object as the program sends it to the Kubernetes provider.
type Manifest struct {
	// Type and Name are the Pulumi type token and logical name (the tree's line).
	Type, Name string
	// Object is the resource's inputs as plain values, secrets as [secret].
	Object map[string]any
}

// APIVersion is the object's apiVersion.
func (m Manifest) APIVersion() string { s, _ := m.Object["apiVersion"].(string); return s }

// Kind is the object's kind.
func (m Manifest) Kind() string { s, _ := m.Object["kind"].(string); return s }

// Namespace is metadata.namespace ("" for cluster-scoped objects).
func (m Manifest) Namespace() string { return m.meta("namespace") }

// ObjectName is metadata.name.
func (m Manifest) ObjectName() string { return m.meta("name") }

func (m Manifest) meta(key string) string {
	md, _ := m.Object["metadata"].(map[string]any)
	s, _ := md[key].(string)
	return s
}

// YAML renders the object with sorted keys.
func (m Manifest) YAML() ([]byte, error) {
	out, err := yaml.Marshal(m.Object)
	if err != nil {
		return nil, fmt.Errorf("rendering %s %s as YAML: %w", m.Type, m.Name, err)
	}
	return out, nil
}

// kindOrder ranks kinds for objects that do not depend on each other (Helm's install order,
// abridged); kinds not listed (custom resources such as KEDA's and Karpenter's) rank last.
var kindOrder = []string{
	"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodDisruptionBudget", "ServiceAccount",
	"Secret", "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
	"DaemonSet", "Pod", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job",
	"CronJob", "Ingress",
}

func kindRank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

// before orders two independent manifests: kind rank, then apiVersion, kind, namespace, name.
func before(a, b Manifest) bool {
	if ra, rb := kindRank(a.Kind()), kindRank(b.Kind()); ra != rb {
		return ra < rb
	}
	for _, pair := range [][2]string{
		{a.APIVersion(), b.APIVersion()}, {a.Kind(), b.Kind()},
		{a.Namespace(), b.Namespace()}, {a.ObjectName(), b.ObjectName()}, {a.Name, b.Name},
	} {
		if pair[0] != pair[1] {
			return pair[0] < pair[1]
		}
	}
	return false
}

// manifests collects every Kubernetes object (type "kubernetes:*") in apply order: an object
// comes after the objects it depends on (as Pulumi applies them), independent ones by kind
// (Namespace first) and then by apiVersion, kind, namespace and name. Each must name its
// apiVersion, kind and metadata.name.
func manifests(m *pulumitest.Mocks) ([]Manifest, error) {
	var ms []Manifest
	deps := map[string][]string{} // URN -> URNs of the Kubernetes objects it depends on
	urns := map[string]int{}
	for _, r := range m.Resources() {
		if !strings.HasPrefix(r.Type, "kubernetes:") {
			continue
		}
		obj, _ := plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
		for k := range obj {
			if strings.HasPrefix(k, "__") { // Pulumi-internal bookkeeping, not part of the object
				delete(obj, k)
			}
		}
		mf := Manifest{Type: r.Type, Name: r.Name, Object: obj}
		if mf.APIVersion() == "" || mf.Kind() == "" || mf.ObjectName() == "" {
			return nil, fmt.Errorf("%s %s: inputs lack apiVersion, kind or metadata.name, so it cannot be rendered as a manifest",
				r.Type, r.Name)
		}
		urns[r.URN] = len(ms)
		ms = append(ms, mf)
		deps[r.URN] = r.Dependencies
	}
	// Kahn's algorithm over the dependencies among the objects, taking the first ready object
	// by `before` each time.
	waiting := make([]int, len(ms))
	dependents := make([][]int, len(ms))
	for urn, i := range urns {
		for _, d := range deps[urn] {
			if j, ok := urns[d]; ok && j != i {
				waiting[i]++
				dependents[j] = append(dependents[j], i)
			}
		}
	}
	done := make([]bool, len(ms))
	var out []Manifest
	for len(out) < len(ms) {
		next := -1
		for i := range ms {
			if !done[i] && waiting[i] == 0 && (next < 0 || before(ms[i], ms[next])) {
				next = i
			}
		}
		if next < 0 { // a cycle cannot come from the engine; keep every object anyway
			for i := range ms {
				if !done[i] && (next < 0 || before(ms[i], ms[next])) {
					next = i
				}
			}
		}
		done[next] = true
		out = append(out, ms[next])
		for _, j := range dependents[next] {
			waiting[j]--
		}
	}
	return out, nil
}

// renderManifests writes the objects as one multi-document YAML stream, each document headed
// by a comment naming its resource in the tree.
func renderManifests(b *bytes.Buffer, ms []Manifest) error {
	for _, mf := range ms {
		y, err := mf.YAML()
		if err != nil {
			return err
		}
		b.WriteString("---\n# " + mf.Type + "  " + mf.Name + "\n")
		b.Write(y)
	}
	return nil
}
