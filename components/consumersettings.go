package components

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Scale modes: how KEDA runs the consumer.
const (
	// ScaleModeScaledObject runs the consumer as a long-lived Deployment that a KEDA ScaledObject
	// scales between minReplicas and maxReplicas on queue depth (the seed's behaviour).
	ScaleModeScaledObject = "ScaledObject"
	// ScaleModeScaledJob runs the consumer as Kubernetes Jobs that a KEDA ScaledJob starts per batch
	// of messages; each job drains the queue and exits.
	ScaleModeScaledJob = "ScaledJob"
)

// Sizing: the per-replica rate the scaling defaults follow, derived from what `make bench`
// measured with storage at Azure's distance (docs/programs.md, "Benchmark: storage at Azure's
// distance", quiet runs on 6 December) and one stated assumption, the time of a storage request in-region.
// They are the one place to change when the benchmark's figures change: every default below
// follows, and TestSizingFollowsTheBench checks the arithmetic.
const (
	// assumedRequestMillis is what one storage request costs in-region, round trip and server
	// time: 10 ms. Azure's availability zones are less than about 2 ms apart round trip
	// (docs/cloud-notes.md); the rest is the storage service's own time, which its
	// SuccessServerLatency metric reports, and SuccessE2ELatency is the whole of it as a stack
	// sees it: measure it and rerun `make bench -rtt` if yours differs.
	assumedRequestMillis = 10
	// benchSlotRequestsPerMessage is the consumer's table writes and deletes per message (the
	// dequeues, one per batch of 32, run beside its request slots): a delete each, plus one
	// entity-group transaction per partition per batch: 1.00 + 0.13.
	benchSlotRequestsPerMessage = 1.13
	// benchFractionOfBound is the share of Little's law's bound the consumer reached at 10 and
	// 20 ms (its request slots in use): 0.85 at least. Measured: 0.91-0.99 with 8 slots; with
	// 16, 0.77-0.86 at 10 ms, the emulator's one queue thread limiting (docs/programs.md). At
	// 0.77 the network bound below is 1,090 msg/s, still above the CPU's: the rate is the same.
	benchFractionOfBound = 0.85
	// benchCPUMicrosPerMessage is the consumer's CPU per message, from ready to done: 0.55-0.65
	// ms at 450-580 msg/s, up to 0.75-0.8 ms at 250-330 msg/s (its fixed costs per second
	// shared by fewer messages); the sizing takes 0.6 ms, for a replica near 800 msg/s (over
	// plain HTTP to the emulator: TLS adds to it).
	benchCPUMicrosPerMessage = 600
	// defaultConcurrency and defaultCPULimitMilli are the defaults (consumerConcurrency,
	// cpuLimit) the rate is derived for.
	defaultConcurrency   = 16
	defaultCPULimitMilli = 500

	// messagesPerSecondPerReplica is one replica's rate at 10 ms, the lower of two bounds:
	//   - the network: 0.85 × 16 requests in flight / (10 ms × 1.13 requests per message)
	//     = 1,203 msg/s;
	//   - the CPU limit: 500m / 0.6 ms per message = 833 msg/s;
	// the CPU binds: 800 msg/s, rounded down. (The seed's guess was 400, "half of what loopback
	// gives"; its consumer did about 1 message/s by design, which is why its queueLength was 5.)
	messagesPerSecondPerReplica = 800
	// backlogSecondsPerReplica is how many seconds of one replica's work KEDA lets queue up per
	// replica before it adds another: desiredReplicas = ceil(depth / queueLength), so a backlog is
	// drained in about this many seconds once the replicas run.
	backlogSecondsPerReplica = 10
	// AzureQueueMessagesPerSecond is Azure Queue Storage's scalability target for one queue
	// (about 2,000 messages/s). Replicas beyond it only meet 503 ServerBusy.
	AzureQueueMessagesPerSecond = 2000
	// jobBatchSeconds is the work one ScaledJob job is sized for: long enough that pod start-up is
	// small next to it, short enough that a failed job redoes little.
	jobBatchSeconds = 60
)

// Defaults derived from the sizing.
const (
	// DefaultQueueLength is the KEDA target queue depth per replica (800 msg/s × 10 s = 8,000).
	DefaultQueueLength = messagesPerSecondPerReplica * backlogSecondsPerReplica
	// DefaultMaxReplicas is how many replicas reach the queue's target: ceil(2,000 / 800) = 3.
	DefaultMaxReplicas = (AzureQueueMessagesPerSecond + messagesPerSecondPerReplica - 1) / messagesPerSecondPerReplica
	// DefaultJobQueueLength is the number of messages one ScaledJob job is started for
	// (800 msg/s × 60 s = 48,000).
	DefaultJobQueueLength = messagesPerSecondPerReplica * jobBatchSeconds
	// DefaultJobMaxReplicas caps concurrent jobs at the same target as the Deployment.
	DefaultJobMaxReplicas = DefaultMaxReplicas
	// defaultCPURequestMilli is the CPU a replica uses at that rate: 800 msg/s × 0.6 ms = 480m,
	// rounded up to 500m (its limit: at full rate a replica runs at its limit, so it asks for it).
	defaultCPURequestMilli = 500
)

// QueueLengthStrategy is the azure-queue trigger's queueLengthStrategy in both scale modes: "all"
// counts the queue's approximate message count, in-flight (invisible) messages included.
const QueueLengthStrategy = "all"

// reservedNodePoolNames are the NodePools AKS node autoprovisioning owns; the component never
// writes them.
var reservedNodePoolNames = map[string]bool{"default": true, "system-surge": true}

// consolidateAfterPattern is Karpenter's CRD pattern for disruption.consolidateAfter.
var consolidateAfterPattern = regexp.MustCompile(`^(([0-9]+(s|m|h))+|Never)$`)

// ConsumerSettings are the consumer workload's settings, known at preview time. The json tag of
// each field is its Pulumi config key (project namespace aks-edw), e.g. `json:"minReplicas"`.
// Start from DefaultConsumerSettings and override what the stack sets; call Validate.
type ConsumerSettings struct {
	// Namespace is the namespace of every namespaced object (default aqs-demo).
	Namespace string `json:"namespace" platform:"aks"`
	// ServiceAccountName is the pods' service account, federated with the workload identity
	// (default aqs-app-service-account). The federated credential's subject must use it.
	ServiceAccountName string `json:"serviceAccountName" platform:"aks"`
	// DeploymentName is the consumer Deployment (ScaledObject mode) (default aqs-app).
	DeploymentName string `json:"deploymentName" platform:"aks"`
	// AppLabel is the value of the pods' `app` label and the Deployment selector (default aqs-reader).
	AppLabel string `json:"appLabel" platform:"aks"`

	// Image is a prebuilt consumer image reference (registry/repository:tag or @digest); empty
	// means the stack builds the image in its registry with an ACR task run from the git source
	// (imageSource* keys) (default empty).
	Image string `json:"image"`

	// ScaleMode is ScaledObject (Deployment scaled by KEDA) or ScaledJob (one Job per batch)
	// (default ScaledObject).
	ScaleMode string `json:"scaleMode"`
	// ScaledObjectName names the KEDA ScaledObject (default aws2az-queue-scaleobj).
	ScaledObjectName string `json:"scaledObjectName" platform:"aks"`
	// ScaledJobName names the KEDA ScaledJob (default aws2az-queue-scaledjob).
	ScaledJobName string `json:"scaledJobName" platform:"aks"`
	// TriggerAuthenticationName names the KEDA TriggerAuthentication (default keda-az-credentials).
	TriggerAuthenticationName string `json:"triggerAuthenticationName" platform:"aks"`
	// MinReplicas is the ScaledObject's minReplicaCount; 0 scales to zero (default 0).
	MinReplicas int `json:"minReplicas"`
	// MaxReplicas is the ScaledObject's maxReplicaCount (default DefaultMaxReplicas).
	MaxReplicas int `json:"maxReplicas"`
	// QueueLength is the azure-queue trigger's target messages per replica (default DefaultQueueLength).
	QueueLength int `json:"queueLength"`
	// ActivationQueueLength is the depth above which KEDA scales from zero (default 0: any message).
	ActivationQueueLength int `json:"activationQueueLength"`
	// PollingInterval is how often KEDA reads the queue depth, in seconds (default 30).
	PollingInterval int `json:"pollingInterval"`
	// CooldownPeriod is how long after the last active poll KEDA scales to zero, in seconds (default 10).
	CooldownPeriod int `json:"cooldownPeriod"`
	// ScaleUpStabilizationSeconds is the HPA's scale-up stabilization window between 1 and
	// maxReplicas (the ScaledObject's advanced.horizontalPodAutoscalerConfig.behavior) (default
	// 0: a growing backlog is met at once; see HPABehavior).
	ScaleUpStabilizationSeconds int `json:"scaleUpStabilizationSeconds" platform:"aks"`
	// ScaleDownStabilizationSeconds is the HPA's scale-down stabilization window: how long the
	// backlog must call for fewer replicas before the HPA removes any, while KEDA's trigger is
	// still active (an empty queue goes to zero after cooldownPeriod instead) (default 60; the
	// HPA's own default is 300; see HPABehavior).
	ScaleDownStabilizationSeconds int `json:"scaleDownStabilizationSeconds" platform:"aks"`

	// JobQueueLength is the ScaledJob trigger's messages per job (default DefaultJobQueueLength).
	JobQueueLength int `json:"jobQueueLength"`
	// JobMaxReplicas is the ScaledJob's maximum concurrent jobs (default DefaultJobMaxReplicas).
	JobMaxReplicas int `json:"jobMaxReplicas"`
	// JobSuccessfulHistoryLimit is how many finished jobs KEDA keeps (default 3).
	JobSuccessfulHistoryLimit int `json:"jobSuccessfulHistoryLimit" platform:"aks"`
	// JobFailedHistoryLimit is how many failed jobs KEDA keeps (default 5).
	JobFailedHistoryLimit int `json:"jobFailedHistoryLimit" platform:"aks"`
	// JobScalingStrategy is the ScaledJob scalingStrategy: default, accurate or eager (default
	// "default", right for Azure queues whose depth counts in-flight messages).
	JobScalingStrategy string `json:"jobScalingStrategy" platform:"aks"`
	// JobActiveDeadlineSeconds bounds one job's run time (default 600).
	JobActiveDeadlineSeconds int `json:"jobActiveDeadlineSeconds"`
	// JobBackoffLimit is the retries of a failed job pod (default 2).
	JobBackoffLimit int `json:"jobBackoffLimit"`

	// CPURequest is the consumer container's CPU request (default 500m: what a replica uses at
	// the 800 msg/s the scaling defaults assume).
	CPURequest string `json:"cpuRequest"`
	// MemoryRequest is the consumer container's memory request (default 64Mi).
	MemoryRequest string `json:"memoryRequest"`
	// CPULimit is the consumer container's CPU limit (default 500m).
	CPULimit string `json:"cpuLimit" platform:"aks"`
	// MemoryLimit is the consumer container's memory limit (default 128Mi).
	MemoryLimit string `json:"memoryLimit" platform:"aks"`
	// TerminationGracePeriodSeconds is how long a stopping pod may finish in-flight messages; the
	// consumer's CONSUMER_DRAIN_TIMEOUT is derived from it, 10 s shorter (default 60).
	TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
	// NodeFailureTolerationSeconds is how long pods stay on an unreachable or not-ready node
	// before they are evicted (default 30; Kubernetes' own default is 300).
	NodeFailureTolerationSeconds int `json:"nodeFailureTolerationSeconds" platform:"aks"`

	// ConsumerConcurrency is CONSUMER_CONCURRENCY: messages processed at once per pod (default 16).
	ConsumerConcurrency int `json:"consumerConcurrency"`
	// ConsumerBatchSize is CONSUMER_BATCH_SIZE: messages per dequeue, 1-32 (default 32).
	ConsumerBatchSize int `json:"consumerBatchSize"`
	// ConsumerVisibilityTimeout is CONSUMER_VISIBILITY_TIMEOUT, a Go duration: how long a dequeued
	// message stays invisible (default 60s).
	ConsumerVisibilityTimeout string `json:"consumerVisibilityTimeout"`
	// ConsumerMaxDeliveries is CONSUMER_MAX_DELIVERIES: dequeues before a message is poisoned (default 5).
	ConsumerMaxDeliveries int `json:"consumerMaxDeliveries"`

	// NodePoolName is the Karpenter NodePool for the consumer, also the value of its
	// `deployment=<name>:NoSchedule` taint (default aqs-app-pool; never default or system-surge).
	NodePoolName string `json:"nodePoolName" platform:"aks"`
	// NodePoolSKUFamily is the Azure VM family (karpenter.azure.com/sku-family) (default D).
	NodePoolSKUFamily string `json:"nodePoolSkuFamily" platform:"aks"`
	// NodePoolCPULimit caps the total CPU of the pool's nodes (default 100).
	NodePoolCPULimit string `json:"nodePoolCpuLimit" platform:"aks"`
	// NodePoolConsolidateAfter is how long a node must be empty or underutilized before Karpenter
	// consolidates it (default 1m).
	NodePoolConsolidateAfter string `json:"nodePoolConsolidateAfter" platform:"aks"`
	// AppCapacityTypes are the NodePool's karpenter.sh/capacity-type values: on-demand, spot, or
	// both, in which case NAP prefers spot and falls back to on-demand when spot capacity is
	// unavailable (default on-demand). A spot eviction does not drain: NAP turns Azure's notice
	// into a node repair that deletes the pods with a 1 s grace, whatever
	// terminationGracePeriodSeconds says (see the capacity types below), so each in-flight message (at
	// most max(consumerConcurrency, consumerBatchSize) + 3 × consumerBatchSize per pod, 128 by default)
	// comes back after consumerVisibilityTimeout, one of its consumerMaxDeliveries spent.
	AppCapacityTypes []string `json:"appCapacityTypes" platform:"aks"`
}

// Karpenter's capacity types on Azure. When NAP evicts a spot node, the provider registers the
// node condition PreemptionScheduled (Azure's Preempt notice, 30 s at best) as a repair policy
// with zero toleration, and Karpenter's node repair then deletes the pods with its 1 s floor,
// bypassing PDBs (docs/cloud-notes.md: karpenter-provider-azure #1695, #1829). The pod's own
// terminationGracePeriodSeconds only applies to graceful stops (scale-in, consolidation, drift).
const (
	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
)

// AllowsSpot reports whether the consumer's NodePool may run on spot VMs.
func (s ConsumerSettings) AllowsSpot() bool {
	return slices.Contains(s.AppCapacityTypes, CapacityTypeSpot)
}

// DefaultConsumerSettings returns the defaults: the seed's values where the seed had them.
func DefaultConsumerSettings() ConsumerSettings {
	return ConsumerSettings{
		Namespace:          "aqs-demo",
		ServiceAccountName: "aqs-app-service-account",
		DeploymentName:     "aqs-app",
		AppLabel:           "aqs-reader",

		Image: "",

		ScaleMode:                 ScaleModeScaledObject,
		ScaledObjectName:          "aws2az-queue-scaleobj",
		ScaledJobName:             "aws2az-queue-scaledjob",
		TriggerAuthenticationName: "keda-az-credentials",
		MinReplicas:               0,
		MaxReplicas:               DefaultMaxReplicas,
		QueueLength:               DefaultQueueLength,
		ActivationQueueLength:     0,
		PollingInterval:           30,
		CooldownPeriod:            10,

		ScaleUpStabilizationSeconds:   DefaultScaleUpStabilizationSeconds,
		ScaleDownStabilizationSeconds: DefaultScaleDownStabilizationSeconds,

		JobQueueLength:            DefaultJobQueueLength,
		JobMaxReplicas:            DefaultJobMaxReplicas,
		JobSuccessfulHistoryLimit: 3,
		JobFailedHistoryLimit:     5,
		JobScalingStrategy:        "default",
		JobActiveDeadlineSeconds:  600,
		JobBackoffLimit:           2,

		CPURequest:                    fmt.Sprintf("%dm", defaultCPURequestMilli),
		MemoryRequest:                 "64Mi",
		CPULimit:                      fmt.Sprintf("%dm", defaultCPULimitMilli),
		MemoryLimit:                   "128Mi",
		TerminationGracePeriodSeconds: 60,
		NodeFailureTolerationSeconds:  30,

		ConsumerConcurrency:       defaultConcurrency,
		ConsumerBatchSize:         32,
		ConsumerVisibilityTimeout: "60s",
		ConsumerMaxDeliveries:     5,

		NodePoolName:             "aqs-app-pool",
		NodePoolSKUFamily:        "D",
		NodePoolCPULimit:         "100",
		NodePoolConsolidateAfter: "1m",
		AppCapacityTypes:         []string{CapacityTypeOnDemand},
	}
}

// maxVisibilityTimeout is Azure Queue Storage's upper bound for a visibility timeout.
const maxVisibilityTimeout = 7 * 24 * time.Hour

// Validate returns every problem with the settings at once (errors.Join); each message names
// the json key and the rule.
func (s ConsumerSettings) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	// Kubernetes object names.
	dnsLabel := func(key, v string) {
		if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
			add("%s (%q) must be a DNS-1123 label: %s", key, v, strings.Join(msgs, "; "))
		}
	}
	dnsSubdomain := func(key, v string) {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			add("%s (%q) must be a DNS-1123 subdomain: %s", key, v, strings.Join(msgs, "; "))
		}
	}
	dnsLabel("namespace", s.Namespace)
	dnsSubdomain("serviceAccountName", s.ServiceAccountName)
	dnsLabel("deploymentName", s.DeploymentName)
	dnsSubdomain("scaledObjectName", s.ScaledObjectName)
	dnsSubdomain("scaledJobName", s.ScaledJobName)
	dnsSubdomain("triggerAuthenticationName", s.TriggerAuthenticationName)
	dnsSubdomain("nodePoolName", s.NodePoolName)
	if reservedNodePoolNames[s.NodePoolName] {
		add("nodePoolName (%q) is owned by AKS node autoprovisioning; choose another name", s.NodePoolName)
	}
	// The pool name is also a taint value and a node label value (karpenter.sh/nodepool).
	if msgs := validation.IsValidLabelValue(s.NodePoolName); len(msgs) > 0 && s.NodePoolName != "" {
		add("nodePoolName (%q) must be a valid label value: %s", s.NodePoolName, strings.Join(msgs, "; "))
	}
	if s.AppLabel == "" {
		add("appLabel must not be empty")
	} else if msgs := validation.IsValidLabelValue(s.AppLabel); len(msgs) > 0 {
		add("appLabel (%q) must be a valid label value: %s", s.AppLabel, strings.Join(msgs, "; "))
	}

	// Image.
	if s.Image != "" {
		if strings.ContainsAny(s.Image, " \t\n") || strings.Contains(s.Image, "://") {
			add("image (%q) must be an image reference like registry/repository:tag, without scheme or spaces", s.Image)
		}
	}

	// Scaling.
	switch s.ScaleMode {
	case ScaleModeScaledObject, ScaleModeScaledJob:
	default:
		add("scaleMode (%q) must be %q or %q", s.ScaleMode, ScaleModeScaledObject, ScaleModeScaledJob)
	}
	if s.MinReplicas < 0 {
		add("minReplicas (%d) must be >= 0", s.MinReplicas)
	}
	if s.MaxReplicas < 1 {
		add("maxReplicas (%d) must be >= 1", s.MaxReplicas)
	}
	if s.MaxReplicas < s.MinReplicas {
		add("maxReplicas (%d) must be >= minReplicas (%d)", s.MaxReplicas, s.MinReplicas)
	}
	if s.QueueLength <= 0 {
		add("queueLength (%d) must be > 0", s.QueueLength)
	}
	if s.ActivationQueueLength < 0 {
		add("activationQueueLength (%d) must be >= 0", s.ActivationQueueLength)
	}
	if s.PollingInterval < 1 {
		add("pollingInterval (%d) must be >= 1 second", s.PollingInterval)
	}
	if s.CooldownPeriod < 0 {
		add("cooldownPeriod (%d) must be >= 0 seconds", s.CooldownPeriod)
	}
	for _, w := range []struct {
		key string
		v   int
	}{{"scaleUpStabilizationSeconds", s.ScaleUpStabilizationSeconds}, {"scaleDownStabilizationSeconds", s.ScaleDownStabilizationSeconds}} {
		if w.v < 0 || w.v > maxStabilizationSeconds {
			add("%s (%d) must be between 0 and %d seconds (the HPA's limit)", w.key, w.v, maxStabilizationSeconds)
		}
	}

	// ScaledJob.
	if s.JobQueueLength <= 0 {
		add("jobQueueLength (%d) must be > 0", s.JobQueueLength)
	}
	if s.JobMaxReplicas < 1 {
		add("jobMaxReplicas (%d) must be >= 1", s.JobMaxReplicas)
	}
	if s.JobSuccessfulHistoryLimit < 0 {
		add("jobSuccessfulHistoryLimit (%d) must be >= 0", s.JobSuccessfulHistoryLimit)
	}
	if s.JobFailedHistoryLimit < 0 {
		add("jobFailedHistoryLimit (%d) must be >= 0", s.JobFailedHistoryLimit)
	}
	switch s.JobScalingStrategy {
	case "default", "accurate", "eager":
	default:
		// "custom" needs extra parameters this component does not expose.
		add("jobScalingStrategy (%q) must be one of default, accurate, eager", s.JobScalingStrategy)
	}
	if s.JobActiveDeadlineSeconds < 1 {
		add("jobActiveDeadlineSeconds (%d) must be >= 1", s.JobActiveDeadlineSeconds)
	}
	if s.JobBackoffLimit < 0 {
		add("jobBackoffLimit (%d) must be >= 0", s.JobBackoffLimit)
	}

	// Resources.
	quantity := func(key, v string) (resource.Quantity, bool) {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			add("%s (%q) must be a Kubernetes quantity (e.g. 250m, 64Mi): %v", key, v, err)
			return q, false
		}
		if q.Sign() <= 0 {
			add("%s (%q) must be > 0", key, v)
			return q, false
		}
		return q, true
	}
	cpuReq, okCPUReq := quantity("cpuRequest", s.CPURequest)
	memReq, okMemReq := quantity("memoryRequest", s.MemoryRequest)
	cpuLim, okCPULim := quantity("cpuLimit", s.CPULimit)
	memLim, okMemLim := quantity("memoryLimit", s.MemoryLimit)
	if okCPUReq && okCPULim && cpuReq.Cmp(cpuLim) > 0 {
		add("cpuRequest (%s) must be <= cpuLimit (%s)", s.CPURequest, s.CPULimit)
	}
	if okMemReq && okMemLim && memReq.Cmp(memLim) > 0 {
		add("memoryRequest (%s) must be <= memoryLimit (%s)", s.MemoryRequest, s.MemoryLimit)
	}
	if s.TerminationGracePeriodSeconds < 1 {
		add("terminationGracePeriodSeconds (%d) must be >= 1", s.TerminationGracePeriodSeconds)
	}
	if s.NodeFailureTolerationSeconds < 0 {
		add("nodeFailureTolerationSeconds (%d) must be >= 0", s.NodeFailureTolerationSeconds)
	}

	// Consumer tuning.
	if s.ConsumerConcurrency < 1 {
		add("consumerConcurrency (%d) must be >= 1", s.ConsumerConcurrency)
	}
	if s.ConsumerBatchSize < 1 || s.ConsumerBatchSize > 32 {
		add("consumerBatchSize (%d) must be between 1 and 32 (Azure Queue Storage's dequeue maximum)", s.ConsumerBatchSize)
	}
	if d, err := time.ParseDuration(s.ConsumerVisibilityTimeout); err != nil {
		add("consumerVisibilityTimeout (%q) must be a Go duration such as 60s: %v", s.ConsumerVisibilityTimeout, err)
	} else if d < time.Second || d > maxVisibilityTimeout {
		add("consumerVisibilityTimeout (%q) must be between 1s and 168h (Azure's limit)", s.ConsumerVisibilityTimeout)
	} else if d%time.Second != 0 {
		add("consumerVisibilityTimeout (%q) must be whole seconds (the queue counts in seconds)", s.ConsumerVisibilityTimeout)
	} else if drain := DrainTimeout(s.TerminationGracePeriodSeconds); s.TerminationGracePeriodSeconds >= 1 && d <= drain {
		// A message dequeued just before SIGTERM may be finished at the end of the drain: if it
		// reappeared before, another replica would do it again.
		add("consumerVisibilityTimeout (%s) must be longer than the drain after SIGTERM (%s, terminationGracePeriodSeconds %d less its margin), or messages still being finished reappear on the queue",
			s.ConsumerVisibilityTimeout, drain, s.TerminationGracePeriodSeconds)
	}
	if s.ConsumerMaxDeliveries < 1 {
		add("consumerMaxDeliveries (%d) must be >= 1", s.ConsumerMaxDeliveries)
	}

	// NodePool.
	if s.NodePoolSKUFamily == "" {
		add("nodePoolSkuFamily must not be empty (e.g. D)")
	} else if msgs := validation.IsValidLabelValue(s.NodePoolSKUFamily); len(msgs) > 0 {
		add("nodePoolSkuFamily (%q) must be a valid label value: %s", s.NodePoolSKUFamily, strings.Join(msgs, "; "))
	}
	if poolCPU, ok := quantity("nodePoolCpuLimit", s.NodePoolCPULimit); ok && okCPUReq && poolCPU.Cmp(cpuReq) < 0 {
		add("nodePoolCpuLimit (%s) must be >= cpuRequest (%s), or no consumer pod fits", s.NodePoolCPULimit, s.CPURequest)
	}
	if !consolidateAfterPattern.MatchString(s.NodePoolConsolidateAfter) {
		add("nodePoolConsolidateAfter (%q) must be a duration in s, m or h (e.g. 30s, 1m, 1h30m) or Never", s.NodePoolConsolidateAfter)
	}
	if len(s.AppCapacityTypes) == 0 {
		add("appCapacityTypes must name at least one of %s, %s", CapacityTypeSpot, CapacityTypeOnDemand)
	}
	seen := map[string]bool{}
	for _, c := range s.AppCapacityTypes {
		switch {
		case c != CapacityTypeSpot && c != CapacityTypeOnDemand:
			add("appCapacityTypes: %q is not a capacity type NAP offers (%s, %s)", c, CapacityTypeSpot, CapacityTypeOnDemand)
		case seen[c]:
			add("appCapacityTypes: %q is listed twice", c)
		}
		seen[c] = true
	}

	return errors.Join(errs...)
}

// WorkloadOutput is the stack's consumerWorkload output: where the workload lives on the cluster,
// so `verify` (and anyone scripting against the stack) finds it without the stack's config. The
// scaling numbers are not here on purpose: verify reads them from the live ScaledObject or
// ScaledJob, which is what KEDA acts on.
func (s ConsumerSettings) WorkloadOutput() map[string]string {
	return map[string]string{
		"namespace":        s.Namespace,
		"scaleMode":        s.ScaleMode,
		"deploymentName":   s.DeploymentName,
		"scaledObjectName": s.ScaledObjectName,
		"scaledJobName":    s.ScaledJobName,
		"nodePoolName":     s.NodePoolName,
		"appLabel":         s.AppLabel,
	}
}

// ReplicaRate is the estimated rate of one replica (messages/s) with concurrency request slots
// and a CPU limit of cpuLimitMilli, storage 10 ms away: the lower of the network's bound
// (benchFractionOfBound × concurrency / (10 ms × benchSlotRequestsPerMessage)) and the CPU's
// (cpuLimit / benchCPUMicrosPerMessage). For the defaults, 833 msg/s (CPU-bound), which the
// sizing rounds down to messagesPerSecondPerReplica. The plan shows drain times with it.
func ReplicaRate(concurrency int, cpuLimitMilli int64) float64 {
	network := benchFractionOfBound * float64(concurrency) / (assumedRequestMillis / 1000.0 * benchSlotRequestsPerMessage)
	cpu := float64(cpuLimitMilli) / 1000 / (benchCPUMicrosPerMessage / 1e6)
	return min(network, cpu)
}
