package verify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Scale modes: the kind of KEDA object that scales the consumer (the stack's
// consumerWorkload.scaleMode).
const (
	ScaleModeScaledObject = "ScaledObject"
	ScaleModeScaledJob    = "ScaledJob"
)

// The KEDA resources verify reads (keda.sh/v1alpha1).
var (
	ScaledObjectGVR = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	ScaledJobGVR    = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
)

// KEDA's defaults for fields the object leaves out, from KEDA's source (v2.17.3):
// apis/keda/v1alpha1/withtriggers_types.go (defaultPollingInterval = 30),
// pkg/scaling/executor/scale_executor.go (defaultCooldownPeriod = 5 * 60),
// pkg/scaling/executor/scale_scaledobjects.go getIdleOrMinimumReplicaCount (no
// minReplicaCount: scale to 0), apis/keda/v1alpha1/scaledobject_types.go
// (defaultHPAMaxReplicas = 100), apis/keda/v1alpha1/scaledjob_types.go
// (defaultScaledJobMinReplicaCount = 0, defaultScaledJobMaxReplicaCount = 100), and
// pkg/scalers/azure_queue_scaler.go (queueLength default=5, activationQueueLength default=0).
const (
	DefaultPollingInterval       = 30 * time.Second
	DefaultCooldownPeriod        = 300 * time.Second
	DefaultMinReplicaCount       = 0
	DefaultMaxReplicaCount       = 100
	DefaultQueueLength           = 5
	DefaultActivationQueueLength = 0
)

// ScaledJobLabel is the label KEDA puts on every Job (and its pod template) it creates for a
// ScaledJob, valued with the ScaledJob's name (KEDA v2.17.3 pkg/scaling/executor/scale_jobs.go,
// generateJobs).
const ScaledJobLabel = "scaledjob.keda.sh/name"

// AzureQueueTrigger is the type of KEDA's Azure Storage queue trigger.
const AzureQueueTrigger = "azure-queue"

// Scaler is what verify takes from the live ScaledObject or ScaledJob, defaults applied: the
// numbers KEDA acts on, whatever the stack's config says.
type Scaler struct {
	// Kind is ScaleModeScaledObject or ScaleModeScaledJob.
	Kind string
	// Namespace and Name locate the object.
	Namespace, Name string
	// PollingInterval is how often KEDA checks the trigger.
	PollingInterval time.Duration
	// CooldownPeriod is how long after the trigger was last active a ScaledObject is scaled
	// back to its idle/minimum count (ScaledJob has none: 0).
	CooldownPeriod time.Duration
	// MinReplicaCount is spec.minReplicaCount (replicas, or Jobs kept for a ScaledJob).
	MinReplicaCount int32
	// IdleReplicaCount is a ScaledObject's spec.idleReplicaCount, nil when unset.
	IdleReplicaCount *int32
	// MaxReplicaCount is spec.maxReplicaCount.
	MaxReplicaCount int32
	// QueueLength and ActivationQueueLength are the azure-queue trigger's metadata.
	QueueLength, ActivationQueueLength int64
	// QueueName is the queue the trigger watches.
	QueueName string
	// Target is a ScaledObject's scaleTargetRef.name.
	Target string
	// Paused says KEDA's pause annotation is set (autoscaling.keda.sh/paused or
	// autoscaling.keda.sh/paused-replicas): KEDA will not scale.
	Paused bool
}

// AtRest is the replica count KEDA leaves an idle ScaledObject at: idleReplicaCount when set,
// else minReplicaCount (KEDA's getIdleOrMinimumReplicaCount). For a ScaledJob it is the number
// of Jobs KEDA keeps (minReplicaCount).
func (s Scaler) AtRest() int32 {
	if s.IdleReplicaCount != nil {
		return *s.IdleReplicaCount
	}
	return s.MinReplicaCount
}

// String describes the scaler on one line.
func (s Scaler) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s: pollingInterval %s", s.Kind, s.Namespace, s.Name, fmtSeconds(s.PollingInterval.Seconds()))
	if s.Kind == ScaleModeScaledObject {
		fmt.Fprintf(&b, ", cooldownPeriod %s", fmtSeconds(s.CooldownPeriod.Seconds()))
	}
	fmt.Fprintf(&b, ", minReplicaCount %d", s.MinReplicaCount)
	if s.IdleReplicaCount != nil {
		fmt.Fprintf(&b, ", idleReplicaCount %d", *s.IdleReplicaCount)
	}
	fmt.Fprintf(&b, ", maxReplicaCount %d, queueLength %d, activationQueueLength %d, queue %s",
		s.MaxReplicaCount, s.QueueLength, s.ActivationQueueLength, s.QueueName)
	if s.Paused {
		b.WriteString(" (PAUSED by annotation: KEDA will not scale)")
	}
	return b.String()
}

// ReadScaler reads the live ScaledObject or ScaledJob of the workload through the dynamic client.
func ReadScaler(ctx context.Context, dyn dynamic.Interface, w Workload) (Scaler, error) {
	gvr, name := ScaledObjectGVR, w.ScaledObjectName
	if w.ScaleMode == ScaleModeScaledJob {
		gvr, name = ScaledJobGVR, w.ScaledJobName
	}
	obj, err := dyn.Resource(gvr).Namespace(w.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Scaler{}, fmt.Errorf("%s %s/%s not found on the cluster (is KEDA installed and the stack's workload deployed?)", w.ScaleMode, w.Namespace, name)
	}
	if err != nil {
		return Scaler{}, fmt.Errorf("reading %s %s/%s: %w", w.ScaleMode, w.Namespace, name, err)
	}
	return ParseScaler(obj)
}

// ParseScaler takes the scaling numbers from a ScaledObject or ScaledJob, applying KEDA's
// defaults to the fields it leaves out.
func ParseScaler(obj *unstructured.Unstructured) (Scaler, error) {
	s := Scaler{
		Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
		PollingInterval: DefaultPollingInterval, MinReplicaCount: DefaultMinReplicaCount,
		MaxReplicaCount: DefaultMaxReplicaCount, QueueLength: DefaultQueueLength,
		ActivationQueueLength: DefaultActivationQueueLength,
	}
	if s.Kind != ScaleModeScaledObject && s.Kind != ScaleModeScaledJob {
		return Scaler{}, fmt.Errorf("%s/%s is a %q, not a ScaledObject or ScaledJob", s.Namespace, s.Name, s.Kind)
	}
	where := fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name)
	var errs []error
	num := func(field string) (int64, bool) {
		v, found, err := unstructured.NestedFieldNoCopy(obj.Object, "spec", field)
		if err != nil || !found || v == nil {
			return 0, false
		}
		switch n := v.(type) {
		case int64:
			return n, true
		case int32:
			return int64(n), true
		case int:
			return int64(n), true
		case float64:
			if n == float64(int64(n)) {
				return int64(n), true
			}
		}
		errs = append(errs, fmt.Errorf("%s: spec.%s = %v is not an integer", where, field, v))
		return 0, false
	}
	if n, ok := num("pollingInterval"); ok {
		s.PollingInterval = time.Duration(n) * time.Second
	}
	if s.Kind == ScaleModeScaledObject {
		s.CooldownPeriod = DefaultCooldownPeriod
		if n, ok := num("cooldownPeriod"); ok {
			s.CooldownPeriod = time.Duration(n) * time.Second
		}
		if n, ok := num("idleReplicaCount"); ok {
			v := int32(n)
			s.IdleReplicaCount = &v
		}
		if target, found, _ := unstructured.NestedString(obj.Object, "spec", "scaleTargetRef", "name"); found {
			s.Target = target
		}
	}
	if n, ok := num("minReplicaCount"); ok {
		s.MinReplicaCount = int32(n)
	}
	if n, ok := num("maxReplicaCount"); ok {
		s.MaxReplicaCount = int32(n)
	}
	ann := obj.GetAnnotations()
	_, pausedReplicas := ann["autoscaling.keda.sh/paused-replicas"]
	s.Paused = pausedReplicas || strings.EqualFold(ann["autoscaling.keda.sh/paused"], "true")

	triggers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "triggers")
	found := false
	for _, t := range triggers {
		tm, ok := t.(map[string]any)
		if !ok || tm["type"] != AzureQueueTrigger {
			continue
		}
		found = true
		md, _ := tm["metadata"].(map[string]any)
		str := func(key string) (string, bool) {
			v, ok := md[key]
			if !ok || v == nil {
				return "", false
			}
			return fmt.Sprint(v), true
		}
		s.QueueName, _ = str("queueName")
		for key, dst := range map[string]*int64{"queueLength": &s.QueueLength, "activationQueueLength": &s.ActivationQueueLength} {
			if v, ok := str(key); ok && v != "" {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: azure-queue trigger %s = %q is not an integer", where, key, v))
					continue
				}
				*dst = n
			}
		}
		break
	}
	if !found {
		errs = append(errs, fmt.Errorf("%s has no %s trigger", where, AzureQueueTrigger))
	}
	if err := errors.Join(errs...); err != nil {
		return Scaler{}, err
	}
	return s, nil
}
