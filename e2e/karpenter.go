package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/localcluster"
	"github.com/aks-edw/aks-edw/ops/verify"
)

const (
	// defaultNodeStart is how long a node Karpenter launches takes to turn Ready here (-node-start,
	// E2E_NODE_START): a few seconds, enough that pods really wait Pending. On AKS a new node
	// takes 53 s at P50 and 79 s at P99 (docs/cloud-notes.md).
	defaultNodeStart = 5 * time.Second
	// e2eConsolidateAfter is the stack's nodePoolConsolidateAfter here (default 1m), so that an
	// emptied node goes within the run.
	e2eConsolidateAfter = "5s"
)

var (
	gvrNodeClaim     = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
	gvrKWOKNodeClass = schema.GroupVersionResource{Group: "karpenter.kwok.sh", Version: "v1alpha1", Resource: "kwoknodeclasses"}
)

// kwokNodeClassRef is what the harness substitutes for the NodePool's nodeClassRef (AKS's
// karpenter.azure.com AKSNodeClass, which only the Azure provider serves).
func kwokNodeClassRef() map[string]any {
	return map[string]any{"group": gvrKWOKNodeClass.Group, "kind": "KWOKNodeClass", "name": kwokNodeClass}
}

// startKarpenter creates the KWOKNodeClass, starts Karpenter's kwok provider and the NodeClaim
// watch.
func (r *runner) startKarpenter(ctx context.Context, pool, namespace, app string) error {
	nc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvrKWOKNodeClass.GroupVersion().String(), "kind": "KWOKNodeClass",
		"metadata": map[string]any{"name": kwokNodeClass},
	}}
	if _, err := r.kube.dyn.Resource(gvrKWOKNodeClass).Create(ctx, nc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the KWOKNodeClass: %w", err)
	}
	root, err := azurite.RepoRoot()
	if err != nil {
		return err
	}
	if r.karpenter, err = r.cluster.StartKarpenter(ctx, localcluster.KarpenterOptions{
		InstanceTypesFile: filepath.Join(root, instanceTypesFile),
		// A shorter batch window than Karpenter's 10 s also shortens the time a new node stays
		// "nominated" for its pods (twice the window, at least 10 s), during which Karpenter does
		// not look at the node's pods for disruption.
		BatchMaxDuration: 5 * time.Second,
	}); err != nil {
		return fmt.Errorf("starting Karpenter: %w", err)
	}
	r.nodeWatch = r.watchNodes(ctx, pool, namespace, app)
	return nil
}

// claim is what the watch saw of one NodeClaim of the app pool.
type claim struct {
	name, node, instanceType, capacityType, zone string
	// created, launched, registered, initialized are the NodeClaim's creation and its
	// conditions' transitions to True, ready its node's Ready condition's (all at second
	// precision); deleted is when the watch first saw it deleting or gone. Zero: not (yet) seen.
	created, launched, registered, initialized, ready, deleted time.Time
	// gone is when the watch first missed it: Karpenter had finished terminating it.
	gone time.Time
	// lastPod is the last sample in which a consumer pod held its node (zero: never).
	lastPod time.Time
	// consolidatable is when its Consolidatable condition turned True, as first seen while a
	// consumer pod held its node: Karpenter would consider the node for consolidation from then.
	consolidatable time.Time
}

// nodeWatch samples the app pool's NodeClaims and nodes every 250 ms for the whole run.
type nodeWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	claims map[string]*claim
	order  []string
	// counts are the app pool's node count over time, one point per change.
	counts []nodeCount
	err    error
	log    io.Writer
}

type nodeCount struct {
	at time.Time
	n  int
}

func (r *runner) watchNodes(ctx context.Context, pool, namespace, app string) *nodeWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &nodeWatch{cancel: cancel, done: make(chan struct{}), claims: map[string]*claim{}, log: r.log}
	go func() {
		defer close(w.done)
		for {
			w.sample(ctx, r, pool, namespace, app)
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *nodeWatch) stop() {
	w.cancel()
	<-w.done
}

func (w *nodeWatch) sample(ctx context.Context, r *runner, pool, namespace, app string) {
	sel := metav1.ListOptions{LabelSelector: localcluster.KarpenterNodeLabel + "=" + pool}
	ncs, err := r.kube.dyn.Resource(gvrNodeClaim).List(ctx, sel)
	if err != nil {
		w.setErr(err)
		return
	}
	nodes, err := r.kube.cs.CoreV1().Nodes().List(ctx, sel)
	if err != nil {
		w.setErr(err)
		return
	}
	pods, err := r.kube.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		w.setErr(err)
		return
	}
	// Consumer pods that hold a node: bound and not finished (Karpenter ignores finished pods).
	busy := map[string]bool{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			busy[p.Spec.NodeName] = true
		}
	}
	now := time.Now()
	ready := map[string]time.Time{}
	live := 0
	for _, n := range nodes.Items {
		ready[n.Name] = readySince(&n)
		if n.DeletionTimestamp == nil {
			live++
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for i := range ncs.Items {
		u := &ncs.Items[i]
		name := u.GetName()
		seen[name] = true
		c := w.claims[name]
		if c == nil {
			c = &claim{name: name, created: u.GetCreationTimestamp().Time}
			w.claims[name] = c
			w.order = append(w.order, name)
		}
		c.node = nestedString(u, "status", "nodeName")
		labels := u.GetLabels()
		c.instanceType, c.capacityType, c.zone = labels[corev1.LabelInstanceTypeStable], labels["karpenter.sh/capacity-type"], labels[corev1.LabelTopologyZone]
		c.launched = conditionTime(u, "Launched")
		c.registered = conditionTime(u, "Registered")
		c.initialized = conditionTime(u, "Initialized")
		if c.ready.IsZero() && c.node != "" {
			c.ready = ready[c.node]
		}
		if c.node != "" && busy[c.node] && c.deleted.IsZero() {
			c.lastPod = now
			if t := conditionTime(u, "Consolidatable"); c.consolidatable.IsZero() && !t.IsZero() {
				c.consolidatable = t
			}
		}
		if c.deleted.IsZero() && u.GetDeletionTimestamp() != nil {
			c.deleted = now
		}
	}
	for name, c := range w.claims {
		if !seen[name] && c.gone.IsZero() {
			c.gone = now
			if c.deleted.IsZero() {
				c.deleted = now
			}
		}
	}
	if len(w.counts) == 0 || w.counts[len(w.counts)-1].n != live {
		w.counts = append(w.counts, nodeCount{at: now, n: live})
	}
	w.err = nil
}

func (w *nodeWatch) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil || w.err.Error() != err.Error() {
		fmt.Fprintf(w.log, "nodewatch: %v\n", err)
	}
	w.err = err
}

// claimsSince are copies of the NodeClaims created at or after since, oldest first.
func (w *nodeWatch) claimsSince(since time.Time) []claim {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []claim
	for _, name := range w.order {
		if c := w.claims[name]; !c.created.Before(since.Truncate(time.Second)) {
			out = append(out, *c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}

// deletedSince are copies of the NodeClaims the watch saw deleted at or after since.
func (w *nodeWatch) deletedSince(since time.Time) []claim {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []claim
	for _, name := range w.order {
		if c := w.claims[name]; !c.deleted.IsZero() && !c.deleted.Before(since) {
			out = append(out, *c)
		}
	}
	return out
}

// live is the app pool's node count at the last sample.
func (w *nodeWatch) live() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.counts) == 0 {
		return 0
	}
	return w.counts[len(w.counts)-1].n
}

// countsSince is the node count over time from since: "2 (0s) -> 1 (31s) -> 0 (44s)".
func (w *nodeWatch) countsSince(since time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for i, c := range w.counts {
		if c.at.Before(since) {
			if i+1 < len(w.counts) && !w.counts[i+1].at.After(since) {
				continue
			}
			parts = append(parts, fmt.Sprintf("%d (0s)", c.n))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d (%.0fs)", c.n, c.at.Sub(since).Seconds()))
	}
	return strings.Join(parts, " -> ")
}

// waitNodes waits until the app pool has want nodes (not deleting) at the watch's last sample.
func (r *runner) waitNodes(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for r.nodeWatch.live() != want {
		if time.Now().After(deadline) {
			return fmt.Errorf("the app pool has %d nodes after %s, want %d (node count %s): %w",
				r.nodeWatch.live(), timeout, want, r.nodeWatch.countsSince(deadline.Add(-timeout)), errStep)
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return err
		}
	}
	return nil
}

// describeClaims is one line per NodeClaim, its times relative to t0.
func describeClaims(cs []claim, t0 time.Time) string {
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("+%.0fs", t.Sub(t0.Truncate(time.Second)).Seconds())
	}
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s (%s %s %s): created %s, launched %s, registered %s, Ready %s, initialized %s",
			c.name, c.instanceType, c.capacityType, c.zone, rel(c.created), rel(c.launched), rel(c.registered), rel(c.ready), rel(c.initialized)))
	}
	return strings.Join(parts, "; ")
}

// conditionTime is when a condition last turned True, zero when it is not True.
func conditionTime(u *unstructured.Unstructured, typ string) time.Time {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			s, _ := m["lastTransitionTime"].(string)
			t, err := time.Parse(time.RFC3339, s)
			if err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// readySince is when the node's Ready condition turned True (kwok's node-start stage dates it),
// zero while it is not Ready.
func readySince(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// karpenterEvents are the events Karpenter recorded in ns with reason, at or after since.
func (r *runner) karpenterEvents(ctx context.Context, ns, reason string, since time.Time) ([]corev1.Event, error) {
	return r.eventsWhere(ctx, ns, "reason="+reason, since, func(e corev1.Event) bool {
		return e.Source.Component == "karpenter" || e.ReportingController == "karpenter"
	})
}

// nodePoolAsStack checks the NodePool the API server holds is the stack's, but for the one
// substitution (nodeClassRef), and says what it compared.
func (r *runner) nodePoolAsStack(ctx context.Context) (string, error) {
	if r.want.nodePool == nil {
		return "", fmt.Errorf("the program registered no NodePool: %w", errStep)
	}
	stack, _ := jsonNormal(r.want.nodePool)
	stackSpec, _ := stack.(map[string]any)
	tmpl, _ := dig[map[string]any](stackSpec, "template", "spec")
	if ref, _ := tmpl["nodeClassRef"].(map[string]any); ref["kind"] != "AKSNodeClass" || ref["group"] != "karpenter.azure.com" {
		return "", fmt.Errorf("the stack's NodePool references %v, not AKS's AKSNodeClass: %w", ref, errStep)
	}
	want, _ := jsonNormal(stackSpec)
	wantSpec := want.(map[string]any)
	wantTmpl, _ := dig[map[string]any](wantSpec, "template", "spec")
	wantTmpl["nodeClassRef"] = kwokNodeClassRef()
	pool, err := r.kube.get(ctx, object{gvrNodePool, "NodePool", "", r.want.settings.NodePoolName})
	if err != nil {
		return "", err
	}
	if pool == nil {
		return "", fmt.Errorf("NodePool %s is missing: %w", r.want.settings.NodePoolName, errStep)
	}
	got, _ := jsonNormal(pool.Object["spec"])
	if diffs := subsetDiffs("spec", wantSpec, got); len(diffs) > 0 {
		return "", fmt.Errorf("the NodePool the API server holds differs from the stack's: %s: %w", strings.Join(diffs, "; "), errStep)
	}
	reqs, _ := wantTmpl["requirements"].([]any)
	taints, _ := wantTmpl["taints"].([]any)
	return fmt.Sprintf("NodePool %s as the stack renders it (%d requirements, %d taint, limits %v, disruption %v) but for nodeClassRef AKSNodeClass -> KWOKNodeClass %s",
		r.want.settings.NodePoolName, len(reqs), len(taints), wantSpec["limits"], clip(fmt.Sprint(wantSpec["disruption"]), 200), kwokNodeClass), nil
}

// watchKarpenterRefusal polls, until ctx ends, for Karpenter's FailedScheduling events in ns
// that contain fragment, and calls found with the first one.
func (r *runner) watchKarpenterRefusal(ctx context.Context, ns, fragment string, since time.Time, found func(string)) {
	for {
		evs, err := r.karpenterEvents(ctx, ns, "FailedScheduling", since)
		if err == nil {
			for _, e := range evs {
				if strings.Contains(e.Message, fragment) {
					found(e.Message)
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// karpenterScheduling is Karpenter's latest FailedScheduling message in ns since, or "".
func (r *runner) karpenterScheduling(ctx context.Context, ns string, since time.Time) string {
	evs, err := r.karpenterEvents(ctx, ns, "FailedScheduling", since)
	if err != nil || len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1].Message
}

// noAppNode waits until Karpenter has removed every app pool node (the previous step emptied
// them), so that the next burst starts from zero nodes.
func (r *runner) noAppNode(ctx context.Context) error {
	after, err := time.ParseDuration(e2eConsolidateAfter)
	if err != nil {
		return err
	}
	// consolidateAfter, Karpenter's disruption loop (10 s) and its validation (15 s), and slack.
	return r.waitNodes(ctx, 0, after+90*time.Second)
}

// lateNodes is the evidence that the pods created since `since` (a burst from zero app nodes)
// waited Pending until the node Karpenter launched for them turned Ready: each scheduled pod was
// bound no earlier than its node's Ready, and the NodeClaims' times.
func (r *runner) lateNodes(ctx context.Context, since time.Time) (string, []claim, error) {
	claims := r.nodeWatch.claimsSince(since)
	if len(claims) == 0 {
		return "", nil, fmt.Errorf("no NodeClaim launched by Karpenter since the burst: %w", errStep)
	}
	readyAt := map[string]time.Time{}
	for _, c := range claims {
		readyAt[c.node] = c.ready
	}
	pods, err := r.kube.cs.CoreV1().Pods(r.want.settings.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + r.want.settings.AppLabel})
	if err != nil {
		return "", nil, err
	}
	var longest time.Duration
	checked := 0
	for _, p := range pods.Items {
		if p.CreationTimestamp.Time.Before(since.Truncate(time.Second)) || p.Spec.NodeName == "" {
			continue
		}
		var bound time.Time
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
				bound = c.LastTransitionTime.Time
			}
		}
		ready, ok := readyAt[p.Spec.NodeName]
		if !ok {
			return "", nil, fmt.Errorf("pod %s runs on %s, not on a node Karpenter launched for the burst (%s): %w", p.Name, p.Spec.NodeName, describeClaims(claims, since), errStep)
		}
		if ready.IsZero() || bound.IsZero() {
			return "", nil, fmt.Errorf("pod %s on %s: bound %v, node Ready %v (not seen): %w", p.Name, p.Spec.NodeName, bound, ready, errStep)
		}
		// Both conditions' times, at second precision.
		if bound.Before(ready) {
			return "", nil, fmt.Errorf("pod %s was bound to %s at %s, before the node turned Ready at %s: %w", p.Name, p.Spec.NodeName, bound.Format(time.TimeOnly), ready.Format(time.TimeOnly), errStep)
		}
		longest = max(longest, bound.Sub(p.CreationTimestamp.Time))
		checked++
	}
	if checked == 0 {
		return "", nil, fmt.Errorf("no consumer pod of the burst was scheduled: %w", errStep)
	}
	// The consumer's pods are small (a D2 holds seven): a NodeClaim per pod means a spread or an
	// affinity Karpenter honours by launching nodes (a hostname spread does).
	if checked > 1 && len(claims) >= checked {
		return "", nil, fmt.Errorf("a node per pod: Karpenter launched %d NodeClaims for %d pods: %s: %w", len(claims), checked, describeClaims(claims, since), errStep)
	}
	return fmt.Sprintf("%d pods Pending until their node turned Ready (the longest %.0fs); Karpenter launched %d NodeClaims (times from the burst): %s",
		checked, longest.Seconds(), len(claims), describeClaims(claims, since)), claims, nil
}

// consolidated waits until Karpenter has removed every app pool node, and checks each node it
// deleted since `since` was empty, and had been for consolidateAfter (the last sample with a
// consumer pod on it is no later than the pod left). The evidence is the node count over time.
func (r *runner) consolidated(ctx context.Context, since time.Time) (string, error) {
	if err := r.noAppNode(ctx); err != nil {
		return "", err
	}
	after, err := time.ParseDuration(r.want.settings.NodePoolConsolidateAfter)
	if err != nil {
		return "", err
	}
	gone := r.nodeWatch.deletedSince(since)
	if len(gone) == 0 {
		return "", fmt.Errorf("no NodeClaim was deleted since %s: %w", since.Format(time.TimeOnly), errStep)
	}
	var names []string
	for _, c := range gone {
		if c.lastPod.IsZero() {
			return "", fmt.Errorf("%s was deleted, but no consumer pod was ever seen on it: %w", c.name, errStep)
		}
		idle := c.deleted.Sub(c.lastPod)
		if idle < after {
			return "", fmt.Errorf("consolidated too early: Karpenter deleted %s %.1fs after a consumer pod last held its node, before consolidateAfter %s: %w", c.name, idle.Seconds(), after, errStep)
		}
		names = append(names, fmt.Sprintf("%s %.0fs after its last pod", c.name, idle.Seconds()))
	}
	return fmt.Sprintf("Karpenter removed %d emptied nodes, none before consolidateAfter %s (%s); app pool nodes since %s: %s",
		len(gone), r.want.settings.NodePoolConsolidateAfter, strings.Join(names, ", "), since.Format(time.TimeOnly), r.nodeWatch.countsSince(since)), nil
}

// jobSample is one sample of the ScaledJob's Jobs and their pods.
type jobSample struct {
	at            time.Time
	jobs, pending int
}

// sampleJobs records, every 250 ms until the returned function is called, how many Jobs the
// ScaledJob has and how many of their pods are Pending.
func (r *runner) sampleJobs(ctx context.Context, scaledJob string) func() []jobSample {
	ns := r.want.settings.Namespace
	return sampleEvery(ctx, 250*time.Millisecond, func(ctx context.Context) (jobSample, bool) {
		jobs, err := r.kube.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "scaledjob.keda.sh/name=" + scaledJob})
		if err != nil {
			return jobSample{}, false
		}
		pods, err := r.kube.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + r.want.settings.AppLabel})
		if err != nil {
			return jobSample{}, false
		}
		pending := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodPending && p.DeletionTimestamp == nil {
				pending++
			}
		}
		return jobSample{at: time.Now(), jobs: len(jobs.Items), pending: pending}, true
	})
}

// sampleEvery calls read every period until the returned function is called, which returns the
// samples read returned ok.
func sampleEvery[T any](ctx context.Context, period time.Duration, read func(context.Context) (T, bool)) func() []T {
	var mu sync.Mutex
	var out []T
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if v, ok := read(ctx); ok {
				mu.Lock()
				out = append(out, v)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(period):
			}
		}
	}()
	return func() []T {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// kedaPendingPolls counts the polls of the ScaledJob since `since` in which KEDA's operator
// counted Pending Jobs (its log line "Scaling Jobs ... Number of pending Jobs": n, n > 0: KEDA
// 2.17 pkg/scaling/executor/scale_jobs.go RequestJobScale).
func kedaPendingPolls(lines []string, since time.Time) int {
	n := 0
	for _, l := range lines {
		i := strings.Index(l, `"Number of pending Jobs": `)
		if i < 0 {
			continue
		}
		if t, err := time.Parse(time.RFC3339, strings.Fields(l)[0]); err != nil || t.Before(since.Truncate(time.Second)) {
			continue
		}
		var pending int
		if _, err := fmt.Sscanf(l[i+len(`"Number of pending Jobs": `):], "%d", &pending); err == nil && pending > 0 {
			n++
		}
	}
	return n
}

// jobsWhileNodesArrive checks the ScaledJob's burst from zero app nodes: while Jobs' pods were
// Pending, KEDA polled and created no Job beyond want (the "default" strategy counts a Job whose
// pod is Pending as running); the pods waited for Karpenter's node; and Karpenter did not count a
// node running a Job's pod as one it may consolidate (do-not-disrupt) nor delete one while a Job
// ran on it.
func (r *runner) jobsWhileNodesArrive(ctx context.Context, start time.Time, want int, samples []jobSample, eligible []gaugeSample, lastDone time.Time) (string, error) {
	maxJobs, pendingSamples, maxPending := 0, 0, 0
	var pendingFrom, pendingTo time.Time
	for _, sm := range samples {
		maxJobs = max(maxJobs, sm.jobs)
		if sm.pending > 0 {
			if pendingFrom.IsZero() {
				pendingFrom = sm.at
			}
			pendingTo = sm.at
			pendingSamples++
			maxPending = max(maxPending, sm.pending)
			if sm.jobs > want {
				return "", fmt.Errorf("%d Jobs while %d pods were Pending, above the %d KEDA's read calls for: %w", sm.jobs, sm.pending, want, errStep)
			}
		}
	}
	if maxJobs > want {
		return "", fmt.Errorf("the ScaledJob had %d Jobs at once, above the %d KEDA's read calls for: %w", maxJobs, want, errStep)
	}
	if pendingSamples == 0 {
		return "", fmt.Errorf("no Job's pod was ever Pending: did the burst find a node? %w", errStep)
	}
	b, err := os.ReadFile(r.keda.LogPath)
	if err != nil {
		return "", err
	}
	polls := kedaPendingPolls(strings.Split(string(b), "\n"), start)
	if polls == 0 {
		return "", fmt.Errorf("KEDA never polled while the Jobs' pods were Pending (%.0fs): nothing shown about its bound: %w", pendingTo.Sub(pendingFrom).Seconds(), errStep)
	}
	late, claims, err := r.lateNodes(ctx, start)
	if err != nil {
		return "", err
	}
	// Karpenter's disruption loop (every 10 s) counts, for each reason, the nodes it may disrupt
	// (karpenter_voluntary_disruption_eligible_nodes): for "underutilized", nodes whose NodeClaim
	// is Consolidatable and none of whose pods is do-not-disrupt. A Job's node is Consolidatable
	// consolidateAfter after its pod started; from one loop later until the Job ends, the count
	// must stay 0.
	blocked := ""
	for _, c := range claims {
		if c.consolidatable.IsZero() {
			continue
		}
		from, to := c.consolidatable.Add(karpenterDisruptionLoop+time.Second), c.lastPod.Add(-2*time.Second)
		var seen []float64
		for _, g := range eligible {
			if !g.at.Before(from) && !g.at.After(to) {
				seen = append(seen, g.value)
				if g.value > 0 {
					return "", fmt.Errorf("a Job's node counted: Karpenter counted %v nodes eligible for consolidation (underutilized) at %s, while a Job's pod held %s (Consolidatable since %s): %w",
						g.value, g.at.Format(time.TimeOnly), c.node, c.consolidatable.Format(time.TimeOnly), errStep)
				}
			}
		}
		if len(seen) > 0 {
			blocked = fmt.Sprintf("%s was Consolidatable from %.0fs after the burst while its Job ran, and Karpenter counted 0 nodes eligible for consolidation in %d reads over %.0fs (%s on the Jobs' pods)",
				c.node, c.consolidatable.Sub(start).Seconds(), len(seen), to.Sub(from).Seconds(), components.DoNotDisruptAnnotation)
			break
		}
	}
	if blocked == "" {
		return "", fmt.Errorf("no Job ran long enough after its node turned Consolidatable to show Karpenter leaving the node alone (%s): %w", describeClaims(claims, start), errStep)
	}
	// A Job's node may go once its Jobs are done and it has been empty for consolidateAfter,
	// never while a Job's pod runs on it.
	after, err := time.ParseDuration(r.want.settings.NodePoolConsolidateAfter)
	if err != nil {
		return "", err
	}
	for _, c := range claims {
		if !c.deleted.IsZero() && c.deleted.Sub(c.lastPod) < after {
			return "", fmt.Errorf("a Job's node deleted: Karpenter deleted %s at %s, %.1fs after a Job's pod last ran on it (consolidateAfter %s): %w",
				c.name, c.deleted.Format(time.TimeOnly), c.deleted.Sub(c.lastPod).Seconds(), after, errStep)
		}
	}
	return fmt.Sprintf("Jobs' pods Pending for %.0fs (up to %d at once), during which KEDA polled %d times counting them as pending and the Jobs stayed at %d (never above %d); %s; %s; no Job's node deleted while a Job ran on it (the last Job completed %.0fs after the burst)",
		pendingTo.Sub(pendingFrom).Seconds(), maxPending, polls, want, want, late, blocked, lastDone.Sub(start).Seconds()), nil
}

// takeAwayBurst is the node-taken-away step's backlog: enough for the consumers to be mid-drain
// when the node goes.
const takeAwayBurst = 1500

// Step 13 (h): a node taken away mid-drain, as Karpenter takes one on a spot eviction or drift:
// while the consumers drain a backlog, the harness deletes the NodeClaim of the node that runs
// most of them (Karpenter's interruption handling deletes the NodeClaim the same way). Karpenter
// taints and drains the node: its pods get SIGTERM and the stack's grace period, drain what they
// hold and exit 0; their replacements wait for a node and finish the backlog. verify: nothing
// lost, nothing poisoned, every message stored once.
func (r *runner) stepNodeTakenAway(ctx context.Context) (string, error) {
	s := r.want.settings
	start := time.Now()
	done := make(chan verifyResult, 1)
	go func() {
		rep, err := r.verify(ctx, takeAwayBurst, "-skip-scale-down")
		done <- verifyResult{rep, err}
	}()
	victim, onIt, depth, err := r.pickMidDrain(ctx, start, done)
	if err != nil {
		return "", err
	}
	takenAt := time.Now()
	if err := r.kube.dyn.Resource(gvrNodeClaim).Delete(ctx, victim.name, metav1.DeleteOptions{}); err != nil {
		return "", fmt.Errorf("deleting NodeClaim %s: %w", victim.name, err)
	}
	res := <-done
	if res.err != nil {
		return "", fmt.Errorf("after NodeClaim %s was deleted mid-drain: %w", victim.name, res.err)
	}
	// Karpenter drains the node (evicting its pods through the Eviction API, one at a time as
	// the PodDisruptionBudget allows), then removes it; each pod's process gets SIGTERM and the
	// pod's grace period.
	deadline := time.Now().Add(3*time.Minute + time.Duration(s.TerminationGracePeriodSeconds)*time.Second)
	var gone time.Time
	for gone.IsZero() {
		for _, c := range r.nodeWatch.claimsSince(victim.created) {
			if c.name == victim.name && !c.gone.IsZero() {
				gone = c.gone
			}
		}
		if gone.IsZero() {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("NodeClaim %s is still there %.0fs after its deletion: %w", victim.name, time.Since(takenAt).Seconds(), errStep)
			}
			if err := r.waitTick(ctx, deadline); err != nil {
				return "", err
			}
		}
	}
	// Every process on the node got SIGTERM with the pod's grace period and exited 0.
	var stops []string
	for _, pod := range onIt {
		var stopping, exited *localcluster.MirrorEvent
		for {
			stopping, exited = nil, nil
			for _, e := range r.mirror.Events() {
				if e.Pod != pod || e.Time.Before(takenAt) {
					continue
				}
				switch e.Kind {
				case localcluster.MirrorStopping:
					if stopping == nil {
						stopping = &e
					}
				case localcluster.MirrorExited:
					exited = &e
				case localcluster.MirrorKilled:
					return "", fmt.Errorf("the consumer of pod %s on the node taken away had to be SIGKILLed: %s: %w", pod, e.Detail, errStep)
				}
			}
			if exited != nil || time.Now().After(deadline) {
				break
			}
			if err := r.waitTick(ctx, deadline); err != nil {
				return "", err
			}
		}
		if stopping == nil || exited == nil {
			return "", fmt.Errorf("the consumer of pod %s on the node taken away: SIGTERM %v, exit %v: %w", pod, stopping != nil, exited != nil, errStep)
		}
		if exited.ExitCode != 0 {
			return "", fmt.Errorf("the consumer of pod %s exited %d after SIGTERM (want 0: drained): %s: %w", pod, exited.ExitCode, exited.Detail, errStep)
		}
		stops = append(stops, fmt.Sprintf("%s SIGTERM +%.1fs (%s), exit 0 after %.1fs", pod, stopping.Time.Sub(takenAt).Seconds(), graceOf(stopping.Detail), exited.Time.Sub(stopping.Time).Seconds()))
	}
	evicted, err := r.karpenterEvents(ctx, s.Namespace, "Evicted", takenAt)
	if err != nil {
		return "", err
	}
	after := r.nodeWatch.claimsSince(takenAt)
	if _, err := r.waitReplicas(ctx, s, 0, time.Duration(s.CooldownPeriod+s.PollingInterval)*time.Second+slack); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d of %d messages queued when NodeClaim %s (node %s, %d consumer pods) was deleted %.0fs into the drain; Karpenter evicted %d pods (its Evicted events) and removed the node %.0fs later; %s; Karpenter launched %d NodeClaims after it: %s; verify: %s",
		depth, takeAwayBurst, victim.name, victim.node, len(onIt), takenAt.Sub(start).Seconds(), len(evicted), gone.Sub(takenAt).Seconds(), strings.Join(stops, "; "), len(after), describeClaims(after, takenAt), summarize(res.rep)), nil
}

type verifyResult struct {
	rep verify.Report
	err error
}

// pickMidDrain waits until the consumers are draining the backlog (a process running for 2 s,
// the queue still holding a third of it) and returns the NodeClaim whose node runs most of the
// consumer processes, those pods, and the depth then. verify ending first is an error.
func (r *runner) pickMidDrain(ctx context.Context, start time.Time, verifyDone <-chan verifyResult) (claim, []string, int, error) {
	s := r.want.settings
	deadline := time.Now().Add(2 * time.Minute)
	var runningSince time.Time
	for {
		select {
		case res := <-verifyDone:
			return claim{}, nil, 0, fmt.Errorf("verify ended before the consumers were mid-drain (%v): %s: %w", res.err, summarize(res.rep), errStep)
		default:
		}
		running := r.mirror.Running()
		if len(running) > 0 && runningSince.IsZero() {
			runningSince = time.Now()
		}
		if !runningSince.IsZero() && time.Since(runningSince) >= 2*time.Second {
			depth, err := r.depth(ctx)
			if err != nil {
				return claim{}, nil, 0, err
			}
			if depth < takeAwayBurst/3 {
				return claim{}, nil, 0, fmt.Errorf("the queue held %d of %d when the consumers had run 2s: too fast to take a node away mid-drain: %w", depth, takeAwayBurst, errStep)
			}
			pods, err := r.kube.cs.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + s.AppLabel})
			if err != nil {
				return claim{}, nil, 0, err
			}
			isRunning := map[string]bool{}
			for _, p := range running {
				isRunning[p] = true
			}
			byNode := map[string][]string{}
			for _, p := range pods.Items {
				if isRunning[p.Name] && p.DeletionTimestamp == nil {
					byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
				}
			}
			best := ""
			for n, ps := range byNode {
				if best == "" || len(ps) > len(byNode[best]) || (len(ps) == len(byNode[best]) && n < best) {
					best = n
				}
			}
			for _, c := range r.nodeWatch.claimsSince(time.Time{}) {
				if c.node == best && best != "" && c.deleted.IsZero() {
					return c, byNode[best], depth, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return claim{}, nil, 0, fmt.Errorf("no consumer ran on a Karpenter node within 2m of the burst (running: %v): %w", running, errStep)
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return claim{}, nil, 0, err
		}
	}
}

// graceOf is the "SIGKILL after <d>" part of a mirror stopping event's detail.
func graceOf(detail string) string {
	if i := strings.Index(detail, "SIGKILL after "); i >= 0 {
		return "grace " + detail[i+len("SIGKILL after "):]
	}
	return detail
}

// karpenterDisruptionLoop is how often Karpenter's disruption controller evaluates the nodes
// (pollingPeriod in pkg/controllers/disruption/controller.go of v1.7).
const karpenterDisruptionLoop = 10 * time.Second

// gaugeSample is one read of a Karpenter gauge.
type gaugeSample struct {
	at    time.Time
	value float64
}

// sampleEligible reads karpenter_voluntary_disruption_eligible_nodes{reason="underutilized"}
// from Karpenter's metrics every 500 ms until the returned function is called.
func (r *runner) sampleEligible(ctx context.Context) func() []gaugeSample {
	return sampleEvery(ctx, 500*time.Millisecond, func(ctx context.Context) (gaugeSample, bool) {
		v, ok, err := r.karpenter.Gauge(ctx, "karpenter_voluntary_disruption_eligible_nodes", `reason="underutilized"`)
		return gaugeSample{at: time.Now(), value: v}, ok && err == nil
	})
}
