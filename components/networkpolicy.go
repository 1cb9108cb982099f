package components

import (
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Who the consumer's NetworkPolicy lets in and out (docs/cloud-notes.md has the sources):
// managed Prometheus scrapes PodMonitor targets from the ama-metrics ReplicaSet's pods in
// kube-system (label rsName=ama-metrics, not host-network); CoreDNS is k8s-app=kube-dns there.
const (
	metricsScraperLabelKey   = "rsName"
	metricsScraperLabelValue = "ama-metrics"
	dnsLabelKey              = "k8s-app"
	dnsLabelValue            = "kube-dns"
	systemNamespace          = "kube-system"
	// namespaceNameLabel is set by the API server on every namespace (Kubernetes 1.22+).
	namespaceNameLabel = "kubernetes.io/metadata.name"
)

// NetworkPolicyName is the consumer's NetworkPolicy's name for the given settings.
func NetworkPolicyName(s ConsumerSettings) string { return s.DeploymentName + "-network-policy" }

// networkPolicyArgs: the consumer's pods (both modes) accept connections only on the metrics
// port and only from the metrics add-on's scraper, and connect out only to the cluster DNS and
// to TCP 443 (Azure Storage, Entra ID's token endpoint). The kubelet's probes come from the
// node, which Cilium allows by default. Ports are numbers: AKS advises against named ports with
// Cilium.
func networkPolicyArgs(s ConsumerSettings, namespace pulumi.StringInput) *networkingv1.NetworkPolicyArgs {
	inSystem := &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{namespaceNameLabel: pulumi.String(systemNamespace)}}
	port := func(protocol string, n int) networkingv1.NetworkPolicyPortArgs {
		return networkingv1.NetworkPolicyPortArgs{Protocol: pulumi.String(protocol), Port: pulumi.Int(n)}
	}
	return &networkingv1.NetworkPolicyArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(NetworkPolicyName(s)),
			Namespace: namespace,
			Labels:    commonLabels(),
		},
		Spec: &networkingv1.NetworkPolicySpecArgs{
			PodSelector: &metav1.LabelSelectorArgs{MatchLabels: selectorLabels(s)},
			PolicyTypes: pulumi.StringArray{pulumi.String("Ingress"), pulumi.String("Egress")},
			Ingress: networkingv1.NetworkPolicyIngressRuleArray{
				networkingv1.NetworkPolicyIngressRuleArgs{
					From: networkingv1.NetworkPolicyPeerArray{
						networkingv1.NetworkPolicyPeerArgs{
							NamespaceSelector: inSystem,
							PodSelector:       &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{metricsScraperLabelKey: pulumi.String(metricsScraperLabelValue)}},
						},
					},
					Ports: networkingv1.NetworkPolicyPortArray{port("TCP", httpPort)},
				},
			},
			Egress: networkingv1.NetworkPolicyEgressRuleArray{
				networkingv1.NetworkPolicyEgressRuleArgs{
					To: networkingv1.NetworkPolicyPeerArray{
						networkingv1.NetworkPolicyPeerArgs{
							NamespaceSelector: inSystem,
							PodSelector:       &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{dnsLabelKey: pulumi.String(dnsLabelValue)}},
						},
					},
					Ports: networkingv1.NetworkPolicyPortArray{port("UDP", 53), port("TCP", 53)},
				},
				// No `to`: any address, TCP 443 only.
				networkingv1.NetworkPolicyEgressRuleArgs{
					Ports: networkingv1.NetworkPolicyPortArray{port("TCP", 443)},
				},
			},
		},
	}
}
