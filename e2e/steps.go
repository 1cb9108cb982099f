package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/localcluster"
)

// Step 1: `pulumi up` creates every object, the provider's await sees the Deployment roll out on
// a node Karpenter launched for it from the stack's NodePool (the app pool has none before; the
// NodePool on the API server is the stack's but for nodeClassRef), and the KEDA operator is
// patched and rolled out with the identity. Under -break nodepool-unschedulable, the `up` fails
// with Karpenter's FailedScheduling message.
func (r *runner) stepCreate(ctx context.Context) (string, error) {
	// The deployer has no role yet: the API server refuses it until the harness grants one,
	// propagation into the run, as Azure RBAC lets a new assignment in minutes after it exists.
	if ok, err := r.deployerMay(ctx); err != nil || ok {
		return "", fmt.Errorf("before its grant, the API server must refuse the deployer %s (allowed %v, %v): %w", r.deployer(), ok, err, errStep)
	}
	if r.brk == staticAssertion {
		// The Azure half of a real `up` (cluster, image build) outlasts the assertion az got at
		// login: reach the API server only once it has expired.
		time.Sleep(time.Until(r.staticExpiry) + time.Second)
	}
	upStart := time.Now()
	granted := r.grantAfter(ctx, propagation)
	o, refused, err := r.upWatchingKarpenter(ctx, upStart)
	if refused != "" {
		return "", fmt.Errorf("-break %s (%s): Karpenter refuses to launch a node for the consumer's pods: %q; `up` cancelled (%v): %w",
			r.brk, breaks[r.brk].what, refused, err, errStep)
	}
	if err != nil {
		if msg := r.karpenterScheduling(ctx, r.want.settings.Namespace, upStart); msg != "" {
			err = fmt.Errorf("%w (Karpenter's last FailedScheduling: %q)", err, msg)
		}
		if r.brk != "" {
			c := r.entra.Counts()
			return "", fmt.Errorf("-break %s (%s): the fake Entra refused %d token requests for an expired assertion (%s): %w",
				r.brk, breaks[r.brk].what, c.Expired, breaks[staticAssertion].refusal, engineError("up", o, err))
		}
		return "", engineError("up", o, err)
	}
	g := <-granted
	if g.err != nil {
		return "", fmt.Errorf("granting the deployer: %w", g.err)
	}
	first, err := r.kube.cs.CoreV1().Namespaces().Get(ctx, r.want.settings.Namespace, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if created := first.CreationTimestamp.Time; created.Before(g.at.Truncate(time.Second)) {
		return "", fmt.Errorf("the Namespace %s was created at %s, before the deployer's grant at %s: %w", first.Name, created.Format(time.TimeOnly), g.at.Format(time.TimeOnly), errStep)
	}
	access := fmt.Sprintf("deployer %s refused before its grant, granted %.0fs into `up` (Azure RBAC propagating), the first object (Namespace) created after it; %s",
		r.deployer(), g.at.Sub(upStart).Seconds(), r.tokensEvidence())
	if r.brk != "" && !breaks[r.brk].byOperator {
		return "", fmt.Errorf("-break %s: %s was accepted: %w", r.brk, breaks[r.brk].what, errStep)
	}
	s := r.want.settings
	objs := workloadObjects(s, components.ScaleModeScaledObject)
	_, missing, err := r.kube.present(ctx, objs)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("after up, the API server lacks %s: %w", strings.Join(missing, ", "), errStep)
	}
	// No waiting here: `up` returned, so the provider's await must already have seen the rollout.
	ro, err := r.kube.rollout(ctx, s.Namespace, s.DeploymentName)
	if err != nil {
		return "", err
	}
	if !ro.complete() || ro.image != r.want.image() {
		return "", fmt.Errorf("up returned but Deployment %s is %s (want every replica available with %s): %w", s.DeploymentName, ro, r.want.image(), errStep)
	}
	// The app pool had no node: Karpenter launched the ones the rollout runs on, from the
	// stack's NodePool.
	claims := r.nodeWatch.claimsSince(upStart)
	launched := map[string]bool{}
	for _, c := range claims {
		launched[c.node] = true
	}
	for _, n := range ro.nodes {
		if !launched[n] {
			return "", fmt.Errorf("a consumer pod runs on %s, not on a node Karpenter launched during `up` (%s): %w", n, describeClaims(claims, upStart), errStep)
		}
	}
	poolEvidence, err := r.nodePoolAsStack(ctx)
	if err != nil {
		return "", err
	}
	so, err := r.kube.get(ctx, object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName})
	if err != nil {
		return "", err
	}
	md := triggerMetadata(so)
	if md["accountName"] != fakeStorageAccount || nestedString(so, "spec", "scaleTargetRef", "name") != s.DeploymentName {
		return "", fmt.Errorf("ScaledObject trigger %v / target %q: %w", md, nestedString(so, "spec", "scaleTargetRef", "name"), errStep)
	}
	keda, err := r.kedaOperatorIdentity(ctx)
	if err != nil {
		return "", err
	}
	pool, err := r.kube.get(ctx, object{gvrNodePool, "NodePool", "", s.NodePoolName})
	if err != nil {
		return "", err
	}
	budgets, _, _ := unstructured.NestedSlice(pool.Object, "spec", "disruption", "budgets")
	want := components.DisruptionBudgets(&e2eMaintenanceWindow)
	if len(budgets) != len(want) || fmt.Sprint(budgets[0]) != fmt.Sprint(map[string]any{"nodes": want[0].Nodes, "schedule": want[0].Schedule,
		"duration": want[0].Duration, "reasons": []any{want[0].Reasons[0], want[0].Reasons[1]}}) {
		return "", fmt.Errorf("the API server holds NodePool budgets %v, want %+v: %w", budgets, want, errStep)
	}
	return fmt.Sprintf("up: %s; API server: %d objects (%s); Deployment %s; Karpenter %s launched %d NodeClaims for it (times from the start of `up`): %s; %s; %s; NodePool disruption budgets as stored: %v; %s",
		o.counts(), len(objs), kinds(objs), ro, r.karpenter.Version, len(claims), describeClaims(claims, upStart), poolEvidence, keda, budgets, access), nil
}

// upWatchingKarpenter runs `pulumi up`. Under a -break that only Karpenter refuses, it also
// watches for Karpenter's FailedScheduling event with the break's text, and cancels the `up`
// (which would otherwise wait for the rollout until the provider's timeout) when one comes.
func (r *runner) upWatchingKarpenter(ctx context.Context, since time.Time) (o outcome, refused string, err error) {
	if r.brk == "" || !breaks[r.brk].byKarpenter {
		o, err = r.eng.up(ctx)
		return o, "", err
	}
	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	go r.watchKarpenterRefusal(upCtx, r.want.settings.Namespace, breaks[r.brk].refusal, since, func(msg string) {
		mu.Lock()
		refused = msg
		mu.Unlock()
		cancel()
	})
	o, err = r.eng.up(upCtx)
	cancel()
	mu.Lock()
	defer mu.Unlock()
	return o, refused, err
}

// kedaOperatorIdentity checks the KEDA operator's service account carries the client id and
// its rolled-out pods carry the workload identity label.
func (r *runner) kedaOperatorIdentity(ctx context.Context) (string, error) {
	ns, name := components.KedaNamespace, components.KedaOperatorName
	sa, err := r.kube.cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if got := sa.Annotations["azure.workload.identity/client-id"]; got != fakeClientID {
		return "", fmt.Errorf("%s/%s service account client-id annotation %q, want %q: %w", ns, name, got, fakeClientID, errStep)
	}
	pods, err := r.kube.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name + ",azure.workload.identity/use=true"})
	if err != nil {
		return "", err
	}
	ready := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Annotations[components.KedaIdentityAnnotation] == fakeClientID {
			ready++
		}
	}
	if ready == 0 {
		return "", fmt.Errorf("no %s pod with the workload identity label and client id: the operator was not rolled out: %w", name, errStep)
	}
	return fmt.Sprintf("%s/%s annotated and rolled out (%d pod with the identity label)", ns, name, ready), nil
}

// Step 2: a second `pulumi up` (and its preview) plans and makes no change.
func (r *runner) stepNoChanges(ctx context.Context) (string, error) {
	p, err := r.eng.preview(ctx)
	if err != nil {
		return "", engineError("preview", p, err)
	}
	if p.changed() != 0 {
		return "", fmt.Errorf("preview of an unchanged program plans %s: %v: %w", p.counts(), changedOps(p), errStep)
	}
	o, err := r.eng.up(ctx)
	if err != nil {
		return "", engineError("up", o, err)
	}
	if o.changed() != 0 {
		return "", fmt.Errorf("second up did %s: %v: %w", o.counts(), changedOps(o), errStep)
	}
	return fmt.Sprintf("preview: %s; up: %s; 0 changes", p.counts(), o.counts()), nil
}

func changedOps(o outcome) map[string][]string {
	m := map[string][]string{}
	for op, rs := range o.ops {
		if op != "same" && op != "read" {
			m[op] = rs
		}
	}
	return m
}

// replacing are the engine ops that mean an object was (or would be) recreated.
var replacing = []string{"replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement"}

// Step 3: what users change (queueLength, maxReplicas, the image tag, resources) previews as
// in-place updates of the ScaledObject and the Deployment, never as replacements, and applies;
// the objects keep their UIDs and the Deployment rolls out the new template.
func (r *runner) stepUpdateInPlace(ctx context.Context) (string, error) {
	s := r.want.settings
	uidsBefore, err := r.uids(ctx, workloadObjects(s, components.ScaleModeScaledObject))
	if err != nil {
		return "", err
	}
	s.QueueLength = s.QueueLength / 2
	s.MaxReplicas = s.MaxReplicas + 3
	s.CPURequest, s.MemoryLimit = "300m", "192Mi"
	r.want.settings, r.want.imageTag = s, "v2"

	p, err := r.eng.preview(ctx)
	if err != nil {
		return "", engineError("preview", p, err)
	}
	if err := onlyUpdates(p, "preview"); err != nil {
		return "", err
	}
	o, err := r.eng.up(ctx)
	if err != nil {
		return "", engineError("up", o, err)
	}
	if err := onlyUpdates(o, "up"); err != nil {
		return "", err
	}
	uidsAfter, err := r.uids(ctx, workloadObjects(s, components.ScaleModeScaledObject))
	if err != nil {
		return "", err
	}
	for k, before := range uidsBefore {
		if uidsAfter[k] != before {
			return "", fmt.Errorf("%s was recreated (uid %s -> %s): %w", k, before, uidsAfter[k], errStep)
		}
	}
	so, err := r.kube.get(ctx, object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName})
	if err != nil {
		return "", err
	}
	if got := triggerMetadata(so)["queueLength"]; got != strconv.Itoa(s.QueueLength) {
		return "", fmt.Errorf("ScaledObject queueLength %q after up, want %d: %w", got, s.QueueLength, errStep)
	}
	if got := nestedInt(so, "spec", "maxReplicaCount"); got != int64(s.MaxReplicas) {
		return "", fmt.Errorf("ScaledObject maxReplicaCount %d after up, want %d: %w", got, s.MaxReplicas, errStep)
	}
	ro, err := r.kube.rollout(ctx, s.Namespace, s.DeploymentName)
	if err != nil {
		return "", err
	}
	wantCPU := resource.MustParse(s.CPURequest)
	if !ro.complete() || ro.image != r.want.image() || ro.requests.Cpu().Cmp(wantCPU) != 0 {
		return "", fmt.Errorf("the Deployment after up: %s, cpu request %s (want %s, %s, fully available): %w", ro, ro.requests.Cpu(), r.want.image(), s.CPURequest, errStep)
	}
	return fmt.Sprintf("preview and up: %s (updated: %s); no replacement, same UIDs for %d objects; ScaledObject queueLength %d maxReplicaCount %d; Deployment %s",
		o.counts(), strings.Join(o.ops["update"], ", "), len(uidsBefore), s.QueueLength, s.MaxReplicas, ro), nil
}

// onlyUpdates fails if o creates, deletes or replaces anything, or updates nothing.
func onlyUpdates(o outcome, what string) error {
	for _, op := range append([]string{"create", "delete"}, replacing...) {
		if o.count(op) > 0 {
			return fmt.Errorf("%s plans %s for %v (want in-place updates only): %w", what, op, o.ops[op], errStep)
		}
	}
	for _, want := range []string{"kubernetes:apps/v1:Deployment::consumer-deployment", "kubernetes:keda.sh/v1alpha1:ScaledObject::consumer-scaled-object"} {
		if !o.has("update", want) {
			return fmt.Errorf("%s does not update %s in place (%s): %w", what, want, o.counts(), errStep)
		}
	}
	return nil
}

func (r *runner) uids(ctx context.Context, objs []object) (map[string]string, error) {
	m := map[string]string{}
	for _, obj := range objs {
		u, err := r.kube.get(ctx, obj)
		if err != nil {
			return nil, err
		}
		if u == nil {
			return nil, fmt.Errorf("%s is missing: %w", obj, errStep)
		}
		m[obj.String()] = string(u.GetUID())
	}
	return m, nil
}

// Step 4: switching scaleMode to ScaledJob deletes the Deployment, its PodDisruptionBudget and
// the ScaledObject and creates the ScaledJob, leaving the shared objects untouched; and back.
func (r *runner) stepSwitchScaleMode(ctx context.Context) (string, error) {
	var evidence []string
	for _, sw := range []struct{ from, to string }{
		{components.ScaleModeScaledObject, components.ScaleModeScaledJob},
		{components.ScaleModeScaledJob, components.ScaleModeScaledObject},
	} {
		s := r.want.settings
		oldObjs, newObjs := workloadObjects(s, sw.from), workloadObjects(s, sw.to)
		shared, gone, added := diffObjects(oldObjs, newObjs)
		uidsBefore, err := r.uids(ctx, shared)
		if err != nil {
			return "", err
		}
		s.ScaleMode = sw.to
		r.want.settings = s
		p, err := r.eng.preview(ctx)
		if err != nil {
			return "", engineError("preview", p, err)
		}
		for _, op := range replacing {
			if p.count(op) > 0 {
				return "", fmt.Errorf("preview of %s -> %s plans %s for %v: %w", sw.from, sw.to, op, p.ops[op], errStep)
			}
		}
		if p.count("create") != len(added) || p.count("delete") != len(gone) {
			return "", fmt.Errorf("preview of %s -> %s plans %s, want create %d (%s) and delete %d (%s): %w",
				sw.from, sw.to, p.counts(), len(added), kinds(added), len(gone), kinds(gone), errStep)
		}
		o, err := r.eng.up(ctx)
		if err != nil {
			return "", engineError("up", o, err)
		}
		if o.count("create") != len(added) || o.count("delete") != len(gone) {
			return "", fmt.Errorf("up %s -> %s did %s: %w", sw.from, sw.to, o.counts(), errStep)
		}
		left, err := r.kube.waitGone(ctx, gone, 30*time.Second)
		if err != nil {
			return "", err
		}
		if len(left) > 0 {
			return "", fmt.Errorf("after %s -> %s the API server still has %s: %w", sw.from, sw.to, strings.Join(left, ", "), errStep)
		}
		if _, missing, err := r.kube.present(ctx, added); err != nil || len(missing) > 0 {
			return "", fmt.Errorf("after %s -> %s the API server lacks %v (%v): %w", sw.from, sw.to, missing, err, errStep)
		}
		uidsAfter, err := r.uids(ctx, shared)
		if err != nil {
			return "", err
		}
		for k, v := range uidsBefore {
			if uidsAfter[k] != v {
				return "", fmt.Errorf("%s was recreated by %s -> %s: %w", k, sw.from, sw.to, errStep)
			}
		}
		line := fmt.Sprintf("%s -> %s: %s, %d shared objects kept", sw.from, sw.to, o.counts(), len(shared))
		if sw.to == components.ScaleModeScaledObject {
			ro, err := r.kube.rollout(ctx, s.Namespace, s.DeploymentName)
			if err != nil {
				return "", err
			}
			if !ro.complete() {
				return "", fmt.Errorf("the Deployment after switching back: %s: %w", ro, errStep)
			}
			line += "; Deployment " + ro.String()
		}
		evidence = append(evidence, line)
	}
	return strings.Join(evidence, "; "), nil
}

func diffObjects(old, new []object) (shared, gone, added []object) {
	in := func(o object, set []object) bool {
		for _, x := range set {
			if x == o {
				return true
			}
		}
		return false
	}
	for _, o := range old {
		if in(o, new) {
			shared = append(shared, o)
		} else {
			gone = append(gone, o)
		}
	}
	for _, o := range new {
		if !in(o, old) {
			added = append(added, o)
		}
	}
	return shared, gone, added
}

func kinds(objs []object) string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.kind)
	}
	return strings.Join(ks, ", ")
}

// Step 5: each deliberate defect, valid to the Go types, is refused at preview by the API
// server with its own message; the live objects stay as they were, and without the defect the
// program again plans no change.
func (r *runner) stepRefused(ctx context.Context) (string, error) {
	var kindsTried []string
	for k, b := range breaks {
		if !b.byOperator && !b.credential && !b.byKarpenter {
			kindsTried = append(kindsTried, k)
		}
	}
	sort.Strings(kindsTried)
	var evidence []string
	for _, k := range kindsTried {
		b := breaks[k]
		r.want.brk = k
		p, err := r.eng.preview(ctx)
		r.want.brk = r.brk // "" unless -break names a defect only the operator sees
		if err == nil {
			return "", fmt.Errorf("preview with %s succeeded (%s): %w", b.what, p.counts(), errStep)
		}
		msg := refusal(p.errors, b.refusal)
		if msg == "" {
			return "", fmt.Errorf("preview with %s failed, but not with the API server's %q: %v: %w", b.what, b.refusal, engineError("preview", p, err), errStep)
		}
		evidence = append(evidence, fmt.Sprintf("%s refused: %q", b.kind, msg))
	}
	p, err := r.eng.preview(ctx)
	if err != nil {
		return "", engineError("preview", p, err)
	}
	if p.changed() != 0 {
		return "", fmt.Errorf("after the refused previews, the plain program plans %s: %w", p.counts(), errStep)
	}
	return strings.Join(evidence, "; ") + "; plain program: 0 changes", nil
}

// refusal returns the error line containing fragment, shortened around it.
func refusal(errs []string, fragment string) string {
	for _, e := range errs {
		if i := strings.Index(e, fragment); i >= 0 {
			// Start at the API server's own words: after the provider's "...API server: " or
			// "...become live: " lead-in when there is one, else 120 characters back.
			start := max(0, i-120)
			for _, lead := range []string{"API server: ", "live: "} {
				if j := strings.LastIndex(e[:i], lead); j >= 0 && j+len(lead) > start {
					start = j + len(lead)
				}
			}
			return strings.TrimSpace(e[start:min(len(e), i+len(fragment)+40)])
		}
	}
	return ""
}

// Step 16: a program without the workload deletes every one of its objects from the API server
// (and takes the KEDA operator's identity fields back); then, with the workload deployed again,
// `pulumi destroy` completes, deleting the cluster's stand-in and leaving the objects that are
// DeletedWith it to the cluster's own deletion, as the stack does with AKS.
func (r *runner) stepRemoveAndDestroy(ctx context.Context) (string, error) {
	s := r.want.settings
	objs := workloadObjects(s, s.ScaleMode)
	r.want.withWorkload = false
	o, err := r.eng.up(ctx)
	if err != nil {
		return "", engineError("up", o, err)
	}
	if o.count("delete") == 0 || o.count("create") != 0 {
		return "", fmt.Errorf("up without the workload did %s: %w", o.counts(), errStep)
	}
	left, err := r.kube.waitGone(ctx, objs, 60*time.Second)
	if err != nil {
		return "", err
	}
	if len(left) > 0 {
		return "", fmt.Errorf("without the workload, the API server still has %s: %w", strings.Join(left, ", "), errStep)
	}
	sa, err := r.kube.cs.CoreV1().ServiceAccounts(components.KedaNamespace).Get(ctx, components.KedaOperatorName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	kedaAnnotation := sa.Annotations["azure.workload.identity/client-id"]
	removed := fmt.Sprintf("up without the workload: %s; all %d objects gone from the API server; keda-operator client-id annotation after: %q",
		o.counts(), len(objs), kedaAnnotation)
	if kedaAnnotation != "" {
		return "", fmt.Errorf("%s: the patch's field was not given back: %w", removed, errStep)
	}

	r.want.withWorkload = true
	// The destroy is checked on the stack's own objects: the Go SDK (v3.227.0, context.go's
	// transform callback) round-trips a transformed resource's options without DeletedWith, so
	// the substituted TriggerAuthentication and NodePool would lose it and be deleted
	// (docs/cloud-notes.md). No pod runs by now, so the NodePool's own nodeClassRef is harmless.
	r.want.azuriteAuth, r.want.kwokNodeClass = false, false
	// With the stack's own NodePool Karpenter launches nothing here: the consumer the provider
	// awaits runs on a node the harness adds to the pool.
	if err := r.cluster.AddNodes(ctx, []localcluster.Node{standInAppNode(s.NodePoolName)}); err != nil {
		return "", err
	}
	if o, err = r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	start := time.Now()
	d, err := r.eng.destroy(ctx)
	if err != nil {
		return "", engineError("destroy", d, err)
	}
	took := time.Since(start)
	inState, err := r.eng.resourcesInState(ctx)
	if err != nil {
		return "", err
	}
	if inState != 0 {
		return "", fmt.Errorf("destroy left %d resources in the state: %w", inState, errStep)
	}
	cm, err := r.kube.get(ctx, object{gvrConfigMap, "ConfigMap", standInNamespace, standInName})
	if err != nil {
		return "", err
	}
	if cm != nil {
		return "", fmt.Errorf("destroy left the cluster's stand-in ConfigMap: %w", errStep)
	}
	have, missing, err := r.kube.present(ctx, objs)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("destroy deleted %s, which are DeletedWith the cluster and should be left to its deletion: %w", strings.Join(missing, ", "), errStep)
	}
	return fmt.Sprintf("%s; destroy: %s in %.0fs, state empty, stand-in gone, %d DeletedWith objects left for the cluster's deletion (%s)",
		removed, d.counts(), took.Seconds(), len(have), kinds(objs)), nil
}
