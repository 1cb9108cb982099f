package verify_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// behaviour says how the fake KEDA and consumer misbehave; the zero value behaves.
type behaviour struct {
	// scaleDelay is how long the queue must be active before the fake KEDA scales up.
	scaleDelay time.Duration
	// neverScale: KEDA never scales up (and so no consumer runs).
	neverScale bool
	// neverScaleDown: KEDA never scales back to 0 / Jobs never finish.
	neverScaleDown bool
	// offPool puts the consumer pods on the system node, outside the app NodePool.
	offPool bool
	// skipStore is the burst message number (the "#n" of its text) whose entity the consumer
	// does not store, though it deletes the message.
	skipStore int
	// duplicate is the message number the consumer also stores under keys derived from the
	// queue message id (a second copy, with the tag).
	duplicate int
	// keep is the message number the consumer stores but never deletes (the delete fails).
	keep int
	// poison is the message number the consumer also moves a copy of to the poison queue.
	poison int
}

// fakeCluster plays KEDA, the Kubernetes controllers, Karpenter and the consumer against a fake
// clientset and the real (Azurite) queue and table, every tick until its context ends.
type fakeCluster struct {
	t       *testing.T
	b       behaviour
	w       verify.Workload
	kube    *k8sfake.Clientset
	dyn     dynamic.Interface
	clients *storage.Clients
	queue   string
	// cooldown is the fake KEDA's cooldown after the queue was last active (ScaledObject).
	cooldown time.Duration

	activeSince, lastActive time.Time
	seq                     int
	nodeUp                  bool
}

var msgNumber = regexp.MustCompile(` #(\d+)$`)

// number returns the "#n" of a burst message's text, or 0.
func number(text string) int {
	m := msgNumber.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func (f *fakeCluster) run(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := f.step(ctx); err != nil && ctx.Err() == nil {
			f.t.Logf("fake cluster: %v", err)
		}
	}
}

func (f *fakeCluster) step(ctx context.Context) error {
	depth, err := storage.Depth(ctx, f.clients.Queue)
	if err != nil {
		return err
	}
	now := time.Now()
	if depth > 0 { // activationQueueLength 0
		if f.activeSince.IsZero() {
			f.activeSince = now
		}
		f.lastActive = now
	} else {
		f.activeSince = time.Time{}
	}
	if f.w.ScaleMode == verify.ScaleModeScaledJob {
		return f.stepJobs(ctx, depth, now)
	}
	d, err := f.kube.AppsV1().Deployments(f.w.Namespace).Get(ctx, f.w.DeploymentName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	replicas := *d.Spec.Replicas
	switch {
	case replicas == 0 && depth > 0 && !f.b.neverScale && now.Sub(f.activeSince) >= f.b.scaleDelay:
		if err := f.scale(ctx, d, 2); err != nil {
			return err
		}
		for range 2 {
			if err := f.startPod(ctx, ""); err != nil {
				return err
			}
		}
	case replicas > 0 && depth == 0 && now.Sub(f.lastActive) >= f.cooldown && !f.b.neverScaleDown:
		if err := f.scale(ctx, d, 0); err != nil {
			return err
		}
		return f.kube.CoreV1().Pods(f.w.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	if replicas > 0 {
		return f.consume(ctx)
	}
	return nil
}

func (f *fakeCluster) scale(ctx context.Context, d *appsv1.Deployment, n int32) error {
	d.Spec.Replicas = &n
	_, err := f.kube.AppsV1().Deployments(f.w.Namespace).Update(ctx, d, metav1.UpdateOptions{})
	return err
}

// startPod makes Karpenter's node when the pool has none, then a consumer pod bound to it (or
// to the system node with offPool).
func (f *fakeCluster) startPod(ctx context.Context, job string) error {
	node := "aks-" + f.w.NodePoolName + "-x1"
	if !f.nodeUp {
		_, err := f.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: node, UID: types.UID("node-" + node), Labels: map[string]string{verify.NodePoolLabel: f.w.NodePoolName},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		// Karpenter's NodeClaim for it: launched and registered, not yet initialized.
		now := time.Now().UTC().Format(time.RFC3339)
		claim := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
			"metadata": map[string]any{"name": "app-x1", "creationTimestamp": now, "labels": map[string]any{
				verify.NodePoolLabel: f.w.NodePoolName, "node.kubernetes.io/instance-type": "Standard_D2s_v5", "karpenter.sh/capacity-type": "on-demand",
			}},
			"status": map[string]any{"nodeName": node, "conditions": []any{
				map[string]any{"type": "Launched", "status": "True", "lastTransitionTime": now},
				map[string]any{"type": "Registered", "status": "True", "lastTransitionTime": now},
				map[string]any{"type": "Initialized", "status": "Unknown", "lastTransitionTime": now},
			}},
		}}
		if _, err := f.dyn.Resource(verify.NodeClaimGVR).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
			return err
		}
		f.nodeUp = true
	}
	if f.b.offPool {
		node = systemNode
	}
	f.seq++
	labels := map[string]string{verify.AppLabelKey: f.w.AppLabel}
	if job != "" {
		labels["job-name"] = job
	}
	_, err := f.kube.CoreV1().Pods(f.w.Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("consumer-%d", f.seq), Namespace: f.w.Namespace, UID: types.UID(fmt.Sprintf("pod-%d", f.seq)), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
	}, metav1.CreateOptions{})
	return err
}

func (f *fakeCluster) stepJobs(ctx context.Context, depth int, now time.Time) error {
	jobs, err := f.kube.BatchV1().Jobs(f.w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var active []batchv1.Job
	for _, j := range jobs.Items {
		if len(j.Status.Conditions) == 0 {
			active = append(active, j)
		}
	}
	if len(active) == 0 && depth > 0 && !f.b.neverScale && now.Sub(f.activeSince) >= f.b.scaleDelay {
		for range 2 {
			f.seq++
			name := fmt.Sprintf("%s-%d", f.w.ScaledJobName, f.seq)
			j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: f.w.Namespace, UID: types.UID("job-" + name),
				Labels: map[string]string{verify.ScaledJobLabel: f.w.ScaledJobName},
			}}
			if _, err := f.kube.BatchV1().Jobs(f.w.Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil {
				return err
			}
			if err := f.startPod(ctx, name); err != nil {
				return err
			}
		}
		return nil
	}
	if len(active) == 0 {
		return nil
	}
	if err := f.consume(ctx); err != nil {
		return err
	}
	if depth == 0 && !f.b.neverScaleDown { // the jobs' consumers found the queue empty and exit 0
		for _, j := range active {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			j.Status.Succeeded = 1
			if _, err := f.kube.BatchV1().Jobs(f.w.Namespace).UpdateStatus(ctx, &j, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// consume is one batch of the consumer: dequeue, store the entity exactly as the consumer does
// (message.Parse, message.NewEntity, Entity.Marshal, an insert-or-replace upsert), then delete
// the message; with the behaviour's misdeeds.
func (f *fakeCluster) consume(ctx context.Context) error {
	n, vis := int32(32), int32(1)
	resp, err := f.clients.Queue.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: &vis})
	if err != nil {
		return err
	}
	for _, m := range resp.Messages {
		p, err := message.Parse(*m.MessageText)
		if err != nil {
			return fmt.Errorf("fake consumer: %w", err)
		}
		num := number(p.Msg)
		e := message.NewEntity(*m.MessageID, *m.DequeueCount, p, time.Now())
		if num != f.b.skipStore {
			if err := f.upsert(ctx, e); err != nil {
				return err
			}
		}
		if num == f.b.duplicate {
			dup := e
			dup.PartitionKey, dup.RowKey = message.Keys(*m.MessageID)
			if err := f.upsert(ctx, dup); err != nil {
				return err
			}
		}
		if num == f.b.poison {
			if err := storage.EnsureQueue(ctx, f.clients.Poison); err != nil {
				return err
			}
			rec, err := message.NewPoisonRecord(f.queue, *m.MessageID, *m.DequeueCount, *m.MessageText, message.PoisonOverDelivered, "fake", time.Now()).Encode()
			if err != nil {
				return err
			}
			if _, err := f.clients.Poison.EnqueueMessage(ctx, rec, nil); err != nil {
				return err
			}
		}
		if num == f.b.keep {
			continue
		}
		if _, err := f.clients.Queue.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeCluster) upsert(ctx context.Context, e message.Entity) error {
	b, err := e.Marshal()
	if err != nil {
		return err
	}
	_, err = f.clients.Table.UpsertEntity(ctx, b, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
	return err
}
