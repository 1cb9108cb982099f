package verify

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// NodePoolLabel is the label Karpenter (NAP) puts on every node of a NodePool, valued with the
// pool's name.
const NodePoolLabel = "karpenter.sh/nodepool"

// AppLabelKey is the consumer pods' selector label; its value is consumerWorkload.appLabel.
const AppLabelKey = "app"

// JobState is one Job of the ScaledJob as one sample saw it.
type JobState struct {
	// Name and UID identify the Job.
	Name, UID string
	// Succeeded and Failed are its Complete and Failed conditions; a Job with neither is
	// active.
	Succeeded, Failed bool
}

// Active reports whether the Job has not finished.
func (j JobState) Active() bool { return !j.Succeeded && !j.Failed }

// PodState is one consumer pod as one sample saw it.
type PodState struct {
	// Name and UID identify the pod.
	Name, UID string
	// Node is spec.nodeName ("" until scheduled).
	Node string
}

// Observation is one sample of the cluster, and of the queue's depth.
type Observation struct {
	// At is when the sample was started, since the burst's first message (zero for the snapshot
	// taken before it).
	At time.Duration
	// Replicas is the Deployment's spec.replicas (ScaledObject mode).
	Replicas int32
	// Jobs are the ScaledJob's Jobs (ScaledJob mode).
	Jobs []JobState
	// Pods are the pods labelled app=<appLabel> in the workload's namespace.
	Pods []PodState
	// PoolNodes are the names of the nodes labelled karpenter.sh/nodepool=<nodePoolName>.
	PoolNodes []string
	// Err is why the cluster part of the sample is incomplete ("" when it is whole); decisions
	// skip such samples.
	Err string
	// Depth is the queue's approximate message count, -1 when it was not read.
	Depth int
	// DepthErr is why Depth could not be read.
	DepthErr string
}

// ActiveJobs counts the sample's Jobs that have not finished.
func (o Observation) ActiveJobs() int {
	n := 0
	for _, j := range o.Jobs {
		if j.Active() {
			n++
		}
	}
	return n
}

// Observe takes one sample of the workload: the Deployment's replicas or the ScaledJob's Jobs,
// the consumer pods and the app pool's nodes.
func Observe(ctx context.Context, kube kubernetes.Interface, w Workload) (Observation, error) {
	var o Observation
	if w.ScaleMode == ScaleModeScaledJob {
		jobs, err := kube.BatchV1().Jobs(w.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: labels.Set{ScaledJobLabel: w.ScaledJobName}.String(),
		})
		if err != nil {
			return o, fmt.Errorf("listing the Jobs of ScaledJob %s/%s: %w", w.Namespace, w.ScaledJobName, err)
		}
		for _, j := range jobs.Items {
			o.Jobs = append(o.Jobs, jobState(j))
		}
		sort.Slice(o.Jobs, func(a, b int) bool { return o.Jobs[a].Name < o.Jobs[b].Name })
	} else {
		d, err := kube.AppsV1().Deployments(w.Namespace).Get(ctx, w.DeploymentName, metav1.GetOptions{})
		if err != nil {
			return o, fmt.Errorf("reading Deployment %s/%s: %w", w.Namespace, w.DeploymentName, err)
		}
		o.Replicas = 1 // the API's default when spec.replicas is unset
		if d.Spec.Replicas != nil {
			o.Replicas = *d.Spec.Replicas
		}
	}
	pods, err := kube.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{AppLabelKey: w.AppLabel}.String(),
	})
	if err != nil {
		return o, fmt.Errorf("listing the consumer pods (%s=%s) in %s: %w", AppLabelKey, w.AppLabel, w.Namespace, err)
	}
	for _, p := range pods.Items {
		o.Pods = append(o.Pods, PodState{Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName})
	}
	sort.Slice(o.Pods, func(a, b int) bool { return o.Pods[a].Name < o.Pods[b].Name })
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{NodePoolLabel: w.NodePoolName}.String(),
	})
	if err != nil {
		return o, fmt.Errorf("listing the nodes of NodePool %s: %w", w.NodePoolName, err)
	}
	for _, n := range nodes.Items {
		o.PoolNodes = append(o.PoolNodes, n.Name)
	}
	sort.Strings(o.PoolNodes)
	return o, nil
}

func jobState(j batchv1.Job) JobState {
	s := JobState{Name: j.Name, UID: string(j.UID)}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			s.Succeeded = true
		case batchv1.JobFailed:
			s.Failed = true
		}
	}
	return s
}

// recorder keeps the samples taken during a run.
type recorder struct {
	mu      sync.Mutex
	samples []Observation
}

func (r *recorder) add(o Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, o)
}

// snapshot returns the samples so far (the slice is not shared with later adds).
func (r *recorder) snapshot() []Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Observation(nil), r.samples...)
}

// sample observes the workload with observe, and the queue's depth with depthOf, every interval from start
// until ctx ends; the first sample is taken at once. It returns when ctx ends.
func sample(ctx context.Context, observe func(context.Context) (Observation, error), depthOf func(context.Context) (int, error), start time.Time, every time.Duration, rec *recorder) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		at := time.Since(start)
		o, err := observe(ctx)
		o.At, o.Depth = at, -1
		if err != nil {
			o.Err = err.Error()
		}
		if d, err := depthOf(ctx); err != nil {
			o.DepthErr = err.Error()
		} else {
			o.Depth = d
		}
		if ctx.Err() != nil {
			return
		}
		rec.add(o)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
