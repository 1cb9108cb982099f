package verify

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aks-edw/aks-edw/app/message"
)

// The decisions: pure functions from what was observed to a verdict. Run gathers the
// observations and waits; these say whether a check holds, has failed, or needs more time
// (final says the wait is over, so "not yet" becomes a failure).

// verdict is a decision's answer. done false means "not decided yet: keep waiting"; a decision
// called with final true always returns done true. timed says at is when, from the event the
// check waits on, the samples showed what decided it (else the wait's own duration counts).
type verdict struct {
	done, ok bool
	evidence string
	timed    bool
	at       time.Duration
}

// after returns v timed at d.
func (v verdict) after(d time.Duration) verdict {
	v.timed, v.at = true, d
	return v
}

func pass(format string, a ...any) verdict {
	return verdict{done: true, ok: true, evidence: fmt.Sprintf(format, a...)}
}
func fail(format string, a ...any) verdict {
	return verdict{done: true, ok: false, evidence: fmt.Sprintf(format, a...)}
}

// valid returns the samples that were taken whole.
func valid(samples []Observation) []Observation {
	out := make([]Observation, 0, len(samples))
	for _, o := range samples {
		if o.Err == "" {
			out = append(out, o)
		}
	}
	return out
}

// lastErr returns the last sample error, for evidence when a wait times out.
func lastErr(samples []Observation) string {
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i].Err != "" {
			return "; last cluster read error: " + samples[i].Err
		}
	}
	return ""
}

// atMinimumVerdict decides at-minimum-before from the snapshot taken before the burst and the
// queue's depth then: the consumer at rest (a ScaledObject's Deployment at its idle/min count;
// no more active Jobs than a ScaledJob's minReplicaCount) and no more messages queued than the
// trigger's activationQueueLength, so that the scale-up that follows is the burst's doing. The
// trigger must watch the stack's queue (queue), or the burst cannot scale anything.
func atMinimumVerdict(s Scaler, queue string, before Observation, depth int) verdict {
	var state string
	var problems []string
	if s.QueueName != queue {
		problems = append(problems, fmt.Sprintf("the %s trigger of %s %s watches queue %q, not the stack's queue %q: a burst on %s cannot scale it",
			AzureQueueTrigger, s.Kind, s.Name, s.QueueName, queue, queue))
	}
	if s.Kind == ScaleModeScaledJob {
		active := before.ActiveJobs()
		state = fmt.Sprintf("%d active Jobs (minReplicaCount %d)", active, s.MinReplicaCount)
		if active > int(s.MinReplicaCount) {
			problems = append(problems, fmt.Sprintf("%d Jobs of ScaledJob %s are still active (minReplicaCount %d): wait for them to finish and run verify again",
				active, s.Name, s.MinReplicaCount))
		}
	} else {
		state = fmt.Sprintf("Deployment at %d replicas (at rest: %d)", before.Replicas, s.AtRest())
		if before.Replicas != s.AtRest() {
			problems = append(problems, fmt.Sprintf("the Deployment is at %d replicas, not at rest (%d): the consumer is already scaled, so a scale-up would prove nothing; wait for the cooldown (%s) and run verify again",
				before.Replicas, s.AtRest(), fmtSeconds(s.CooldownPeriod.Seconds())))
		}
	}
	queued := fmt.Sprintf("queue holds %d messages (activationQueueLength %d)", depth, s.ActivationQueueLength)
	if int64(depth) > s.ActivationQueueLength {
		problems = append(problems, fmt.Sprintf("the queue holds %d messages, more than activationQueueLength %d: the consumer has work already, so a scale-up would prove nothing",
			depth, s.ActivationQueueLength))
	}
	if len(problems) > 0 {
		return fail("%s", strings.Join(problems, "; "))
	}
	return pass("%s; %s", state, queued)
}

// scaleUpAt returns when the first whole sample showed the scale-up: a ScaledObject's
// Deployment above its at-rest count, or a Job of the ScaledJob that did not exist before the
// burst (beforeJobs holds the UIDs seen then).
func scaleUpAt(s Scaler, samples []Observation, beforeJobs map[string]bool) (time.Duration, bool) {
	for _, o := range valid(samples) {
		if s.Kind == ScaleModeScaledJob {
			for _, j := range o.Jobs {
				if !beforeJobs[j.UID] {
					return o.At, true
				}
			}
			continue
		}
		if o.Replicas > s.AtRest() {
			return o.At, true
		}
	}
	return 0, false
}

// scaleUpLimit is how long after the burst's first message KEDA may take to scale up: one
// polling interval (KEDA looks at the queue that often) plus slack (scheduling, API latency).
func scaleUpLimit(s Scaler, slack time.Duration) time.Duration { return s.PollingInterval + slack }

// scaledUpVerdict decides scaled-up: the scale-up must be seen within scaleUpLimit. A scale-up
// seen later is a failure too, but a different one (KEDA is slow) from none at all.
func scaledUpVerdict(s Scaler, slack time.Duration, samples []Observation, beforeJobs map[string]bool, final bool) verdict {
	limit := scaleUpLimit(s, slack)
	limitText := fmt.Sprintf("%s = pollingInterval %s + slack %s", fmtSeconds(seconds(limit)), fmtSeconds(s.PollingInterval.Seconds()), fmtSeconds(seconds(slack)))
	at, found := scaleUpAt(s, samples, beforeJobs)
	if !found && !final {
		return verdict{}
	}
	what := "replicas"
	detail := "replicas " + timelineString(timeline(s.Kind, samples))
	if s.Kind == ScaleModeScaledJob {
		what = "first Job"
		st := jobStatsOf(samples, beforeJobs)
		detail = fmt.Sprintf("jobs created %d, max active %d; active Jobs %s", st.Created, st.MaxActive, timelineString(timeline(s.Kind, samples)))
	} else {
		what = fmt.Sprintf("replicas above %d", s.AtRest())
	}
	if !found {
		last := ""
		if len(samples) > 0 {
			last = fmtSeconds(seconds(samples[len(samples)-1].At))
		}
		paused := ""
		if s.Paused {
			paused = "; the " + s.Kind + " is paused by annotation"
		}
		return fail("no scale-up within %s of the burst's first message (limit %s)%s; %s%s", last, limitText, paused, detail, lastErr(samples))
	}
	if at > limit {
		return fail("%s only %s after the burst's first message, later than the limit %s; %s", what, fmtSeconds(seconds(at)), limitText, detail).after(at)
	}
	return pass("%s %s after the burst's first message (limit %s); %s", what, fmtSeconds(seconds(at)), limitText, detail).after(at)
}

// timeline returns the first whole sample's replicas (ScaledObject) or active Jobs (ScaledJob)
// and every change after it.
func timeline(kind string, samples []Observation) []ReplicaPoint {
	var out []ReplicaPoint
	for _, o := range valid(samples) {
		n := int(o.Replicas)
		if kind == ScaleModeScaledJob {
			n = o.ActiveJobs()
		}
		if len(out) == 0 || out[len(out)-1].Replicas != n {
			out = append(out, ReplicaPoint{Seconds: seconds(o.At), Replicas: n})
		}
	}
	return out
}

// jobStats sums up the burst's Jobs (those not present before it).
type jobStats struct {
	// Created counts the burst's Jobs.
	Created int
	// MaxActive is the most burst Jobs active in one sample.
	MaxActive int
	// Succeeded, Failed and Active count the burst's Jobs by their last state seen; Gone
	// counts those deleted (KEDA's history limits) while still active in their last sample.
	Succeeded, Failed, Active, Gone int
}

func (s jobStats) String() string {
	out := fmt.Sprintf("jobs created %d, max active %d, succeeded %d, failed %d", s.Created, s.MaxActive, s.Succeeded, s.Failed)
	if s.Active > 0 {
		out += fmt.Sprintf(", still active %d", s.Active)
	}
	if s.Gone > 0 {
		out += fmt.Sprintf(", deleted before finishing %d", s.Gone)
	}
	return out
}

func jobStatsOf(samples []Observation, beforeJobs map[string]bool) jobStats {
	var st jobStats
	last := map[string]JobState{}
	var order []string
	var inLast map[string]bool
	for _, o := range valid(samples) {
		active := 0
		inLast = map[string]bool{}
		for _, j := range o.Jobs {
			if beforeJobs[j.UID] {
				continue
			}
			if _, seen := last[j.UID]; !seen {
				order = append(order, j.UID)
			}
			last[j.UID] = j
			inLast[j.UID] = true
			if j.Active() {
				active++
			}
		}
		st.MaxActive = max(st.MaxActive, active)
	}
	st.Created = len(order)
	for _, uid := range order {
		j := last[uid]
		switch {
		case j.Succeeded:
			st.Succeeded++
		case j.Failed:
			st.Failed++
		case !inLast[uid]:
			st.Gone++
		default:
			st.Active++
		}
	}
	return st
}

// nodesVerdict decides nodes: the burst's consumer pods (those not present before it) are
// scheduled onto nodes of the app NodePool; when the pool had no node before the burst, NAP
// provisioned one. It fails at once when a burst pod lands on a node outside the pool, and
// holds once at least one burst pod is scheduled and every scheduled one is on a pool node.
func nodesVerdict(pool string, before Observation, samples []Observation, final bool) verdict {
	beforePods := map[string]bool{}
	for _, p := range before.Pods {
		beforePods[p.UID] = true
	}
	poolNodes := map[string]bool{}
	for _, n := range before.PoolNodes {
		poolNodes[n] = true
	}
	// Nodes count as NAP's answer to this burst only when they appeared after it.
	var firstNodeAt time.Duration
	firstNode := ""
	newNodes := map[string]bool{}
	burstPods := map[string]PodState{}
	scheduledAt := map[string]time.Duration{}
	var podOrder []string
	for _, o := range valid(samples) {
		for _, n := range o.PoolNodes {
			if !poolNodes[n] {
				newNodes[n] = true
				if firstNode == "" {
					firstNode, firstNodeAt = n, o.At
				}
			}
			poolNodes[n] = true
		}
		for _, p := range o.Pods {
			if beforePods[p.UID] {
				continue
			}
			if _, seen := burstPods[p.UID]; !seen {
				podOrder = append(podOrder, p.UID)
			}
			if p.Node != "" || burstPods[p.UID].Node == "" {
				burstPods[p.UID] = p
			}
			if _, seen := scheduledAt[p.UID]; p.Node != "" && !seen {
				scheduledAt[p.UID] = o.At
			}
		}
	}
	nodesBefore := fmt.Sprintf("NodePool %s had %d nodes before the burst", pool, len(before.PoolNodes))
	if firstNode != "" {
		nodesBefore += fmt.Sprintf(", %d appeared after it (the first, %s, %s after the burst's first message)", len(newNodes), firstNode, fmtSeconds(seconds(firstNodeAt)))
	} else {
		nodesBefore += ", none appeared after it"
	}
	var onPool, offPool []string
	nodesUsed := map[string]bool{}
	var firstOnPool time.Duration
	for _, uid := range podOrder {
		p := burstPods[uid]
		if p.Node == "" {
			continue
		}
		if poolNodes[p.Node] {
			if len(onPool) == 0 || scheduledAt[uid] < firstOnPool {
				firstOnPool = scheduledAt[uid]
			}
			onPool = append(onPool, p.Name)
			nodesUsed[p.Node] = true
		} else {
			offPool = append(offPool, fmt.Sprintf("%s on %s", p.Name, p.Node))
		}
	}
	if len(offPool) > 0 {
		return fail("consumer pods of this burst run outside NodePool %s (nodes without %s=%s): %s; %s",
			pool, NodePoolLabel, pool, strings.Join(firstN(offPool, 5), ", "), nodesBefore)
	}
	if len(onPool) == 0 {
		if !final {
			return verdict{}
		}
		pending := len(podOrder)
		return fail("no consumer pod of this burst was scheduled (%d created, all pending); %s%s", pending, nodesBefore, lastErr(samples))
	}
	used := make([]string, 0, len(nodesUsed))
	onNew := 0
	for n := range nodesUsed {
		used = append(used, n)
		if newNodes[n] {
			onNew++
		}
	}
	sort.Strings(used)
	return pass("%s; %d consumer pods of this burst on %d pool nodes (%s), %d of those nodes new since the burst; the first pod scheduled %s after the burst's first message",
		nodesBefore, len(onPool), len(used), strings.Join(firstN(used, 5), ", "), onNew, fmtSeconds(seconds(firstOnPool))).after(firstOnPool)
}

// sentMsg is one message of the burst the queue accepted: its idempotency id and its text.
type sentMsg struct {
	ID, Text string
}

// entityKeys returns the PartitionKey and RowKey the consumer stores a message with this
// idempotency id under (message.Parsed.KeySource, then message.Keys: the consumer's own path).
func entityKeys(id string) (pk, rk string) {
	return message.Keys(message.Parsed{Message: message.Message{ID: id}}.KeySource(""))
}

// storedOnceVerdict decides stored-once from the entities read at each message's keys (found,
// by id) and, once every message is found, the entities that carry the run tag (tagged;
// queried says the tag query ran). Each message must have its entity, holding its text and id,
// and the tag must be on exactly one entity per message: one more means a message was stored
// twice under other keys.
func storedOnceVerdict(sent []sentMsg, found map[string]message.Entity, tagged []message.Entity, queried, final bool) verdict {
	var missing, wrong []string
	for i, m := range sent {
		e, ok := found[m.ID]
		if !ok {
			missing = append(missing, m.ID)
			continue
		}
		if e.Data != m.Text || e.ID != m.ID {
			wrong = append(wrong, fmt.Sprintf("message %d (id %s): entity %s/%s holds data %q id %q, sent %q", i+1, m.ID, e.PartitionKey, e.RowKey, e.Data, e.ID, m.Text))
		}
	}
	if len(wrong) > 0 {
		return fail("%d entities do not hold the message sent: %s", len(wrong), strings.Join(firstN(wrong, 3), "; "))
	}
	if len(missing) > 0 {
		if !final {
			return verdict{}
		}
		return fail("%d of %d messages have no entity at the keys their id maps to: %s", len(missing), len(sent), strings.Join(firstN(missing, 5), ", "))
	}
	if !queried {
		if final {
			return fail("every message is stored, but the run tag query did not run")
		}
		return verdict{}
	}
	want := map[[2]string]bool{}
	for _, m := range sent {
		pk, rk := entityKeys(m.ID)
		want[[2]string{pk, rk}] = true
	}
	var extra []string
	for _, e := range tagged {
		if !want[[2]string{e.PartitionKey, e.RowKey}] {
			extra = append(extra, fmt.Sprintf("%s/%s (data %q)", e.PartitionKey, e.RowKey, e.Data))
		}
	}
	if len(extra) > 0 || len(tagged) != len(sent) {
		return fail("the run tag is on %d entities for %d messages: stored more than once, at keys not derived from their id: %s",
			len(tagged), len(sent), strings.Join(firstN(extra, 5), ", "))
	}
	return pass("%d/%d messages stored at the keys their id maps to; the run tag is on exactly %d entities%s", len(sent), len(sent), len(tagged), storedSpan(found))
}

// storedSpan says when the first and the last entity were stored (the consumer's dateStamp),
// counted from the earliest message's srcStamp (the producer's clock: the burst's first
// message), or "" when the stamps do not parse.
func storedSpan(found map[string]message.Entity) string {
	var sent, first, last time.Time
	for _, e := range found {
		src, err1 := message.ParseStamp(e.SrcStamp)
		done, err2 := message.ParseStamp(e.DateStamp)
		if err1 != nil || err2 != nil {
			return ""
		}
		if sent.IsZero() || src.Before(sent) {
			sent = src
		}
		if first.IsZero() || done.Before(first) {
			first = done
		}
		if done.After(last) {
			last = done
		}
	}
	if sent.IsZero() {
		return ""
	}
	return fmt.Sprintf("; first stored %s after the burst's first message, last %s", fmtSeconds(seconds(first.Sub(sent))), fmtSeconds(seconds(last.Sub(sent))))
}

// drainedAt returns when a sample first read the queue's approximate count as 0 once the whole
// burst was on the queue (sentAt: how long sending took; an earlier 0 is from before the burst).
func drainedAt(samples []Observation, sentAt time.Duration) (time.Duration, bool) {
	for _, o := range samples {
		if o.At >= sentAt && o.DepthErr == "" && o.Depth == 0 {
			return o.At, true
		}
	}
	return 0, false
}

// drainedVerdict decides drained from the queue depth in the samples.
func drainedVerdict(samples []Observation, sentAt time.Duration, final bool) verdict {
	if at, ok := drainedAt(samples, sentAt); ok {
		return pass("approximate message count 0, %s after the burst's first message", fmtSeconds(seconds(at))).after(at)
	}
	if !final {
		return verdict{}
	}
	last, lastErr := -1, ""
	var lastAt time.Duration
	for _, o := range samples {
		if o.At < sentAt {
			continue
		}
		if o.DepthErr != "" {
			lastErr = o.DepthErr
			continue
		}
		last, lastAt = o.Depth, o.At
	}
	if last < 0 {
		return fail("the queue's count could not be read after the burst (last error: %s)", lastErr)
	}
	return fail("the queue still holds %d messages (approximate count) %s after the burst's first message", last, fmtSeconds(seconds(lastAt)))
}

// poisonCount is the poison queue's approximate message count; Exists is false when the queue
// does not exist (nothing was ever poisoned: fine).
type poisonCount struct {
	Count  int
	Exists bool
}

func (p poisonCount) String() string {
	if !p.Exists {
		return "absent"
	}
	return fmt.Sprintf("%d messages", p.Count)
}

// poisonVerdict decides nothing-poisoned: no message of the burst among those peeked (ours
// describes them), and the poison queue's count did not grow during the run (a burst message
// further back than the peek still shows there).
func poisonVerdict(before, after poisonCount, peeked int, ours []string) verdict {
	if len(ours) > 0 {
		return fail("the poison queue holds %d messages of this burst: %s", len(ours), strings.Join(firstN(ours, 5), "; "))
	}
	if after.Count > before.Count {
		return fail("the poison queue grew from %s to %s during the run (none of this burst among the %d peeked; the new ones are further back)", before, after, peeked)
	}
	return pass("poison queue: %s before, %s after; none of this burst among the %d peeked", before, after, peeked)
}

// backToMinimumLimit is how long after the drain the consumer may take to be back at rest:
// KEDA scales a ScaledObject in once the trigger has been inactive for cooldownPeriod, noticed
// at its next poll, plus slack; a ScaledJob's Jobs exit when the queue is empty (no cooldown).
func backToMinimumLimit(s Scaler, slack time.Duration) time.Duration {
	return s.CooldownPeriod + s.PollingInterval + slack
}

// backToMinimumVerdict decides back-to-minimum from the samples taken since the drain (drain:
// when it was seen, since the burst's first message), on the latest whole one: a ScaledObject's
// Deployment at its at-rest count; every Job of the burst finished, none failed and none
// active. The time it reports is from the drain to the first sample of the final at-rest run.
func backToMinimumVerdict(s Scaler, slack time.Duration, samples []Observation, beforeJobs map[string]bool, drain time.Duration, final bool) verdict {
	limit := backToMinimumLimit(s, slack)
	var since []Observation
	for _, o := range valid(samples) {
		if o.At >= drain {
			since = append(since, o)
		}
	}
	if len(since) == 0 {
		if !final {
			return verdict{}
		}
		return fail("no cluster sample could be read after the drain%s", lastErr(samples))
	}
	atRest := func(o Observation) bool {
		if s.Kind == ScaleModeScaledJob {
			return o.ActiveJobs() <= int(s.MinReplicaCount)
		}
		return o.Replicas == s.AtRest()
	}
	latest := since[len(since)-1]
	restAt := latest.At - drain // when the at-rest run that the latest sample ends began
	for i := len(since) - 1; i >= 0 && atRest(since[i]); i-- {
		restAt = since[i].At - drain
	}
	waited := latest.At - drain
	if s.Kind == ScaleModeScaledJob {
		limitText := fmt.Sprintf("limit %s = pollingInterval %s + slack %s", fmtSeconds(seconds(limit)), fmtSeconds(s.PollingInterval.Seconds()), fmtSeconds(seconds(slack)))
		st := jobStatsOf(samples, beforeJobs)
		if st.Active == 0 && atRest(latest) {
			if st.Failed > 0 {
				return fail("%d Jobs of the burst failed; %s", st.Failed, st).after(restAt)
			}
			return pass("every Job of the burst finished %s after the drain (%s); %s", fmtSeconds(seconds(restAt)), limitText, st).after(restAt)
		}
		if !final {
			return verdict{}
		}
		return fail("%d Jobs still active %s after the drain (%s); %s", latest.ActiveJobs(), fmtSeconds(seconds(waited)), limitText, st).after(waited)
	}
	limitText := fmt.Sprintf("limit %s = cooldownPeriod %s + pollingInterval %s + slack %s", fmtSeconds(seconds(limit)),
		fmtSeconds(s.CooldownPeriod.Seconds()), fmtSeconds(s.PollingInterval.Seconds()), fmtSeconds(seconds(slack)))
	tl := timelineString(timeline(s.Kind, samples))
	if atRest(latest) {
		return pass("replicas back to %d %s after the drain (%s); replicas %s", s.AtRest(), fmtSeconds(seconds(restAt)), limitText, tl).after(restAt)
	}
	if !final {
		return verdict{}
	}
	return fail("replicas still %d, not %d, %s after the drain (%s); replicas %s", latest.Replicas, s.AtRest(), fmtSeconds(seconds(waited)), limitText, tl).after(waited)
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), fmt.Sprintf("and %d more", len(s)-n))
}
