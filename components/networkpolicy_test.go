package components

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// assertSelects checks that a label selector matches a set of pod labels.
func assertSelects(t *testing.T, sel metav1.LabelSelector, podLabels map[string]string, msg string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	require.NoError(t, err)
	assert.False(t, s.Empty(), "%s: an empty selector would select every pod in the namespace", msg)
	assert.True(t, s.Matches(labelSet(podLabels)), "%s: %s does not match %v", msg, s, podLabels)
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// Issue 17 item 4: in, only the metrics scraper on the metrics port; out, only DNS and 443.
func TestNetworkPolicyArgs(t *testing.T) {
	s := DefaultConsumerSettings()
	s.DeploymentName, s.AppLabel = "orders", "orders-reader"
	np := decodeStrict[networkingv1.NetworkPolicy](t, "network policy", renderArgs(t, "networking.k8s.io/v1", "NetworkPolicy", networkPolicyArgs(s, testInputs().Namespace)))
	assert.Equal(t, "orders-network-policy", np.Name)
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes,
		"both directions: a policy without Egress in policyTypes leaves egress open")
	for _, mode := range []string{ScaleModeScaledObject, ScaleModeScaledJob} {
		assertSelects(t, np.Spec.PodSelector, decodePodTemplate(t, s, mode).Labels, mode)
	}

	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(p *corev1.Protocol, n int) networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(int32(n))
		return networkingv1.NetworkPolicyPort{Protocol: p, Port: &v}
	}
	kubeSystem := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}
	assert.Equal(t, []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: kubeSystem,
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"rsName": "ama-metrics"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{port(&tcp, 8080)},
	}}, np.Spec.Ingress, "in: the metrics add-on's scraper, on the metrics port only")
	assert.Equal(t, []networkingv1.NetworkPolicyEgressRule{
		{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: kubeSystem,
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{port(&udp, 53), port(&tcp, 53)},
		},
		{Ports: []networkingv1.NetworkPolicyPort{port(&tcp, 443)}},
	}, np.Spec.Egress, "out: cluster DNS, and TCP 443 anywhere (storage, Entra ID)")

	// The metrics port the policy opens is the one the consumer serves /metrics on.
	pod := decodePodTemplate(t, s, ScaleModeScaledObject)
	assert.Equal(t, int32(8080), pod.Spec.Containers[0].Ports[0].ContainerPort)
}
