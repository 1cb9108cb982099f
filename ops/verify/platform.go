package verify

import (
	"context"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Platforms verify knows (the stack's consumerWorkload.platform; empty is PlatformAKS, what a
// stack deployed before the key existed exports).
const (
	PlatformAKS           = "aks"
	PlatformContainerApps = "containerapps"
)

// Platform is where the consumer runs, as verify reads it: the scaler's live settings, and one
// sample of the consumer (replicas or jobs, and on AKS its pods and nodes).
type Platform interface {
	// ReadScaler reads the live scaling settings, defaults applied.
	ReadScaler(ctx context.Context) (Scaler, error)
	// Observe takes one sample of the consumer.
	Observe(ctx context.Context) (Observation, error)
	// HasNodes says whether the platform has nodes of its own to watch (the nodes check).
	HasNodes() bool
}

// kubePlatform is the consumer on AKS: the ScaledObject or ScaledJob through the dynamic client,
// the Deployment or Jobs, pods and nodes through the typed one.
type kubePlatform struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	w    Workload
}

// KubernetesPlatform is the consumer on a Kubernetes cluster (AKS).
func KubernetesPlatform(kube kubernetes.Interface, dyn dynamic.Interface, w Workload) Platform {
	return kubePlatform{kube: kube, dyn: dyn, w: w}
}

func (k kubePlatform) ReadScaler(ctx context.Context) (Scaler, error) {
	return ReadScaler(ctx, k.dyn, k.w)
}

func (k kubePlatform) Observe(ctx context.Context) (Observation, error) {
	return Observe(ctx, k.kube, k.w)
}

func (k kubePlatform) HasNodes() bool { return true }
