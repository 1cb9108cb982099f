package main

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/aks-edw/aks-edw/harness/localcluster"
)

// What the local cluster is made of, besides the binaries e2e/tools.sh builds (its own pins
// are at the top of that script). docs/cloud-notes.md says why these versions.
const (
	// kedaVersion is the KEDA release whose CRDs the API server serves: the one AKS's KEDA
	// add-on runs on Kubernetes 1.35 (add-on build 2.17.3-7; 1.33 and 1.34 run 2.17 too). The
	// components' Go types come from v2.21.0 (go.mod), whose stricter schema the unit tests
	// decode into; the e2e run proves the older schema AKS serves accepts the objects.
	kedaVersion = "v2.17.3"
	// karpenterVersion is the Karpenter core whose NodePool and NodeClaim CRDs (with their CEL
	// rules) the API server enforces: the one Azure/karpenter-provider-azure v1.7.x, AKS 1.35's
	// node autoprovisioning, builds on (its go.mod). The provider's own copy adds one rule on
	// karpenter.azure.com keys; its module is not served here.
	karpenterVersion = "v1.7.1"
	// kwokVersion matches tools.sh's KWOK_VERSION: its stage files drive the fake nodes and pods.
	kwokVersion = "v0.8.0"
	// kubeloginVersion matches tools.sh's KUBELOGIN_VERSION and the workflows' install.
	kubeloginVersion = "v0.2.19"
)

// crdFiles are the CustomResourceDefinitions of the kinds the workload creates, and every other
// CRD of that KEDA release: its operator watches them all and does not start without them.
var crdFiles = []localcluster.ModuleFile{
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/keda.sh_scaledobjects.yaml"},
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/keda.sh_scaledjobs.yaml"},
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/keda.sh_triggerauthentications.yaml"},
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/keda.sh_clustertriggerauthentications.yaml"},
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/eventing.keda.sh_cloudeventsources.yaml"},
	{Module: "github.com/kedacore/keda/v2", Version: kedaVersion, Path: "config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml"},
	{Module: "sigs.k8s.io/karpenter", Version: karpenterVersion, Path: "pkg/apis/crds/karpenter.sh_nodepools.yaml"},
	{Module: "sigs.k8s.io/karpenter", Version: karpenterVersion, Path: "pkg/apis/crds/karpenter.sh_nodeclaims.yaml"},
	{Module: "sigs.k8s.io/karpenter", Version: karpenterVersion, Path: "pkg/apis/crds/karpenter.sh_nodeoverlays.yaml"},
	// The kwok provider's node class, which the harness's one substitution in the NodePool
	// points nodeClassRef at (AKS's AKSNodeClass belongs to the Azure provider, not served here).
	{Module: "sigs.k8s.io/karpenter", Version: karpenterVersion, Path: "kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml"},
}

// kwokStages are kwok's "fast" lifecycles: nodes become Ready and keep a lease, pods become
// Ready once scheduled, deleted pods go away. Not its pod-complete stage, which completes a Job's
// pod at once: here a Job's pod runs a real consumer and completes when that process exits
// (localcluster.WriteJobPodStages, driven by the pod mirror).
// The nodes' initialize stage is loaded through localcluster.WriteNodeStages instead: Karpenter's
// nodes turn Ready only after e2eNodeStart.
var kwokStages = []localcluster.ModuleFile{
	{Module: "sigs.k8s.io/kwok", Version: kwokVersion, Path: "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"},
	{Module: "sigs.k8s.io/kwok", Version: kwokVersion, Path: "kustomize/stage/pod/fast/pod-ready.yaml"},
	{Module: "sigs.k8s.io/kwok", Version: kwokVersion, Path: "kustomize/stage/pod/fast/pod-delete.yaml"},
}

var nodeInitializeStage = localcluster.ModuleFile{Module: "sigs.k8s.io/kwok", Version: kwokVersion, Path: "kustomize/stage/node/fast/node-initialize.yaml"}

// systemNodes stand in for AKS's system pool: one node with AKS's CriticalAddonsOnly taint, where
// the KEDA operator runs. The app pool has no node until Karpenter launches one from the stack's
// NodePool.
func systemNodes() []localcluster.Node {
	return []localcluster.Node{{
		Name:   "aks-systempool-0",
		Labels: map[string]string{"kubernetes.azure.com/mode": "system", "topology.kubernetes.io/zone": "local-1"},
		Taints: []corev1.Taint{{Key: "CriticalAddonsOnly", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
	}}
}

// standInAppNode is a node the harness adds to the app pool for the last step, labelled and
// tainted as NAP's are: there the NodePool is the stack's own, whose AKSNodeClass Karpenter's kwok
// provider cannot launch from.
func standInAppNode(appPool string) localcluster.Node {
	return localcluster.Node{
		Name: "aks-" + appPool + "-standin",
		Labels: map[string]string{
			localcluster.KarpenterNodeLabel: appPool,
			"karpenter.sh/capacity-type":    "on-demand",
			"topology.kubernetes.io/zone":   "local-1",
		},
		Taints: []corev1.Taint{{Key: "deployment", Value: appPool, Effect: corev1.TaintEffectNoSchedule}},
	}
}

// instanceTypesFile gives Karpenter's kwok provider Azure's Dsv5 sizes (2-16 vCPU, 4 GiB per
// vCPU), each in two zones and both capacity types, with the label the stack's NodePool requires
// (karpenter.azure.com/sku-family=D) on every offering: the kwok provider adds offering labels
// to its well-known labels and to the nodes it creates. The prices are illustrative, not Azure's:
// proportional to the vCPUs, spot at a fifth of on-demand. Karpenter only compares them, to
// launch the cheapest size that fits.
const instanceTypesFile = "e2e/karpenter-instance-types.json"

// kwokNodeClass is the node class the NodePool's nodeClassRef is substituted with.
const kwokNodeClass = "default"

// kedaOptions run the operator as AKS's add-on does, in kube-system.
func kedaOptions() localcluster.KEDAOptions {
	return localcluster.KEDAOptions{Namespace: "kube-system"}
}
