package components

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// How the HPA that KEDA creates for the ScaledObject moves between 1 and maxReplicas. KEDA only
// takes the Deployment from 0 to 1 and back to 0 (after cooldownPeriod with the trigger
// inactive); every step in between is the HPA's, reading KEDA's external metric through the
// metrics adapter. Left unset, the HPA's defaults apply, and the one that hurts is scale-down's
// 300 s window: while the trigger stays active (a backlog that shrinks but does not empty), N
// replicas and their nodes stay 5 minutes after the backlog stopped needing them, whatever
// cooldownPeriod says (kedacore/keda#6844, #7770; docs/cloud-notes.md). So the stack sets the
// behaviour explicitly; the two windows are config keys, the policies are fixed here.
const (
	// DefaultScaleUpStabilizationSeconds is 0, the HPA's own: queue depth that rises is never
	// noise to a consumer (every message must be processed), so the HPA acts on the first read.
	DefaultScaleUpStabilizationSeconds = 0
	// DefaultScaleDownStabilizationSeconds is four of the HPA controller's 15 s syncs (AKS does
	// not let users change --horizontal-pod-autoscaler-sync-period): the backlog must call for
	// fewer replicas for a minute before any is removed, so a producer's pause of a few reads
	// keeps the replicas, and a drained backlog frees them (and NAP's nodes, consolidateAfter
	// later) in a minute instead of five. A wrong scale-down costs little: a stopping consumer
	// finishes its in-flight messages within the grace period and the rest are idempotent.
	DefaultScaleDownStabilizationSeconds = 60
	// maxStabilizationSeconds is the HPA API's upper bound for a stabilization window (1 hour).
	maxStabilizationSeconds = 3600

	// hpaPolicyPeriodSeconds is the period of every policy: the HPA's default 15 s, one sync.
	hpaPolicyPeriodSeconds = 15
	// scaleUpPercent and scaleUpPods: per period, the HPA may double the replicas or add 4,
	// whichever is more (selectPolicy Max; the HPA's defaults, written down). From 1 replica a
	// backlog gets 5 in the first period, more than DefaultMaxReplicas (3), the queue's target.
	scaleUpPercent = 100
	scaleUpPods    = 4
	// scaleDownPercent: once the window agrees, all surplus replicas go in one period (the HPA's
	// default): the window is what guards against flapping, not the rate.
	scaleDownPercent = 100
)

// HPABehavior is the ScaledObject's advanced.horizontalPodAutoscalerConfig.behavior
// (autoscaling/v2 HorizontalPodAutoscalerBehavior) from the settings' two windows and the fixed
// policies above.
func HPABehavior(s ConsumerSettings) pulumi.Map {
	policy := func(typ string, value int) pulumi.Map {
		return pulumi.Map{"type": pulumi.String(typ), "value": pulumi.Int(value), "periodSeconds": pulumi.Int(hpaPolicyPeriodSeconds)}
	}
	return pulumi.Map{
		"scaleUp": pulumi.Map{
			"stabilizationWindowSeconds": pulumi.Int(s.ScaleUpStabilizationSeconds),
			"selectPolicy":               pulumi.String("Max"),
			"policies":                   pulumi.Array{policy("Percent", scaleUpPercent), policy("Pods", scaleUpPods)},
		},
		"scaleDown": pulumi.Map{
			"stabilizationWindowSeconds": pulumi.Int(s.ScaleDownStabilizationSeconds),
			"selectPolicy":               pulumi.String("Max"),
			"policies":                   pulumi.Array{policy("Percent", scaleDownPercent)},
		},
	}
}
