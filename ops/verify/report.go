package verify

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The checks, in the order Run runs them. The names appear in the output lines and in the JSON
// report; the e2e matches on them.
const (
	// CheckAtMinimumBefore: before the burst the consumer is at rest (Deployment at the
	// ScaledObject's idle/min replica count, or no active Job beyond the ScaledJob's minimum)
	// and the queue holds no more than activationQueueLength messages.
	CheckAtMinimumBefore = "at-minimum-before"
	// CheckScaledUp: KEDA scaled the consumer up within pollingInterval + slack of the burst's
	// first message.
	CheckScaledUp = "scaled-up"
	// CheckNodes: the burst's consumer pods run on the app NodePool's nodes (NAP provisions one
	// when the pool has none).
	CheckNodes = "nodes"
	// CheckStoredOnce: every message sent has its entity at the keys its id maps to, and the
	// table holds exactly one entity per message carrying the run tag.
	CheckStoredOnce = "stored-once"
	// CheckDrained: the queue's approximate message count reached 0.
	CheckDrained = "drained"
	// CheckNothingPoisoned: no message of the burst reached the poison queue.
	CheckNothingPoisoned = "nothing-poisoned"
	// CheckBackToMinimum: after the cooldown the consumer is back at rest.
	CheckBackToMinimum = "back-to-minimum"
)

// CheckNames lists the checks in the order Run runs them; a Report always holds all of them.
var CheckNames = []string{
	CheckAtMinimumBefore, CheckScaledUp, CheckNodes, CheckStoredOnce,
	CheckDrained, CheckNothingPoisoned, CheckBackToMinimum,
}

// Report is the outcome of one verify run. `verify -json` prints it as its last line and the e2e
// parses it: keep the field names stable.
type Report struct {
	// Stack is the Pulumi stack that was verified.
	Stack string `json:"stack"`
	// ScaleMode is the consumer's scale mode: "ScaledObject" or "ScaledJob".
	ScaleMode string `json:"scaleMode"`
	// Burst is how many messages of the burst the queue accepted (0 when no burst was sent).
	Burst int `json:"burst"`
	// Checks holds every check of CheckNames, in that order; one that did not run is Skipped
	// and says why.
	Checks []Check `json:"checks"`
	// ReplicasTimeline is the Deployment's spec.replicas (ScaledObject) or the number of active
	// Jobs of the ScaledJob (ScaledJob), sampled every second (Options.Interval) from the
	// burst's first message: the first sample and every change.
	ReplicasTimeline []ReplicaPoint `json:"replicasTimeline"`
	// JobsCreated counts the ScaledJob's Jobs created after the burst started (0 for a
	// ScaledObject).
	JobsCreated int `json:"jobsCreated"`
	// MaxActiveJobs is the most Jobs of the ScaledJob seen active at once after the burst
	// started (0 for a ScaledObject).
	MaxActiveJobs int `json:"maxActiveJobs"`
	// EntitiesDeleted counts the burst's table entities verify deleted when it cleaned up.
	EntitiesDeleted int `json:"entitiesDeleted"`
}

// Check is the verdict of one check.
type Check struct {
	// Name is one of CheckNames.
	Name string `json:"name"`
	// OK says the check held. A skipped check is not OK.
	OK bool `json:"ok"`
	// Skipped says the check did not run (-skip-scale-down, or an earlier check made it
	// meaningless); Evidence says why.
	Skipped bool `json:"skipped"`
	// Seconds is when the check's outcome was seen, counted from the event it waits on: from
	// the burst's first message, the sample that showed the scale-up (scaled-up), the first
	// burst pod scheduled on the pool (nodes), the last entity found (stored-once), the empty
	// queue (drained); from the drain, the return to rest (back-to-minimum); how long the check
	// took for the others, and how long it waited when it timed out.
	Seconds float64 `json:"seconds"`
	// Evidence is what was seen, in one line.
	Evidence string `json:"evidence"`
}

// ReplicaPoint is one point of Report.ReplicasTimeline.
type ReplicaPoint struct {
	// Seconds since the burst's first message.
	Seconds float64 `json:"seconds"`
	// Replicas is the Deployment's spec.replicas, or the active Jobs of a ScaledJob.
	Replicas int `json:"replicas"`
}

// seconds rounds d to tenths of a second.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*10) / 10
}

// fmtSeconds formats a number of seconds without trailing zeros: 6, 6.2.
func fmtSeconds(s float64) string {
	return strconv.FormatFloat(s, 'f', -1, 64) + "s"
}

// Line is the check's output line: `verify: <check>: ok|FAILED|skipped (<seconds>s): <evidence>`.
func (c Check) Line() string {
	state := "FAILED"
	switch {
	case c.Skipped:
		state = "skipped"
	case c.OK:
		state = "ok"
	}
	return fmt.Sprintf("verify: %s: %s (%s): %s", c.Name, state, fmtSeconds(c.Seconds), c.Evidence)
}

// FirstFailure returns the first check that failed, if any.
func (r Report) FirstFailure() (Check, bool) {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return c, true
		}
	}
	return Check{}, false
}

// OK reports whether no check failed (skipped checks do not fail a run).
func (r Report) OK() bool {
	_, failed := r.FirstFailure()
	return !failed && len(r.Checks) > 0
}

// Summary is the run's last text line: `verify: ok: ...`, or `verify: FAILED: <check>: <evidence>`
// naming the first check that failed.
func (r Report) Summary() string {
	if c, failed := r.FirstFailure(); failed {
		return fmt.Sprintf("verify: FAILED: %s: %s", c.Name, c.Evidence)
	}
	held, skipped := 0, 0
	for _, c := range r.Checks {
		if c.Skipped {
			skipped++
		} else if c.OK {
			held++
		}
	}
	s := fmt.Sprintf("verify: ok: %d checks hold on stack %s (%s, burst of %d)", held, r.Stack, r.ScaleMode, r.Burst)
	if skipped > 0 {
		s += fmt.Sprintf(", %d skipped", skipped)
	}
	return s
}

// JSON returns the report as one line of JSON.
func (r Report) JSON() (string, error) {
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	if r.ReplicasTimeline == nil {
		r.ReplicasTimeline = []ReplicaPoint{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	return string(b), nil
}

// timelineString formats a timeline as "0@0s 1@6s 3@21.5s".
func timelineString(tl []ReplicaPoint) string {
	parts := make([]string, len(tl))
	for i, p := range tl {
		parts[i] = fmt.Sprintf("%d@%s", p.Replicas, fmtSeconds(p.Seconds))
	}
	return strings.Join(parts, " ")
}
