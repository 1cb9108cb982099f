package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/aks-edw/aks-edw/app/producer"
	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/localcluster"
	"github.com/aks-edw/aks-edw/harness/procs"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// The stack config the scaling steps deploy with, set in setup like any stack's config (never by
// changing components): KEDA's own e2e for this scaler polls every 5 s with a 10 s cooldown and
// activation 5; queue lengths small enough that a burst of 100 means several jobs.
const (
	e2ePollingInterval       = 5
	e2eCooldownPeriod        = 10
	e2eActivationQueueLength = 5
	e2eQueueLength           = 50
	e2eJobQueueLength        = 40
	e2eJobMaxReplicas        = 5
	// burst is how many messages verify sends in each mode.
	burst = 100
	// scaledJobBurst keeps the ScaledJob's Jobs running long enough (tens of seconds at one
	// message at a time) for Karpenter's disruption loop to look at their node.
	scaledJobBurst = 2100
	// scaledJobMaxReplicas is the ScaledJob's maxReplicaCount in that step: well above the 3
	// Jobs the burst calls for.
	scaledJobMaxReplicas = 20
	// slack is what the scaling checks allow on top of KEDA's own intervals on a loaded 2-core
	// machine.
	slack = 30 * time.Second
	// eventLag is how long a check waits for a controller's event after seeing the change the
	// event reports (the recorder posts it from a goroutine of its own).
	eventLag = 15 * time.Second
)

// Step 6 (a): the real KEDA operator, at the version AKS runs, takes over the ScaledObject the
// stack deployed: it reports it Ready and not Active, scales the idle Deployment down to
// minReplicaCount 0, and keeps it there for two polling intervals.
func (r *runner) stepIdleAtZero(ctx context.Context) (string, error) {
	s := r.want.settings
	start := time.Now()
	keda, err := r.cluster.StartKEDA(ctx, kedaOptions())
	if err != nil {
		return "", fmt.Errorf("starting the KEDA operator: %w", err)
	}
	r.keda = keda
	kedaUp := time.Since(start)
	if keda.Version != strings.TrimPrefix(kedaVersion, "v") {
		return "", fmt.Errorf("the operator reports KEDA %q, want %s (the CRDs' version): %w", keda.Version, kedaVersion, errStep)
	}
	adapter, err := r.cluster.StartKEDAAdapter(ctx, keda, localcluster.KEDAAdapterOptions{Namespace: kedaOptions().Namespace})
	if err != nil {
		return "", fmt.Errorf("starting KEDA's metrics adapter: %w", err)
	}
	r.adapter = adapter
	if adapter.Version != keda.Version {
		return "", fmt.Errorf("the metrics adapter reports KEDA %q, the operator %q: %w", adapter.Version, keda.Version, errStep)
	}
	so := object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName}
	ready, err := r.waitCondition(ctx, so, "Ready", 60*time.Second)
	if err != nil {
		return "", err
	}
	if ready.status != "True" {
		return "", fmt.Errorf("KEDA reports ScaledObject %s not Ready: %s: %w", s.ScaledObjectName, ready.message, errStep)
	}
	deployed, err := r.asDeployed(ctx, so, s)
	if err != nil {
		return "", err
	}
	toZero, err := r.waitReplicas(ctx, s, 0, time.Duration(s.CooldownPeriod+s.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", err
	}
	hold := 2 * time.Duration(s.PollingInterval) * time.Second
	if err := r.holdReplicas(ctx, s, 0, hold); err != nil {
		return "", err
	}
	active, err := r.condition(ctx, so, "Active")
	if err != nil {
		return "", err
	}
	if active.status == "True" {
		return "", fmt.Errorf("ScaledObject Active with an empty queue: %s: %w", active.message, errStep)
	}
	return fmt.Sprintf("KEDA %s operator (out of cluster, log %s) up in %.0fs; KEDA %s metrics adapter on %s behind the aggregation layer (Service kube-system/%s ExternalName 127.0.0.1, APIService %s Available after %.1fs); %s; ScaledObject Ready=True (%s), Active=%s; idle Deployment scaled to 0 after %.0fs and held at 0 for %s; %d consumer processes running",
		keda.Version, keda.LogPath, kedaUp.Seconds(), adapter.Version, adapter.SecureAddr, localcluster.KEDAAdapterService, localcluster.ExternalMetricsAPI, adapter.Available.Seconds(),
		deployed, ready.reason, active.status, toZero.Seconds(), hold, len(r.mirror.Running())), nil
}

// Step 7 (b): fewer messages than activationQueueLength: KEDA reads the depth (its own metric
// says so) and still leaves the Deployment at zero for two polling intervals.
func (r *runner) stepBelowActivation(ctx context.Context) (string, error) {
	s := r.want.settings
	n := s.ActivationQueueLength - 1
	if n < 1 {
		return "", fmt.Errorf("activationQueueLength %d leaves no room below it: %w", s.ActivationQueueLength, errStep)
	}
	before := len(r.mirror.Events())
	if err := r.send(ctx, n, "e2e-below-activation"); err != nil {
		return "", err
	}
	seen, err := r.waitKEDAMetric(ctx, s, float64(n), 3*time.Duration(s.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", err
	}
	// The same depth as the HPA reads it: through the API server and KEDA's adapter.
	hpa, err := r.hpaName(ctx, s)
	if err != nil {
		return "", err
	}
	metric, metricAfter, err := r.waitExternalMetric(ctx, s, hpa, float64(n), 3*time.Duration(s.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", err
	}
	hold := 2 * time.Duration(s.PollingInterval) * time.Second
	if err := r.holdReplicas(ctx, s, 0, hold); err != nil {
		return "", err
	}
	depth, err := r.depth(ctx)
	if err != nil {
		return "", err
	}
	if depth != n {
		return "", fmt.Errorf("queue depth %d after holding at zero, want the %d messages still there: %w", depth, n, errStep)
	}
	if run := r.mirror.Running(); len(run) > 0 {
		return "", fmt.Errorf("consumer processes run below activation: %v: %w", run, errStep)
	}
	for _, e := range r.mirror.Events()[before:] {
		if e.Kind == localcluster.MirrorStarted {
			return "", fmt.Errorf("a consumer process started below activation (pod %s): %w", e.Pod, errStep)
		}
	}
	return fmt.Sprintf("%d messages (activationQueueLength %d): KEDA's keda_scaler_metrics_value read %s after %.0fs; GET /apis/external.metrics.k8s.io/v1beta1/namespaces/%s/%s (the HPA %s's metric, through the API server to KEDA's adapter) read %s after %.0fs more; replicas held at 0 for %s; %d still queued; no consumer process started",
		n, s.ActivationQueueLength, fmtFloat(seen.value), seen.after.Seconds(), s.Namespace, metric, hpa, fmtFloat(float64(n)), metricAfter.Seconds(), hold, depth), nil
}

// Step 8 (c): verify, run against this local stack exactly as a user runs it against Azure,
// sends a burst: KEDA scales 0 -> 1 within a polling interval (+ slack), the real consumer
// process drains the queue, and every message is stored once.
//
// The app pool has no node when the burst comes (Karpenter consolidated the one of step 1 once
// KEDA emptied it): the consumer's pods wait Pending until Karpenter launches a node from the
// stack's NodePool and that node turns Ready.
func (r *runner) stepBurstScalesUp(ctx context.Context) (string, error) {
	if err := r.noAppNode(ctx); err != nil {
		return "", fmt.Errorf("before the burst: %w", err)
	}
	start := time.Now()
	rep, err := r.verify(ctx, burst, "-skip-scale-down")
	if err != nil {
		return "", err
	}
	if rep.ScaleMode != components.ScaleModeScaledObject || rep.Burst != burst {
		return "", fmt.Errorf("verify checked %s with a burst of %d, want ScaledObject and %d: %w", rep.ScaleMode, rep.Burst, burst, errStep)
	}
	late, claims, err := r.lateNodes(ctx, start)
	if err != nil {
		return "", err
	}
	// verify, as on AKS, names the NodeClaims launched for the burst with their times.
	nodes := checkEvidence(rep, verify.CheckNodes)
	i := strings.Index(nodes, "NodeClaims created since the burst")
	if i < 0 || !strings.Contains(nodes[i:], claims[0].name) {
		return "", fmt.Errorf("verify's nodes check does not list the NodeClaims launched for the burst (%s): %q: %w", claims[0].name, nodes, errStep)
	}
	return fmt.Sprintf("no app pool node before the burst; %s; first entity stored %s after the burst's first message; verify's nodes check: %s; verify: %s",
		late, firstEntity(rep), clip(nodes[max(0, i-2):], 400), summarize(rep)), nil
}

// Step 9 (d): once the queue is empty, KEDA scales the Deployment back to 0 after the cooldown;
// the consumer's process gets SIGTERM and exits 0 (drained).
func (r *runner) stepBackToZero(ctx context.Context) (string, error) {
	s := r.want.settings
	start := time.Now()
	before := len(r.mirror.Events())
	took, err := r.waitReplicas(ctx, s, 0, time.Duration(s.CooldownPeriod+s.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", err
	}
	// The pod's deletion reaches the process a moment later.
	deadline := time.Now().Add(time.Duration(s.TerminationGracePeriodSeconds)*time.Second + 10*time.Second)
	for len(r.mirror.Running()) > 0 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	if run := r.mirror.Running(); len(run) > 0 {
		return "", fmt.Errorf("consumer processes still running for %v after scale-down: %w", run, errStep)
	}
	var exits []string
	for _, e := range r.mirror.Events()[before:] {
		switch e.Kind {
		case "exited":
			if e.ExitCode != 0 {
				return "", fmt.Errorf("consumer for pod %s exited %d after SIGTERM (want 0: drained): %s: %w", e.Pod, e.ExitCode, e.Detail, errStep)
			}
			exits = append(exits, fmt.Sprintf("%s exit 0", e.Pod))
		case "killed":
			return "", fmt.Errorf("consumer for pod %s had to be SIGKILLed: %w", e.Pod, errStep)
		}
	}
	if len(exits) == 0 {
		return "", fmt.Errorf("no consumer process stopped on the scale-down: %w", errStep)
	}
	return fmt.Sprintf("replicas 1 -> 0 %.0fs after the step began (cooldownPeriod %ds, pollingInterval %ds); SIGTERM to the pod's process: %s; all stopped after %.0fs",
		took.Seconds(), s.CooldownPeriod, s.PollingInterval, strings.Join(exits, ", "), time.Since(start).Seconds()), nil
}

// Step 12 (g): in ScaledJob mode a burst makes KEDA create exactly the Jobs its read of the
// queue calls for, min(ceil(depth/jobQueueLength), maxReplicaCount); each Job's pod runs a real
// consumer that drains the queue and exits 0, which completes the Job. Then back to ScaledObject.
func (r *runner) stepScaledJob(ctx context.Context) (string, error) {
	s := r.want.settings
	s.ScaleMode = components.ScaleModeScaledJob
	// A bound below maxReplicaCount, so that a strategy which creates Jobs for pods still
	// Pending would show: 3 Jobs for the whole burst, up to 20 allowed.
	s.JobQueueLength, s.JobMaxReplicas = scaledJobBurst/3, scaledJobMaxReplicas
	if err := s.Validate(); err != nil {
		return "", err
	}
	r.want.settings = s
	o, err := r.eng.up(ctx)
	if err != nil {
		return "", engineError("up", o, err)
	}
	sj := object{gvrScaledJob, "ScaledJob", s.Namespace, s.ScaledJobName}
	ready, err := r.waitCondition(ctx, sj, "Ready", 60*time.Second)
	if err != nil {
		return "", err
	}
	if ready.status != "True" {
		return "", fmt.Errorf("KEDA reports ScaledJob %s not Ready: %s: %w", s.ScaledJobName, ready.message, errStep)
	}
	deployed, err := r.asDeployed(ctx, sj, s)
	if err != nil {
		return "", err
	}
	// KEDA's reads of the burst decide how many Jobs it calls for (the "default" strategy:
	// ceil(depth / jobQueueLength) minus the Jobs not finished, at most maxReplicaCount): a poll
	// that lands mid-burst reads less than the burst and the next one adds the rest, so the
	// bound is taken from KEDA's own metric at its largest, not assumed.
	//
	// The app pool has no node when the burst comes: the Jobs' pods wait Pending for Karpenter's
	// node while KEDA keeps polling, and KEDA must not create more Jobs for them.
	if err := r.noAppNode(ctx); err != nil {
		return "", fmt.Errorf("before the burst: %w", err)
	}
	start := time.Now()
	reads := r.watchKEDAMetric(ctx, s.ScaledJobName)
	jobSamples := r.sampleJobs(ctx, s.ScaledJobName)
	eligibleSamples := r.sampleEligible(ctx)
	rep, err := r.verify(ctx, scaledJobBurst)
	reads.stop()
	maxRead := reads.max
	samples := jobSamples()
	eligible := eligibleSamples()
	if err != nil {
		return "", err
	}
	if maxRead <= 0 {
		return "", fmt.Errorf("KEDA's keda_scaler_metrics_value for %s never read the burst: %w", s.ScaledJobName, errStep)
	}
	want := min(int(math.Ceil(maxRead/float64(s.JobQueueLength))), s.JobMaxReplicas)
	if rep.JobsCreated != want {
		return "", fmt.Errorf("KEDA created %d Jobs; its largest read of the burst was %s messages, which calls for min(ceil(%s/%d), %d) = %d: %w",
			rep.JobsCreated, fmtFloat(maxRead), fmtFloat(maxRead), s.JobQueueLength, s.JobMaxReplicas, want, errStep)
	}
	jobs, err := r.kube.cs.BatchV1().Jobs(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "scaledjob.keda.sh/name=" + s.ScaledJobName})
	if err != nil {
		return "", err
	}
	succeeded := 0
	var lastDone time.Time
	for _, j := range jobs.Items {
		if j.Status.Succeeded > 0 {
			succeeded++
		}
		if j.Status.Failed > 0 {
			return "", fmt.Errorf("the Job %s failed (%d pods): %w", j.Name, j.Status.Failed, errStep)
		}
		if j.Status.CompletionTime != nil && j.Status.CompletionTime.After(lastDone) {
			lastDone = j.Status.CompletionTime.Time
		}
	}
	if succeeded != len(jobs.Items) {
		return "", fmt.Errorf("%d of %d Jobs completed: %w", succeeded, len(jobs.Items), errStep)
	}
	late, err := r.jobsWhileNodesArrive(ctx, start, want, samples, eligible, lastDone)
	if err != nil {
		return "", err
	}
	evidence := fmt.Sprintf("%s; verify: %s; KEDA's largest read %s of %d sent; Jobs created %d = min(ceil(%s/%d), %d), %d succeeded; %s",
		deployed, summarize(rep), fmtFloat(maxRead), scaledJobBurst, rep.JobsCreated, fmtFloat(maxRead), s.JobQueueLength, s.JobMaxReplicas, succeeded, late)

	s.ScaleMode = components.ScaleModeScaledObject
	s.JobQueueLength, s.JobMaxReplicas = e2eJobQueueLength, e2eJobMaxReplicas
	r.want.settings = s
	if o, err = r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	so := object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName}
	if ready, err = r.waitCondition(ctx, so, "Ready", 60*time.Second); err != nil {
		return "", err
	}
	if ready.status != "True" {
		return "", fmt.Errorf("back in ScaledObject mode, KEDA reports it not Ready: %s: %w", ready.message, errStep)
	}
	if _, err := r.waitReplicas(ctx, s, 0, time.Duration(s.CooldownPeriod+s.PollingInterval)*time.Second+slack); err != nil {
		return "", err
	}
	return evidence + "; back to ScaledObject: Ready, at 0", nil
}

// Step 14 (i): with the stack's own TriggerAuthentication (workload identity, no substitution),
// the same operator accepts the trigger's metadata and fails only at getting a token: there is
// no projected service account token outside AKS. KEDA rebuilds a ScaledObject's scalers when
// the ScaledObject changes, not when its TriggerAuthentication does (its TriggerAuthentication
// controller only counts references), so the step also moves pollingInterval by one second.
func (r *runner) stepProductionAuth(ctx context.Context) (string, error) {
	s := r.want.settings
	restore := func() {
		r.want.azuriteAuth = true
		r.want.settings = s
	}
	defer restore()
	changed := s
	changed.PollingInterval++
	r.want.azuriteAuth = false
	r.want.settings = changed
	o, err := r.eng.up(ctx)
	if err != nil {
		return "", engineError("up", o, err)
	}
	ta, err := r.kube.get(ctx, object{gvrTriggerAuth, "TriggerAuthentication", s.Namespace, s.TriggerAuthenticationName})
	if err != nil || ta == nil {
		return "", fmt.Errorf("reading the TriggerAuthentication: %v: %w", err, errStep)
	}
	provider := nestedString(ta, "spec", "podIdentity", "provider")
	identity := nestedString(ta, "spec", "podIdentity", "identityId")
	if provider != "azure-workload" || identity != fakeClientID {
		return "", fmt.Errorf("the TriggerAuthentication is not the stack's (podIdentity %q, identityId %q): %w", provider, identity, errStep)
	}
	so := object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName}
	msg, err := r.waitKEDAText(ctx, so, tokenFailures, 3*time.Duration(changed.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", err
	}
	if texts, _ := r.kedaTexts(ctx, so); containsAny(strings.Join(texts, "\n"), "error parsing", "missing required parameter") {
		return "", fmt.Errorf("KEDA refused the stack's trigger metadata: %s: %w", strings.Join(texts, " | "), errStep)
	}
	wi := ""
	if log, err := os.ReadFile(r.keda.LogPath); err == nil && bytes.Contains(log, []byte("error starting azure workload-identity token provider")) {
		wi = "; its log: \"error starting azure workload-identity token provider\" (no projected token, tenant or token file outside AKS)"
	}
	// Back to the substitution for the steps after this one.
	restore()
	if o, err = r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	if _, err := r.waitConditionStatus(ctx, so, "Ready", "True", 60*time.Second); err != nil {
		return "", err
	}
	return fmt.Sprintf("TriggerAuthentication podIdentity azure-workload, identityId %s; KEDA accepted the metadata and failed at the token: %q%s", identity, clip(msg, 220), wi), nil
}

// tokenFailures are fragments of what azidentity says when no credential of KEDA's chain can
// get a token (ChainedTokenCredential: "failed to acquire a token"; the workload identity
// credential without the webhook's projected token file).
var tokenFailures = []string{"failed to acquire a token", "no token file", "AZURE_FEDERATED_TOKEN_FILE"}

// Step 15 (j): a misspelt trigger key, which no schema checks, is refused by the operator with
// its own message; without it, the ScaledObject is Ready again.
func (r *runner) stepOperatorRefusesTypo(ctx context.Context) (string, error) {
	s := r.want.settings
	b := breaks["trigger-metadata-typo"]
	changed := s
	changed.PollingInterval++ // see stepProductionAuth: a new generation, whatever the transform does
	r.want.brk, r.want.settings = "trigger-metadata-typo", changed
	o, err := r.eng.up(ctx)
	r.want.brk, r.want.settings = r.brk, s
	if err != nil {
		return "", engineError("up", o, err)
	}
	so := object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName}
	msg, err := r.waitKEDAText(ctx, so, []string{b.refusal}, 60*time.Second)
	if err != nil {
		return "", err
	}
	if o, err = r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	ready, err := r.waitConditionStatus(ctx, so, "Ready", "True", 60*time.Second)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the API server stored it; KEDA refused it: %q; fixed: Ready=%s again", clip(msg, 200), ready.status), nil
}

// kedaOK fails with KEDA's own words when it does not report the ScaledObject Ready: the
// check that makes E2E_BREAK=trigger-metadata-typo fail at the first step the operator runs.
func (r *runner) kedaRefusal(ctx context.Context, so object) error {
	texts, err := r.kedaTexts(ctx, so)
	if err != nil {
		return err
	}
	return fmt.Errorf("KEDA refused %s: %s: %w", so, strings.Join(texts, " | "), errStep)
}

// ---- helpers --------------------------------------------------------------------------------

type cond struct{ status, reason, message string }

// condition reads one status condition of a KEDA object.
func (r *runner) condition(ctx context.Context, o object, typ string) (cond, error) {
	u, err := r.kube.get(ctx, o)
	if err != nil {
		return cond{}, err
	}
	if u == nil {
		return cond{}, fmt.Errorf("%s is missing: %w", o, errStep)
	}
	return conditionOf(u, typ), nil
}

func conditionOf(u *unstructured.Unstructured, typ string) cond {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			str := func(k string) string { s, _ := m[k].(string); return s }
			return cond{status: str("status"), reason: str("reason"), message: str("message")}
		}
	}
	return cond{status: "Unknown"}
}

// waitCondition waits until the condition is set to True or False (KEDA has reconciled).
func (r *runner) waitCondition(ctx context.Context, o object, typ string, timeout time.Duration) (cond, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := r.condition(ctx, o, typ)
		if err != nil {
			return c, err
		}
		if c.status == "True" || c.status == "False" {
			if c.status == "False" && typ == "Ready" {
				return c, r.kedaRefusal(ctx, o)
			}
			return c, nil
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return c, fmt.Errorf("KEDA set no %s condition on %s within %s (is the operator running? %w)", typ, o, timeout, err)
		}
	}
}

// waitConditionStatus waits until the condition has the wanted status.
func (r *runner) waitConditionStatus(ctx context.Context, o object, typ, want string, timeout time.Duration) (cond, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := r.condition(ctx, o, typ)
		if err != nil {
			return c, err
		}
		if c.status == want {
			return c, nil
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return c, fmt.Errorf("%s %s=%s (%s) after %s, want %s: %w", o, typ, c.status, c.message, timeout, want, errStep)
		}
	}
}

// kedaTexts are what KEDA says about an object: its condition messages and its events.
func (r *runner) kedaTexts(ctx context.Context, o object) ([]string, error) {
	u, err := r.kube.get(ctx, o)
	if err != nil {
		return nil, err
	}
	var texts []string
	if u != nil {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if msg, _ := m["message"].(string); msg != "" {
				texts = append(texts, fmt.Sprintf("%v=%v: %s", m["type"], m["status"], msg))
			}
		}
	}
	evs, err := r.kube.cs.CoreV1().Events(o.namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + o.name})
	if err != nil {
		return nil, err
	}
	for _, e := range evs.Items {
		if e.Type == corev1.EventTypeWarning {
			texts = append(texts, e.Reason+": "+e.Message)
		}
	}
	return texts, nil
}

// waitKEDAText waits until one of KEDA's texts about o contains one of the fragments.
func (r *runner) waitKEDAText(ctx context.Context, o object, fragments []string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		texts, err := r.kedaTexts(ctx, o)
		if err != nil {
			return "", err
		}
		for _, t := range texts {
			if containsAny(t, fragments...) {
				return t, nil
			}
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return "", fmt.Errorf("KEDA said nothing containing %q about %s within %s (it said: %s): %w", fragments, o, timeout, strings.Join(texts, " | "), errStep)
		}
	}
}

func (r *runner) waitTick(ctx context.Context, deadline time.Time) error {
	if err := r.cluster.Exited(); err != nil {
		return err
	}
	if time.Now().After(deadline) {
		return errStep
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
		return nil
	}
}

// replicas is the Deployment's spec.replicas (what KEDA sets).
func (r *runner) replicas(ctx context.Context, s components.ConsumerSettings) (int32, error) {
	d, err := r.kube.cs.AppsV1().Deployments(s.Namespace).Get(ctx, s.DeploymentName, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if d.Spec.Replicas == nil {
		return 1, nil
	}
	return *d.Spec.Replicas, nil
}

// waitReplicas waits until spec.replicas is want and returns how long that took.
func (r *runner) waitReplicas(ctx context.Context, s components.ConsumerSettings, want int32, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		n, err := r.replicas(ctx, s)
		if err != nil {
			return 0, err
		}
		if n == want {
			return time.Since(start), nil
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return 0, fmt.Errorf("the Deployment %s at %d replicas after %s, want %d: %w", s.DeploymentName, n, timeout, want, err)
		}
	}
}

// holdReplicas fails if spec.replicas leaves want during d.
func (r *runner) holdReplicas(ctx context.Context, s components.ConsumerSettings, want int32, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		n, err := r.replicas(ctx, s)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("the Deployment %s went to %d replicas, want it held at %d: %w", s.DeploymentName, n, want, errStep)
		}
		if err := r.cluster.Exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

type metricSeen struct {
	value float64
	after time.Duration
}

// waitKEDAMetric waits until KEDA's own keda_scaler_metrics_value for the ScaledObject reads want:
// proof that the operator read the queue, not just that nothing happened.
func (r *runner) waitKEDAMetric(ctx context.Context, s components.ConsumerSettings, want float64, timeout time.Duration) (metricSeen, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := "no sample"
	for {
		samples, err := kedaMetrics(ctx, r.keda)
		if err == nil {
			for series, v := range samples {
				if strings.HasPrefix(series, "keda_scaler_metrics_value{") && strings.Contains(series, `scaledObject="`+s.ScaledObjectName+`"`) {
					last = fmt.Sprintf("%s = %s", series, fmtFloat(v))
					if v == want {
						return metricSeen{value: v, after: time.Since(start)}, nil
					}
				}
			}
		} else {
			last = err.Error()
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return metricSeen{}, fmt.Errorf("KEDA's keda_scaler_metrics_value never read %s within %s (last: %s): %w", fmtFloat(want), timeout, last, err)
		}
	}
}

// metricWatch samples KEDA's keda_scaler_metrics_value for one scaler every 250 ms and keeps
// the first value above zero and the largest.
type metricWatch struct {
	cancel     context.CancelFunc
	done       chan struct{}
	first, max float64
}

func (r *runner) watchKEDAMetric(ctx context.Context, scaler string) *metricWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &metricWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if samples, err := kedaMetrics(ctx, r.keda); err == nil {
				for series, v := range samples {
					if strings.HasPrefix(series, "keda_scaler_metrics_value{") && strings.Contains(series, `scaledObject="`+scaler+`"`) && v > 0 {
						if w.first <= 0 {
							w.first = v
						}
						w.max = max(w.max, v)
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *metricWatch) stop() float64 {
	w.cancel()
	<-w.done
	return w.first
}

// send puts n messages on the queue with the producer's code.
func (r *runner) send(ctx context.Context, n int, text string) error {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	sum, err := producer.Run(ctx, r.queue, producer.Options{Count: n, Concurrency: 4, Text: text}, io.Discard, log)
	if err != nil {
		return fmt.Errorf("sending %d messages: %w", n, err)
	}
	if sum.Sent != int64(n) {
		return fmt.Errorf("sent %d of %d messages: %w", sum.Sent, n, errStep)
	}
	return nil
}

// depth is the queue's approximate message count.
func (r *runner) depth(ctx context.Context) (int, error) {
	p, err := r.queue.GetProperties(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reading the queue's depth: %w", err)
	}
	if p.ApproximateMessagesCount == nil {
		return 0, nil
	}
	return int(*p.ApproximateMessagesCount), nil
}

var _ producer.Enqueuer = (*azqueue.QueueClient)(nil)

// verify runs the verify command against this stack, as a user would after `pulumi up`: it reads
// the stack's outputs through the Pulumi CLI, the cluster through the stack's kubeconfig, and
// the queue through Azurite's connection string (the one substitution). Its output goes to the
// engine log; its JSON report comes back.
func (r *runner) verify(ctx context.Context, count int, extra ...string) (verify.Report, error) {
	args := append([]string{"-stack", stackName, "-cwd", r.work, "-count", fmt.Sprint(count), "-slack", slack.String(), "-timeout", "3m", "-json"}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(r.work, "bin", "verify"), args...)
	cmd.Dir = r.work
	env := []string{"AZURE_STORAGE_CONNECTION_STRING=" + r.azurite.ConnectionString(), "TMPDIR=" + os.TempDir()}
	for k, v := range pulumiEnv(r.tools, r.work) {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, r.log)
	cmd.Stderr = io.MultiWriter(&out, r.log)
	fmt.Fprintf(r.log, "==== verify %s\n", strings.Join(args, " "))
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rep verify.Report
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); jerr != nil {
		return rep, fmt.Errorf("verify (%v) printed no JSON report: %s: %w", runErr, clip(out.String(), 1500), errStep)
	}
	if runErr != nil {
		var failed []string
		for _, c := range rep.Checks {
			if !c.OK && !c.Skipped {
				failed = append(failed, c.Name+": "+c.Evidence)
			}
		}
		return rep, fmt.Errorf("verify failed (%v): %s: %w", runErr, strings.Join(failed, "; "), errStep)
	}
	return rep, nil
}

// summarize is verify's checks in one line: each check with its time and evidence.
func summarize(rep verify.Report) string {
	var parts []string
	for _, c := range rep.Checks {
		state := "ok"
		if c.Skipped {
			state = "skipped"
		} else if !c.OK {
			state = "FAILED"
		}
		parts = append(parts, fmt.Sprintf("%s %s %.0fs (%s)", c.Name, state, c.Seconds, clip(c.Evidence, 160)))
	}
	return strings.Join(parts, "; ")
}

func containsAny(s string, frags ...string) bool {
	for _, f := range frags {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func fmtFloat(v float64) string { return fmt.Sprintf("%g", v) }

// kedaMetrics reads the operator's own Prometheus metrics (series -> value).
func kedaMetrics(ctx context.Context, k *localcluster.KEDA) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+k.MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("KEDA's /metrics: %s", resp.Status)
	}
	return procs.ParseMetrics(string(body)), nil
}

// asDeployed checks that the ScaledObject or ScaledJob the operator works on is the stack's own:
// every field of the spec the program registered (recordScaler) is on the API server unchanged,
// and the scaler settings are the ones the step's ConsumerSettings give. It returns them as
// evidence.
func (r *runner) asDeployed(ctx context.Context, o object, s components.ConsumerSettings) (string, error) {
	want := r.want.scalers[o.kind]
	if want == nil {
		return "", fmt.Errorf("the program registered no %s: %w", o.kind, errStep)
	}
	u, err := r.kube.get(ctx, o)
	if err != nil {
		return "", err
	}
	if u == nil {
		return "", fmt.Errorf("the API server has no %s: %w", o, errStep)
	}
	wantSpec, err := jsonNormal(want)
	if err != nil {
		return "", fmt.Errorf("the registered %s spec: %w", o.kind, err)
	}
	gotSpec, err := jsonNormal(u.Object["spec"])
	if err != nil {
		return "", fmt.Errorf("the %s spec on the API server: %w", o.kind, err)
	}
	if diffs := subsetDiffs("spec", wantSpec, gotSpec); len(diffs) > 0 {
		return "", fmt.Errorf("the %s on the API server is not what the stack registered: %s: %w", o, strings.Join(diffs, "; "), errStep)
	}

	queueLength, minR, maxR := s.QueueLength, s.MinReplicas, s.MaxReplicas
	if o.kind == "ScaledJob" {
		queueLength, minR, maxR = s.JobQueueLength, 0, s.JobMaxReplicas
	}
	spec, _ := gotSpec.(map[string]any)
	triggers, _ := spec["triggers"].([]any)
	if len(triggers) != 1 {
		return "", fmt.Errorf("%s has %d triggers, want the one azure-queue trigger: %w", o, len(triggers), errStep)
	}
	trigger, _ := triggers[0].(map[string]any)
	md, _ := trigger["metadata"].(map[string]any)
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"triggers[0].type", trigger["type"], "azure-queue"},
		{"triggers[0].metadata.queueName", md["queueName"], queueName},
		{"triggers[0].metadata.queueLength", md["queueLength"], fmt.Sprint(queueLength)},
		{"triggers[0].metadata.activationQueueLength", md["activationQueueLength"], fmt.Sprint(s.ActivationQueueLength)},
		{"triggers[0].metadata.queueLengthStrategy", md["queueLengthStrategy"], components.QueueLengthStrategy},
		{"pollingInterval", spec["pollingInterval"], float64(s.PollingInterval)},
		{"minReplicaCount", spec["minReplicaCount"], float64(minR)},
		{"maxReplicaCount", spec["maxReplicaCount"], float64(maxR)},
	}
	if o.kind == "ScaledObject" {
		checks = append(checks, struct {
			field string
			got   any
			want  any
		}{"cooldownPeriod", spec["cooldownPeriod"], float64(s.CooldownPeriod)})
	} else {
		strategy, _ := spec["scalingStrategy"].(map[string]any)
		checks = append(checks, struct {
			field string
			got   any
			want  any
		}{"scalingStrategy.strategy", strategy["strategy"], s.JobScalingStrategy})
	}
	var bad []string
	for _, c := range checks {
		if c.got != c.want {
			bad = append(bad, fmt.Sprintf("%s is %v, want %v", c.field, c.got, c.want))
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("%s is not set as the stack's settings say: %s: %w", o, strings.Join(bad, "; "), errStep)
	}
	ev := fmt.Sprintf("%s as the stack deploys it: azure-queue %s, queueLength %d, activationQueueLength %d, queueLengthStrategy %s, pollingInterval %ds, replicas %d..%d",
		o.kind, queueName, queueLength, s.ActivationQueueLength, components.QueueLengthStrategy, s.PollingInterval, minR, maxR)
	if o.kind == "ScaledObject" {
		ev += fmt.Sprintf(", cooldownPeriod %ds", s.CooldownPeriod)
	} else {
		ev += ", scalingStrategy " + s.JobScalingStrategy
	}
	return ev, nil
}

// jsonNormal round-trips v through JSON, so numbers are float64 on both sides of a comparison.
func jsonNormal(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(raw, &out)
}

// subsetDiffs lists where got lacks or differs from a field of want (got may have more fields:
// what the API server or a default adds).
func subsetDiffs(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s is %v, want an object", path, got)}
		}
		var diffs []string
		for _, k := range slices.Sorted(maps.Keys(w)) {
			diffs = append(diffs, subsetDiffs(path+"."+k, w[k], g[k])...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s is %v, want %d items", path, got, len(w))}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, subsetDiffs(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	default:
		if want != got {
			return []string{fmt.Sprintf("%s is %v, want %v", path, got, want)}
		}
		return nil
	}
}
