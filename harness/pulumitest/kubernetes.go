package pulumitest

import (
	"strings"
	"testing"
)

// KubernetesObjects are the recorded Kubernetes objects (types kubernetes:*), not providers.
func (m *Mocks) KubernetesObjects() []*Resource {
	var out []*Resource
	for _, r := range m.Resources() {
		if strings.HasPrefix(r.Type, "kubernetes:") {
			out = append(out, r)
		}
	}
	return out
}

// CheckKubernetesObjects reports every Kubernetes object that does not go through provider or is
// not DeletedWith cluster (SPEC §7 item 8), and returns how many objects it checked.
func CheckKubernetesObjects(t testing.TB, m *Mocks, provider, cluster *Resource) int {
	t.Helper()
	objs := m.KubernetesObjects()
	for _, r := range objs {
		if got := ProviderURN(r.Provider); got != provider.URN {
			t.Errorf("%s %s must use the explicit provider %s, uses %q", r.Type, r.Name, provider.Name, got)
		}
		if r.DeletedWith != cluster.URN {
			t.Errorf("%s %s must be DeletedWith the cluster %s, is %q", r.Type, r.Name, cluster.Name, r.DeletedWith)
		}
	}
	return len(objs)
}
