package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// One Azurite serves every test of the package (each test has its own queue and table); it
// starts on first use. A burst is small, so Azurite's queue garbage collector (harness/itest)
// never gets in the way.
var (
	azOnce sync.Once
	az     *azurite.Instance
	azErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if az != nil {
		az.Stop()
	}
	os.Exit(code)
}

// sharedAzurite returns the package's Azurite; the test fails (never skips) if it cannot start.
func sharedAzurite(t *testing.T) *azurite.Instance {
	t.Helper()
	azOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		az, azErr = azurite.Start(ctx, azurite.Options{Log: os.Stderr})
	})
	if azErr != nil {
		t.Fatalf("azurite could not start (these tests need it: run `npm ci` at the repository root, Node.js 20+): %v", azErr)
	}
	return az
}

const (
	systemNode = "aks-system-0"
	burst      = 50
)

var nameSeq atomic.Int64

// testWorkload is the stack's consumerWorkload output as the fake cluster has it.
func testWorkload(mode string) verify.Workload {
	return verify.Workload{
		Namespace: "edw", ScaleMode: mode, DeploymentName: "aqs-consumer", ScaledObjectName: "aqs-consumer",
		ScaledJobName: "aqs-consumer-job", NodePoolName: "app", AppLabel: "aqs-consumer",
	}
}

// scalerObject is the live KEDA object: polling every second, cooldown 1 s, scale from 0.
func scalerObject(w verify.Workload, queue string) *unstructured.Unstructured {
	trigger := map[string]any{
		"type": "azure-queue",
		"metadata": map[string]any{
			"queueName": queue, "accountName": "stedwdev", "queueLength": "5", "activationQueueLength": "0",
		},
	}
	spec := map[string]any{"pollingInterval": int64(1), "maxReplicaCount": int64(10), "triggers": []any{trigger}}
	kind, name := verify.ScaleModeScaledJob, w.ScaledJobName
	if w.ScaleMode == verify.ScaleModeScaledObject {
		kind, name = verify.ScaleModeScaledObject, w.ScaledObjectName
		spec["cooldownPeriod"] = int64(1)
		spec["minReplicaCount"] = int64(0)
		spec["scaleTargetRef"] = map[string]any{"name": w.DeploymentName}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": w.Namespace},
		"spec":     spec,
	}}
}

// setup describes one test's starting state.
type setup struct {
	mode string
	b    behaviour
	// replicas is the Deployment's spec.replicas before the run.
	replicas int32
	// preload messages are on the queue before the run.
	preload int
	// triggerQueue, when set, is the queue the trigger watches instead of the stack's.
	triggerQueue string
}

type env struct {
	inputs  verify.Inputs
	clients *storage.Clients
	fake    *fakeCluster
	out     *bytes.Buffer
}

// jobsCreated is how many Jobs the fake KEDA created in the env's cluster.
func (e *env) jobsCreated(t *testing.T) int {
	t.Helper()
	jobs, err := e.fake.kube.BatchV1().Jobs(e.fake.w.Namespace).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	return len(jobs.Items)
}

// newEnv makes a queue and table on the shared Azurite, a fake cluster in the given state, and
// starts the fake KEDA and consumer until the test ends.
func newEnv(t *testing.T, s setup) *env {
	t.Helper()
	a := sharedAzurite(t)
	n := nameSeq.Add(1)
	queue, table := fmt.Sprintf("verify-q%d", n), fmt.Sprintf("verifyt%d", n)
	clients, err := storage.NewClients(storage.Settings{QueueName: queue, TableName: table, ConnectionString: a.ConnectionString()}, storage.NewHTTPClient(32))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, storage.EnsureQueue(ctx, clients.Queue))
	require.NoError(t, storage.EnsureTable(ctx, clients.Table))
	for i := range s.preload {
		text, err := message.New(fmt.Sprintf("someone else's #%d", i+1), time.Now()).Encode()
		require.NoError(t, err)
		_, err = clients.Queue.EnqueueMessage(ctx, text, nil)
		require.NoError(t, err)
	}

	w := testWorkload(s.mode)
	replicas := s.replicas
	kube := k8sfake.NewSimpleClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: w.DeploymentName, Namespace: w.Namespace}, Spec: appsv1.DeploymentSpec{Replicas: &replicas}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: systemNode, UID: "node-system", Labels: map[string]string{"kubernetes.azure.com/mode": "system"}}},
	)
	triggerQueue := queue
	if s.triggerQueue != "" {
		triggerQueue = s.triggerQueue
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		verify.ScaledObjectGVR: "ScaledObjectList", verify.ScaledJobGVR: "ScaledJobList", verify.NodeClaimGVR: "NodeClaimList",
	}, scalerObject(w, triggerQueue))

	f := &fakeCluster{t: t, b: s.b, w: w, kube: kube, dyn: dyn, clients: clients, queue: queue, cooldown: time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { f.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &env{
		inputs: verify.Inputs{
			Stack: "test", Workload: w, AccountName: azurite.AccountName, QueueName: queue, TableName: table,
			Storage: clients, Kube: kube, Dynamic: dyn,
		},
		clients: clients, fake: f, out: &bytes.Buffer{},
	}
}

// options are the test's timings: KEDA polls every second, slack 2 s (scale-up limit 3 s,
// back-to-minimum limit 4 s after the drain; the fake takes a fraction of a second, and about
// 1 s for its cooldown, leaving room for a loaded machine).
func (e *env) options(timeout time.Duration) verify.Options {
	return verify.Options{Count: burst, Slack: 2 * time.Second, Timeout: timeout, Interval: 50 * time.Millisecond, Out: e.out}
}

func (e *env) run(t *testing.T, opts verify.Options) verify.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := verify.Run(ctx, e.inputs, opts)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("VERIFY_TEST_OUTPUT") != "" {
			t.Logf("verify output:\n%s", e.out.String())
		}
	})
	require.NoError(t, err)
	return rep
}

// states returns the failed and skipped checks' names.
func states(rep verify.Report) (failed, skipped []string) {
	for _, c := range rep.Checks {
		switch {
		case c.Skipped:
			skipped = append(skipped, c.Name)
		case !c.OK:
			failed = append(failed, c.Name)
		}
	}
	return failed, skipped
}

func check(t *testing.T, rep verify.Report, name string) verify.Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("report has no check %s", name)
	return verify.Check{}
}

// tableEntities counts the entities left in the table once the fake consumer has stopped.
func tableEntities(t *testing.T, e *env) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ents, err := storage.ListEntities(ctx, e.clients.Table)
	require.NoError(t, err)
	return len(ents)
}

var lineRE = regexp.MustCompile(`^verify: ([a-z-]+): (ok|FAILED|skipped) \(([0-9.]+)s\): \S`)

func TestRunPassesScaledObject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{mode: verify.ScaleModeScaledObject})
	rep := e.run(t, e.options(20*time.Second))
	failed, skipped := states(rep)
	assert.Empty(t, failed)
	assert.Empty(t, skipped)
	assert.True(t, rep.OK())
	assert.Equal(t, burst, rep.Burst)
	assert.Equal(t, "test", rep.Stack)
	assert.Equal(t, verify.ScaleModeScaledObject, rep.ScaleMode)

	// The timeline starts at rest, goes up, and comes back.
	require.GreaterOrEqual(t, len(rep.ReplicasTimeline), 3, "%+v", rep.ReplicasTimeline)
	assert.Equal(t, 0, rep.ReplicasTimeline[0].Replicas)
	assert.Equal(t, 2, rep.ReplicasTimeline[1].Replicas)
	assert.Equal(t, 0, rep.ReplicasTimeline[len(rep.ReplicasTimeline)-1].Replicas)
	assert.Less(t, check(t, rep, verify.CheckScaledUp).Seconds, 3.0)
	assert.Contains(t, check(t, rep, verify.CheckNodes).Evidence, "NodePool app had 0 nodes before the burst, 1 appeared after it (the first, aks-app-x1,")
	// Karpenter's NodeClaim for that node, with its lifecycle's times from the burst.
	assert.Regexp(t, `1 NodeClaims created since the burst \(times from it\): app-x1 \(Standard_D2s_v5 on-demand\): created \d+s, launched \d+s, registered \d+s, initialized not yet`, check(t, rep, verify.CheckNodes).Evidence)
	assert.Contains(t, check(t, rep, verify.CheckStoredOnce).Evidence, fmt.Sprintf("%d/%d messages stored", burst, burst))

	// The burst's entities are gone afterwards, and the run said how many it deleted.
	assert.Equal(t, burst, rep.EntitiesDeleted)
	assert.Equal(t, 0, tableEntities(t, e))
	assert.Contains(t, e.out.String(), fmt.Sprintf("verify: cleanup: deleted %d entities", burst))

	// One line per check, in order, in the documented form.
	var names []string
	for _, l := range strings.Split(e.out.String(), "\n") {
		if m := lineRE.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	assert.Equal(t, verify.CheckNames, names)

	// The JSON report's field names are what the e2e parses.
	j, err := rep.JSON()
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, json.Unmarshal([]byte(j), &generic))
	for _, k := range []string{"stack", "scaleMode", "burst", "checks", "replicasTimeline", "jobsCreated", "maxActiveJobs", "entitiesDeleted"} {
		assert.Contains(t, generic, k)
	}
	c0 := generic["checks"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "ok", "skipped", "seconds", "evidence"} {
		assert.Contains(t, c0, k)
	}
	p0 := generic["replicasTimeline"].([]any)[0].(map[string]any)
	assert.Contains(t, p0, "seconds")
	assert.Contains(t, p0, "replicas")
}

func TestRunPassesScaledJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{mode: verify.ScaleModeScaledJob})
	rep := e.run(t, e.options(20*time.Second))
	failed, skipped := states(rep)
	assert.Empty(t, failed)
	assert.Empty(t, skipped)
	// The fake KEDA starts 2 Jobs whenever none is active and messages wait; a burst sent slowly
	// (a loaded machine) can see the first pair drain the queue and finish before the rest
	// arrives, and a second pair start: verify must count whatever the cluster did.
	created := e.jobsCreated(t)
	assert.GreaterOrEqual(t, created, 2)
	assert.Equal(t, created, rep.JobsCreated, "verify counts every Job of the burst")
	assert.Equal(t, 2, rep.MaxActiveJobs)
	assert.Contains(t, check(t, rep, verify.CheckBackToMinimum).Evidence, fmt.Sprintf("jobs created %d, max active 2, succeeded %d, failed 0", created, created))
	assert.Contains(t, check(t, rep, verify.CheckScaledUp).Evidence, "first Job")
	assert.Equal(t, burst, rep.EntitiesDeleted)
	assert.Equal(t, 0, tableEntities(t, e))
}

func TestRunSkipScaleDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{mode: verify.ScaleModeScaledObject, b: behaviour{neverScaleDown: true}})
	opts := e.options(20 * time.Second)
	opts.SkipScaleDown = true
	rep := e.run(t, opts)
	failed, skipped := states(rep)
	assert.Empty(t, failed)
	assert.Equal(t, []string{verify.CheckBackToMinimum}, skipped)
	assert.True(t, rep.OK())
	assert.Contains(t, e.out.String(), "verify: back-to-minimum: skipped (0s): -skip-scale-down")
}

// TestRunEachCheckFails makes the fake misbehave in one way per case; exactly that check fails.
func TestRunEachCheckFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		setup    setup
		timeout  time.Duration
		want     string
		evidence string
		// skipped are the checks that must not run after the failure.
		skipped []string
		// leftover says the fake may write after verify's clean-up (the table is not checked).
		leftover bool
		// extra checks more of the report.
		extra func(t *testing.T, rep verify.Report)
	}{
		{
			// neverScaleDown: the fake KEDA would otherwise take the idle Deployment to 0 after its
			// 1 s cooldown, before a verify slowed by a loaded machine first looks.
			name: "already scaled before", setup: setup{mode: verify.ScaleModeScaledObject, replicas: 1, b: behaviour{neverScaleDown: true}},
			want: verify.CheckAtMinimumBefore, evidence: "the Deployment is at 1 replicas, not at rest (0)",
			skipped: verify.CheckNames[1:],
		},
		{
			name: "queue busy before", setup: setup{mode: verify.ScaleModeScaledObject, preload: 3, b: behaviour{neverScale: true}},
			want: verify.CheckAtMinimumBefore, evidence: "the queue holds 3 messages, more than activationQueueLength 0",
			skipped: verify.CheckNames[1:],
		},
		{
			name: "trigger on another queue", setup: setup{mode: verify.ScaleModeScaledObject, triggerQueue: "other"},
			want: verify.CheckAtMinimumBefore, evidence: `watches queue "other"`,
			skipped: verify.CheckNames[1:],
		},
		{
			name: "never scales", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{neverScale: true}}, timeout: 4 * time.Second,
			want: verify.CheckScaledUp, evidence: "no scale-up within", skipped: verify.CheckNames[2:],
		},
		{
			name: "ScaledJob never creates a Job", setup: setup{mode: verify.ScaleModeScaledJob, b: behaviour{neverScale: true}}, timeout: 4 * time.Second,
			want: verify.CheckScaledUp, evidence: "no scale-up within", skipped: verify.CheckNames[2:],
		},
		{
			name: "scales too late", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{scaleDelay: 4500 * time.Millisecond}},
			want: verify.CheckScaledUp, evidence: "later than the limit 3s = pollingInterval 1s + slack 2s",
		},
		{
			name: "pods outside the pool", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{offPool: true}},
			want: verify.CheckNodes, evidence: "run outside NodePool app",
		},
		{
			// The timeouts leave the fake consumer (real Azurite) room on a loaded 2-core machine:
			// under a cold .ci/run it once needed more than 7 s for 50 messages.
			name: "an entity missing", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{skipStore: 7}}, timeout: 20 * time.Second,
			want: verify.CheckStoredOnce, evidence: "1 of 50 messages have no entity at the keys their id maps to",
			extra: func(t *testing.T, rep verify.Report) {
				// The drain is timed by the sample that saw it, not by when verify got to look
				// (after stored-once waited out its timeout).
				assert.Less(t, check(t, rep, verify.CheckDrained).Seconds, check(t, rep, verify.CheckStoredOnce).Seconds-5)
			},
		},
		{
			name: "a second copy under other keys", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{duplicate: 7}},
			want: verify.CheckStoredOnce, evidence: "the run tag is on 51 entities for 50 messages",
		},
		{
			name: "queue not drained", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{keep: 7}}, timeout: 20 * time.Second,
			want: verify.CheckDrained, evidence: "the queue still holds 1 messages",
			skipped: []string{verify.CheckBackToMinimum}, leftover: true,
		},
		{
			name: "a message poisoned", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{poison: 7}},
			want: verify.CheckNothingPoisoned, evidence: "the poison queue holds 1 messages of this burst",
		},
		{
			name: "never back to zero", setup: setup{mode: verify.ScaleModeScaledObject, b: behaviour{neverScaleDown: true}},
			want: verify.CheckBackToMinimum, evidence: "replicas still 2, not 0",
		},
		{
			name: "ScaledJob's Jobs never finish", setup: setup{mode: verify.ScaleModeScaledJob, b: behaviour{neverScaleDown: true}},
			want: verify.CheckBackToMinimum, evidence: "2 Jobs still active",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.setup)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			rep := e.run(t, e.options(timeout))
			failed, skipped := states(rep)
			assert.Equal(t, []string{tc.want}, failed, "exactly this check fails")
			assert.Equal(t, tc.skipped, skipped)
			c := check(t, rep, tc.want)
			assert.Contains(t, c.Evidence, tc.evidence)
			assert.False(t, rep.OK())
			assert.Equal(t, fmt.Sprintf("verify: FAILED: %s: %s", tc.want, c.Evidence), rep.Summary())
			if tc.extra != nil {
				tc.extra(t, rep)
			}
			if !tc.leftover {
				// Also after a failure, nothing of the burst stays in the table.
				assert.Equal(t, 0, tableEntities(t, e), "entities left in the table")
			}
		})
	}
}
