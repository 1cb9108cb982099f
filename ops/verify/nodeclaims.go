package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// NodeClaimGVR is Karpenter's NodeClaim (AKS node autoprovisioning's): one per node it launches.
var NodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}

// NodeClaimState is what verify reports of one of the app pool's NodeClaims.
type NodeClaimState struct {
	Name, NodeName, InstanceType, CapacityType string
	// Created is the NodeClaim's creation; Launched, Registered and Initialized are when its
	// conditions of those names turned True (zero while they are not): the VM created, its
	// kubelet registered the node, the node Ready with its resources (Karpenter v1's lifecycle).
	Created, Launched, Registered, Initialized time.Time
}

// nodeClaimLister is a Platform with Karpenter's NodeClaims (AKS with node autoprovisioning).
type nodeClaimLister interface {
	NodeClaims(ctx context.Context) ([]NodeClaimState, error)
}

func (k kubePlatform) NodeClaims(ctx context.Context) ([]NodeClaimState, error) {
	return ListNodeClaims(ctx, k.dyn, k.w.NodePoolName)
}

// ListNodeClaims lists the NodeClaims of a NodePool (karpenter.sh/nodepool=<pool>), oldest first.
func ListNodeClaims(ctx context.Context, dyn dynamic.Interface, pool string) ([]NodeClaimState, error) {
	list, err := dyn.Resource(NodeClaimGVR).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{NodePoolLabel: pool}.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the NodeClaims of NodePool %s: %w", pool, err)
	}
	var out []NodeClaimState
	for i := range list.Items {
		u := &list.Items[i]
		l := u.GetLabels()
		node, _, _ := unstructured.NestedString(u.Object, "status", "nodeName")
		out = append(out, NodeClaimState{
			Name: u.GetName(), NodeName: node,
			InstanceType: l["node.kubernetes.io/instance-type"], CapacityType: l["karpenter.sh/capacity-type"],
			Created:  u.GetCreationTimestamp().Time,
			Launched: trueSince(u, "Launched"), Registered: trueSince(u, "Registered"), Initialized: trueSince(u, "Initialized"),
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// trueSince is when the condition turned True, zero when it is not True.
func trueSince(u *unstructured.Unstructured, typ string) time.Time {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != typ || m["status"] != "True" {
			continue
		}
		s, _ := m["lastTransitionTime"].(string)
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// burstNodeClaims describes the NodeClaims created since the burst began (start), their times
// from it: what Karpenter launched for the burst, and how long each node took.
func burstNodeClaims(claims []NodeClaimState, start time.Time) string {
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "not yet"
		}
		return fmtSeconds(t.Sub(start.Truncate(time.Second)).Seconds())
	}
	var parts []string
	for _, c := range claims {
		if c.Created.Before(start.Truncate(time.Second)) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%s %s): created %s, launched %s, registered %s, initialized %s",
			c.Name, c.InstanceType, c.CapacityType, rel(c.Created), rel(c.Launched), rel(c.Registered), rel(c.Initialized)))
	}
	if len(parts) == 0 {
		return "no NodeClaim created since the burst (its pods fit the pool's nodes)"
	}
	return fmt.Sprintf("%d NodeClaims created since the burst (times from it): %s", len(parts), strings.Join(parts, "; "))
}
