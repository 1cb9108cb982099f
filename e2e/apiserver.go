package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/aks-edw/aks-edw/components"
)

// kube reads what the API server holds: the steps' evidence.
type kube struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func newKube(cfg *rest.Config) (*kube, error) {
	// The harness polls several things at once (the node watch every 250 ms among them):
	// client-go's default of 5 requests/s would delay the samples.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{cs: cs, dyn: dyn}, nil
}

// object is one object the workload owns, as the API server names it.
type object struct {
	gvr             schema.GroupVersionResource
	kind, namespace string
	name            string
}

func (o object) String() string {
	if o.namespace == "" {
		return o.kind + " " + o.name
	}
	return o.kind + " " + o.namespace + "/" + o.name
}

var (
	gvrNamespace      = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrServiceAccount = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	gvrDeployment     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrPDB            = schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}
	gvrNetworkPolicy  = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	gvrScaledObject   = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	gvrScaledJob      = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
	gvrTriggerAuth    = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "triggerauthentications"}
	gvrNodePool       = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	gvrConfigMap      = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

// workloadObjects are every object the workload creates in a scale mode.
func workloadObjects(s components.ConsumerSettings, mode string) []object {
	ns := s.Namespace
	objs := []object{
		{gvrNamespace, "Namespace", "", ns},
		{gvrServiceAccount, "ServiceAccount", ns, s.ServiceAccountName},
		{gvrTriggerAuth, "TriggerAuthentication", ns, s.TriggerAuthenticationName},
		{gvrNodePool, "NodePool", "", s.NodePoolName},
		{gvrNetworkPolicy, "NetworkPolicy", ns, components.NetworkPolicyName(s)},
	}
	if mode == components.ScaleModeScaledJob {
		return append(objs, object{gvrScaledJob, "ScaledJob", ns, s.ScaledJobName})
	}
	return append(objs,
		object{gvrDeployment, "Deployment", ns, s.DeploymentName},
		object{gvrPDB, "PodDisruptionBudget", ns, s.DeploymentName + "-pdb"},
		object{gvrScaledObject, "ScaledObject", ns, s.ScaledObjectName},
	)
}

// get reads one object; nil when it does not exist (or is being deleted).
func (k *kube) get(ctx context.Context, o object) (*unstructured.Unstructured, error) {
	var ri dynamic.ResourceInterface = k.dyn.Resource(o.gvr)
	if o.namespace != "" {
		ri = k.dyn.Resource(o.gvr).Namespace(o.namespace)
	}
	u, err := ri.Get(ctx, o.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", o, err)
	}
	return u, nil
}

// present splits objs into those the API server has and those it has not (an object being
// deleted counts as present).
func (k *kube) present(ctx context.Context, objs []object) (have, missing []string, err error) {
	for _, o := range objs {
		u, err := k.get(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		if u == nil {
			missing = append(missing, o.String())
		} else {
			have = append(have, o.String())
		}
	}
	return have, missing, nil
}

// waitGone polls until none of objs exists (namespaces finalize asynchronously).
func (k *kube) waitGone(ctx context.Context, objs []object, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		have, _, err := k.present(ctx, objs)
		if err != nil || len(have) == 0 || time.Now().After(deadline) {
			return have, err
		}
		select {
		case <-ctx.Done():
			return have, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// rollout describes a Deployment's current rollout: ready pods, their image and their nodes.
type rollout struct {
	replicas, updated, available int32
	image                        string
	requests                     corev1.ResourceList
	nodes                        []string
	generationObserved           bool
}

func (r rollout) complete() bool {
	return r.generationObserved && r.replicas > 0 && r.updated == r.replicas && r.available == r.replicas
}

func (r rollout) String() string {
	return fmt.Sprintf("%d/%d available, image %s, on %s", r.available, r.replicas, r.image, strings.Join(r.nodes, ","))
}

func (k *kube) rollout(ctx context.Context, ns, name string) (rollout, error) {
	d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return rollout{}, fmt.Errorf("reading Deployment %s/%s: %w", ns, name, err)
	}
	r := rollout{
		updated: d.Status.UpdatedReplicas, available: d.Status.AvailableReplicas,
		generationObserved: d.Status.ObservedGeneration >= d.Generation,
	}
	if d.Spec.Replicas != nil {
		r.replicas = *d.Spec.Replicas
	}
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		r.image, r.requests = cs[0].Image, cs[0].Resources.Requests
	}
	nodes, err := k.podNodes(ctx, ns, d)
	if err != nil {
		return rollout{}, err
	}
	r.nodes = nodes
	return r, nil
}

// podNodes are the nodes the Deployment's running, ready pods of the current template are on.
func (k *kube) podNodes(ctx context.Context, ns string, d *appsv1.Deployment) ([]string, error) {
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if len(p.Spec.Containers) == 0 || len(d.Spec.Template.Spec.Containers) == 0 || p.Spec.Containers[0].Image != d.Spec.Template.Spec.Containers[0].Image {
			continue
		}
		nodes = append(nodes, p.Spec.NodeName)
	}
	sort.Strings(nodes)
	return nodes, nil
}

// nestedString reads a string field from an object.
func nestedString(u *unstructured.Unstructured, fields ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, fields...)
	return s
}

// nestedInt reads an integer field from an object.
func nestedInt(u *unstructured.Unstructured, fields ...string) int64 {
	n, _, _ := unstructured.NestedInt64(u.Object, fields...)
	return n
}

// triggerMetadata reads the first trigger's metadata of a ScaledObject or ScaledJob.
func triggerMetadata(u *unstructured.Unstructured) map[string]string {
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	if len(triggers) == 0 {
		return nil
	}
	t, _ := triggers[0].(map[string]any)
	md, _ := t["metadata"].(map[string]any)
	out := map[string]string{}
	for k, v := range md {
		out[k] = fmt.Sprint(v)
	}
	return out
}
