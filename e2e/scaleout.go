package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/localcluster"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// The scaling-out steps' stack config and load, set in setup like the rest of the e2e's config.
const (
	// e2eConsumerBatchSize and e2eConsumerConcurrency make the consumer take one message at a
	// time, so that a burst outlasts KEDA's 0 -> 1 and the HPA's next sync and the HPA has to
	// scale out (at 32 x 16 one process drains thousands of messages in seconds on loopback).
	e2eConsumerBatchSize   = 1
	e2eConsumerConcurrency = 1
	// e2eHPASyncPeriod is the controller manager's --horizontal-pod-autoscaler-sync-period:
	// 3 s instead of 15 s, so the HPA's steps fit the run (AKS keeps Kubernetes' 15 s).
	e2eHPASyncPeriod = 3 * time.Second
	// e2eScaleDownStabilization is the stack's scaleDownStabilizationSeconds here (default 60):
	// long enough that a burst which the consumers keep up with for a few reads (verify's
	// producer and the consumers share 2 cores and one Azurite) keeps its replicas, short enough
	// for the run.
	e2eScaleDownStabilization = 30
	// scaleOutBurst is the scale-out step's burst: at queueLength 25 (step 3 halves 50) it calls
	// for ceil(3000/25) = 120 replicas, capped at maxReplicaCount (8 after step 3).
	scaleOutBurst = 3000
	// e2eScaleInCooldown is cooldownPeriod during the scale-out and scale-in steps: longer than
	// e2eScaleDownStabilization plus the HPA's sync, so the HPA takes N -> 1 before KEDA 1 -> 0.
	e2eScaleInCooldown = 45
)

// scalePoint is one sample of the scaling loop.
type scalePoint struct {
	at       time.Duration
	replicas int32  // the Deployment's spec.replicas
	running  int    // consumer processes the mirror runs
	desired  int32  // the HPA's status.desiredReplicas
	metric   string // the HPA's currentMetrics[0] (external, averageValue), "" when none
}

// sampler records the Deployment, the mirror and the HPA every 500 ms until stopped.
type sampler struct {
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	points []scalePoint
}

func (r *runner) sampleScaling(ctx context.Context, s components.ConsumerSettings, hpaName string) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	sm := &sampler{start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		for {
			p := scalePoint{at: time.Since(sm.start), running: len(r.mirror.Running())}
			if n, err := r.replicas(ctx, s); err == nil {
				p.replicas = n
			} else {
				p.replicas = -1
			}
			if h, err := r.kube.cs.AutoscalingV2().HorizontalPodAutoscalers(s.Namespace).Get(ctx, hpaName, metav1.GetOptions{}); err == nil {
				p.desired = h.Status.DesiredReplicas
				p.metric = hpaMetric(h)
			}
			sm.mu.Lock()
			sm.points = append(sm.points, p)
			sm.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return sm
}

func (sm *sampler) snapshot() []scalePoint {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]scalePoint(nil), sm.points...)
}

func (sm *sampler) stop() []scalePoint {
	sm.cancel()
	<-sm.done
	return sm.snapshot()
}

// hpaMetric is the HPA's current value of its first metric, as it reads it from KEDA's adapter.
func hpaMetric(h *autoscalingv2.HorizontalPodAutoscaler) string {
	for _, m := range h.Status.CurrentMetrics {
		if m.External == nil {
			continue
		}
		switch {
		case m.External.Current.AverageValue != nil:
			return m.External.Metric.Name + " averageValue " + fmtFloat(m.External.Current.AverageValue.AsApproximateFloat64())
		case m.External.Current.Value != nil:
			return m.External.Metric.Name + " value " + fmtFloat(m.External.Current.Value.AsApproximateFloat64())
		}
	}
	return ""
}

// timeline is the replicas over time: the first sample and every change, "0 (0.0s) -> 1 (4.5s)".
func timeline(points []scalePoint) string {
	var parts []string
	last := int32(-2)
	for _, p := range points {
		if p.replicas != last {
			parts = append(parts, fmt.Sprintf("%d (%.1fs)", p.replicas, p.at.Seconds()))
			last = p.replicas
		}
	}
	return strings.Join(parts, " -> ")
}

func peakReplicas(points []scalePoint) (peak int32, running int) {
	for _, p := range points {
		peak = max(peak, p.replicas)
		running = max(running, p.running)
	}
	return peak, running
}

// hpaName is the HPA KEDA made for the ScaledObject (status.hpaName).
func (r *runner) hpaName(ctx context.Context, s components.ConsumerSettings) (string, error) {
	u, err := r.kube.get(ctx, object{gvrScaledObject, "ScaledObject", s.Namespace, s.ScaledObjectName})
	if err != nil {
		return "", err
	}
	if u == nil {
		return "", fmt.Errorf("the ScaledObject %s is missing: %w", s.ScaledObjectName, errStep)
	}
	name := nestedString(u, "status", "hpaName")
	if name == "" {
		return "", fmt.Errorf("KEDA has not recorded an HPA for the ScaledObject %s (status.hpaName empty): %w", s.ScaledObjectName, errStep)
	}
	return name, nil
}

// externalMetric reads the HPA's external metric through the API server, the way the HPA
// controller does: GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>
// ?labelSelector=<the HPA's selector>, which the aggregation layer proxies to KEDA's adapter.
func (r *runner) externalMetric(ctx context.Context, s components.ConsumerSettings, hpaName string) (name string, value float64, err error) {
	h, err := r.kube.cs.AutoscalingV2().HorizontalPodAutoscalers(s.Namespace).Get(ctx, hpaName, metav1.GetOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("reading the HPA %s: %w", hpaName, err)
	}
	if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].External == nil {
		return "", 0, fmt.Errorf("the HPA %s has %d metrics, want KEDA's one external metric: %w", hpaName, len(h.Spec.Metrics), errStep)
	}
	m := h.Spec.Metrics[0].External.Metric
	req := r.kube.cs.Discovery().RESTClient().Get().
		AbsPath("/apis/external.metrics.k8s.io/v1beta1/namespaces", s.Namespace, m.Name)
	if m.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(m.Selector)
		if err != nil {
			return m.Name, 0, err
		}
		if !sel.Empty() {
			req = req.Param("labelSelector", sel.String())
		}
	}
	raw, err := req.DoRaw(ctx)
	if err != nil {
		return m.Name, 0, fmt.Errorf("GET external metric %s through the API server: %w: %s", m.Name, err, clip(string(raw), 300))
	}
	var list struct {
		Items []struct {
			MetricName string `json:"metricName"`
			Value      string `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return m.Name, 0, fmt.Errorf("the external metric %s: %w: %s", m.Name, err, clip(string(raw), 300))
	}
	if len(list.Items) != 1 {
		return m.Name, 0, fmt.Errorf("the external metric %s has %d values, want 1: %s: %w", m.Name, len(list.Items), clip(string(raw), 300), errStep)
	}
	q, err := resource.ParseQuantity(list.Items[0].Value)
	if err != nil {
		return m.Name, 0, fmt.Errorf("the external metric %s: value %q: %w", m.Name, list.Items[0].Value, err)
	}
	return m.Name, q.AsApproximateFloat64(), nil
}

// waitExternalMetric polls the external metric until it reads want.
func (r *runner) waitExternalMetric(ctx context.Context, s components.ConsumerSettings, hpaName string, want float64, timeout time.Duration) (string, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := "nothing read"
	for {
		name, v, err := r.externalMetric(ctx, s, hpaName)
		if err == nil {
			last = fmt.Sprintf("%s = %s", name, fmtFloat(v))
			if v == want {
				return name, time.Since(start), nil
			}
		} else {
			last = err.Error()
		}
		if err := r.waitTick(ctx, deadline); err != nil {
			return "", 0, fmt.Errorf("the external metric never read %s through the API server within %s (last: %s): %w", fmtFloat(want), timeout, last, err)
		}
	}
}

// eventsSince are the events about one object with the reason, last seen at or after since
// (the recorder folds repeats into one event and moves its lastTimestamp), oldest first.
func (r *runner) eventsSince(ctx context.Context, ns, name, reason string, since time.Time) ([]corev1.Event, error) {
	return r.eventsWhere(ctx, ns, "involvedObject.name="+name+",reason="+reason, since, nil)
}

// eventsAwait is eventsSince, asked again until holds is true of the answer or within has passed:
// a controller records its event after the change it made (client-go's recorder posts, or folds
// into an earlier event's count and lastTimestamp, from a goroutine of its own), so the change can
// be seen a moment before the event is. It returns the last answer either way.
func (r *runner) eventsAwait(ctx context.Context, ns, name, reason string, since time.Time, within time.Duration, holds func([]corev1.Event) bool) ([]corev1.Event, error) {
	deadline := time.Now().Add(within)
	for {
		evs, err := r.eventsSince(ctx, ns, name, reason, since)
		if err != nil || holds(evs) || !time.Now().Before(deadline) {
			return evs, err
		}
		select {
		case <-ctx.Done():
			return evs, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// eventsWhere are the events in ns that match the field selector and keep (nil: all), last seen
// at or after since, oldest first.
func (r *runner) eventsWhere(ctx context.Context, ns, fields string, since time.Time, keep func(corev1.Event) bool) ([]corev1.Event, error) {
	evs, err := r.kube.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields})
	if err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, e := range evs.Items {
		t := e.LastTimestamp.Time
		if t.IsZero() {
			t = e.EventTime.Time
		}
		// Event times have second precision.
		if !t.Before(since.Truncate(time.Second)) && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastTimestamp.Before(&out[j].LastTimestamp) })
	return out, nil
}

func eventMessages(evs []corev1.Event) string {
	var ms []string
	for _, e := range evs {
		m := e.Message
		if e.Count > 1 {
			m += fmt.Sprintf(" (x%d)", e.Count)
		}
		ms = append(ms, fmt.Sprintf("%q", clip(m, 160)))
	}
	return strings.Join(ms, ", ")
}

// Step 10 (e): the HPA takes the consumer from 1 to many. verify sends a burst that calls for more
// than maxReplicaCount replicas; KEDA's operator takes the Deployment from 0 to 1 (its
// KEDAScaleTargetActivated event), then the HPA, reading KEDA's external metric through the
// aggregation layer, takes it to N >= 3 (its SuccessfulRescale events), never above
// maxReplicaCount; N consumer processes run; every message is stored once, nothing poisoned.
func (r *runner) stepScaleOut(ctx context.Context) (string, error) {
	s := r.want.settings
	want := min((scaleOutBurst+s.QueueLength-1)/s.QueueLength, s.MaxReplicas)
	if want < 3 {
		return "", fmt.Errorf("a burst of %d at queueLength %d and maxReplicaCount %d calls for %d replicas, want >= 3: %w", scaleOutBurst, s.QueueLength, s.MaxReplicas, want, errStep)
	}
	hpa, err := r.hpaName(ctx, s)
	if err != nil {
		return "", err
	}
	// For this step and the next, a cooldown longer than the HPA's scale-down window, so the
	// scale-in shows the HPA's half before KEDA's (with the stack's defaults, 10 s against 60 s,
	// a drained queue goes N -> 0 after the cooldown in one step: kedacore/keda#7770).
	s.CooldownPeriod = e2eScaleInCooldown
	r.want.settings = s
	if o, err := r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	start := time.Now()
	before := len(r.mirror.Events())
	r.scaleOut = r.sampleScaling(ctx, s, hpa)
	rep, err := r.verify(ctx, scaleOutBurst, "-skip-scale-down")
	points := r.scaleOut.snapshot()
	if err != nil {
		return "", fmt.Errorf("%w; replicas: %s", err, timeline(points))
	}
	// When the queue read 0, from verify's own count (from the burst's first message, which
	// verify sends a moment after it starts: so this is, if anything, early).
	r.drainedAt = start.Add(time.Duration(checkSeconds(rep, verify.CheckDrained) * float64(time.Second)))
	peak, _ := peakReplicas(points)
	if peak > int32(s.MaxReplicas) {
		return "", fmt.Errorf("replicas reached %d, above maxReplicaCount %d: %s: %w", peak, s.MaxReplicas, timeline(points), errStep)
	}
	if peak < 3 {
		return "", fmt.Errorf("the Deployment reached %d replicas at most, want >= 3 (the burst calls for %d): %s: %w", peak, want, timeline(points), errStep)
	}
	activated, err := r.eventsAwait(ctx, s.Namespace, s.ScaledObjectName, "KEDAScaleTargetActivated", start, eventLag, func(evs []corev1.Event) bool {
		return len(evs) > 0 && strings.Contains(evs[0].Message, "from 0 to 1")
	})
	if err != nil {
		return "", err
	}
	if len(activated) == 0 || !strings.Contains(activated[0].Message, "from 0 to 1") {
		return "", fmt.Errorf("no KEDAScaleTargetActivated event \"from 0 to 1\" from KEDA's operator since the burst (%s): %w", eventMessages(activated), errStep)
	}
	rescaled, err := r.eventsSince(ctx, s.Namespace, hpa, "SuccessfulRescale", start)
	if err != nil {
		return "", err
	}
	byHPA := 0
	for _, e := range rescaled {
		var size int
		if _, err := fmt.Sscanf(e.Message, "New size: %d;", &size); err == nil {
			if strings.Contains(e.Message, "above target") {
				byHPA = max(byHPA, size)
			}
		}
	}
	if byHPA < 3 {
		return "", fmt.Errorf("no SuccessfulRescale event from the HPA %s to 3 or more replicas \"above target\" (its events: %s): %w", hpa, eventMessages(rescaled), errStep)
	}
	// The HPA's own reading at its peak decision.
	atPeak := ""
	for _, p := range points {
		if p.desired == peak && p.metric != "" {
			atPeak = p.metric
			break
		}
	}
	if atPeak == "" {
		return "", fmt.Errorf("the HPA never reported a current external metric while it wanted %d replicas: %w", peak, errStep)
	}
	started := map[string]bool{}
	for _, e := range r.mirror.Events()[before:] {
		if e.Kind == localcluster.MirrorStarted {
			started[e.Pod] = true
		}
	}
	if len(started) < int(peak) {
		return "", fmt.Errorf("%d consumer processes started for %d replicas: %w", len(started), peak, errStep)
	}
	_, running := peakReplicas(points)
	first, drained := checkSeconds(rep, verify.CheckScaledUp), checkSeconds(rep, verify.CheckDrained)
	// The nodes of step 8 may still be there (Karpenter consolidates them one at a time).
	claims := r.nodeWatch.claimsSince(start)
	if len(claims) >= int(peak) {
		return "", fmt.Errorf("a node per pod: Karpenter launched %d NodeClaims for %d replicas: %s: %w", len(claims), peak, describeClaims(claims, start), errStep)
	}
	return fmt.Sprintf("burst %d (queueLength %d, maxReplicaCount %d: the HPA's target is %d replicas); KEDA's operator: %s; the HPA %s: %s; 1 -> %d made by the HPA; its currentMetrics then: %s; replicas never above %d: %s; %d consumer processes started, %d at once; Karpenter launched %d NodeClaims for them: %s; scaled up %.0fs, first entity %s, drained %.0fs after the burst's first message; verify: %s",
		scaleOutBurst, s.QueueLength, s.MaxReplicas, want, eventMessages(activated[:1]), hpa, eventMessages(rescaled), byHPA, atPeak, s.MaxReplicas,
		timeline(points), len(started), running, len(claims), describeClaims(claims, start), first, firstEntity(rep), drained, summarize(rep)), nil
}

// checkSeconds is when verify saw a check's outcome, counted from the burst's first message.
func checkSeconds(rep verify.Report, name string) float64 {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c.Seconds
		}
	}
	return -1
}

// checkEvidence is the evidence of one of verify's checks, "" when it did not run.
func checkEvidence(rep verify.Report, name string) string {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c.Evidence
		}
	}
	return ""
}

// firstEntity is what verify's stored-once check says about the first entity's time.
func firstEntity(rep verify.Report) string {
	for _, c := range rep.Checks {
		if c.Name == verify.CheckStoredOnce {
			if i := strings.Index(c.Evidence, "first stored "); i >= 0 {
				rest := c.Evidence[i+len("first stored "):]
				if j := strings.Index(rest, " after"); j >= 0 {
					return rest[:j]
				}
			}
		}
	}
	return "(not reported)"
}

// Step 11 (f): back from N to 0. With cooldownPeriod (set for these two steps) longer than the
// HPA's scale-down window, both halves show: once the backlog stops calling for N, the HPA takes
// N -> 1 after scaleDownStabilizationSeconds ("All metrics below target"), and KEDA's operator
// takes 1 -> 0 once the trigger has been inactive for the cooldown (KEDAScaleTargetDeactivated
// "from 1 to 0"). Every process exits 0; the replicas over time show it. Then the e2e's cooldown
// comes back.
func (r *runner) stepScaleIn(ctx context.Context) (string, error) {
	s := r.want.settings
	sm := r.scaleOut
	if sm == nil {
		return "", fmt.Errorf("the scale-out step did not run: %w", errStep)
	}
	defer sm.stop()
	hpa, err := r.hpaName(ctx, s)
	if err != nil {
		return "", err
	}
	window := time.Duration(s.ScaleDownStabilizationSeconds) * time.Second
	cooldown := time.Duration(s.CooldownPeriod) * time.Second
	if cooldown <= window+10*time.Second {
		return "", fmt.Errorf("cooldownPeriod %s must outlast scaleDownStabilizationSeconds %s for the HPA's half to show: %w", cooldown, window, errStep)
	}
	// N -> 1 by the HPA, within the cooldown.
	if _, err := r.waitReplicas(ctx, s, 1, cooldown+slack); err != nil {
		return "", fmt.Errorf("the HPA did not take the Deployment to 1 within the cooldown: %w; replicas: %s", err, timeline(sm.snapshot()))
	}
	down, err := r.eventsAwait(ctx, s.Namespace, hpa, "SuccessfulRescale", sm.start, eventLag, func(evs []corev1.Event) bool {
		for _, e := range evs {
			if strings.HasPrefix(e.Message, "New size: 1;") && strings.Contains(e.Message, "below target") {
				return true
			}
		}
		return false
	})
	if err != nil {
		return "", err
	}
	var toOne *corev1.Event
	for i := range down {
		if strings.HasPrefix(down[i].Message, "New size: 1;") && strings.Contains(down[i].Message, "below target") {
			toOne = &down[i]
		}
	}
	if toOne == nil {
		return "", fmt.Errorf("the Deployment is at 1, but the HPA %s reported no rescale to 1 (its events: %s): %w", hpa, eventMessages(down), errStep)
	}
	// The window: the HPA kept N for at least half of it after the drain (the backlog stops
	// calling for N a little before the queue reads 0; event times have 1 s precision).
	kept := toOne.LastTimestamp.Sub(r.drainedAt)
	if kept < window/2 {
		return "", fmt.Errorf("the HPA went to 1 replica %.0fs after the drain, before half its scale-down window (%s): is the stack's behaviour applied? %w", kept.Seconds(), window, errStep)
	}
	// 1 -> 0 by KEDA after the cooldown.
	toZero, err := r.waitReplicas(ctx, s, 0, cooldown+time.Duration(s.PollingInterval)*time.Second+slack)
	if err != nil {
		return "", fmt.Errorf("%w; replicas: %s", err, timeline(sm.snapshot()))
	}
	deactivated, err := r.eventsAwait(ctx, s.Namespace, s.ScaledObjectName, "KEDAScaleTargetDeactivated", sm.start, eventLag, func(evs []corev1.Event) bool {
		return len(evs) > 0 && strings.Contains(evs[len(evs)-1].Message, "from 1 to 0")
	})
	if err != nil {
		return "", err
	}
	if len(deactivated) == 0 || !strings.Contains(deactivated[len(deactivated)-1].Message, "from 1 to 0") {
		return "", fmt.Errorf("no KEDAScaleTargetDeactivated event \"from 1 to 0\" from KEDA's operator (%s): %w", eventMessages(deactivated), errStep)
	}
	off := deactivated[len(deactivated)-1].LastTimestamp.Sub(r.drainedAt)
	// Every consumer process of the scale-out has stopped, each with exit 0.
	deadline := time.Now().Add(time.Duration(s.TerminationGracePeriodSeconds)*time.Second + 10*time.Second)
	for len(r.mirror.Running()) > 0 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	if run := r.mirror.Running(); len(run) > 0 {
		return "", fmt.Errorf("consumer processes still running at 0 replicas: %v: %w", run, errStep)
	}
	exits := 0
	for _, e := range r.mirror.Events() {
		if e.Time.Before(sm.start) {
			continue
		}
		switch e.Kind {
		case localcluster.MirrorExited:
			if e.ExitCode != 0 {
				return "", fmt.Errorf("consumer for pod %s exited %d (want 0: drained): %s: %w", e.Pod, e.ExitCode, e.Detail, errStep)
			}
			exits++
		case localcluster.MirrorKilled:
			return "", fmt.Errorf("consumer for pod %s had to be SIGKILLed: %w", e.Pod, errStep)
		}
	}
	points := sm.stop()
	nodes, err := r.consolidated(ctx, sm.start)
	if err != nil {
		return "", err
	}
	evidence := fmt.Sprintf("the HPA took N -> 1 %.0fs after the drain (scaleDownStabilizationSeconds %d): %s; KEDA's operator took 1 -> 0 %.0fs after the drain (cooldownPeriod %d): %s, %.0fs after the Deployment reached 1; %d consumer processes exited 0, none killed; replicas over time since the burst: %s; %s",
		kept.Seconds(), s.ScaleDownStabilizationSeconds, eventMessages([]corev1.Event{*toOne}), off.Seconds(), s.CooldownPeriod,
		eventMessages(deactivated[len(deactivated)-1:]), toZero.Seconds(), exits, timeline(points), nodes)
	// The e2e's own cooldown again, for the steps after this one.
	s.CooldownPeriod = e2eCooldownPeriod
	r.want.settings = s
	if o, err := r.eng.up(ctx); err != nil {
		return "", engineError("up", o, err)
	}
	return evidence, nil
}
