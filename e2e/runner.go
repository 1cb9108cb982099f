package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/fakeentra"
	"github.com/aks-edw/aks-edw/harness/localcluster"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// runner holds one end-to-end run: the local cluster, the engine, and what to deploy next.
type runner struct {
	tools, bin, work, brk string
	out                   io.Writer

	log     *os.File
	cluster *localcluster.Cluster
	kube    *kube
	eng     engine
	want    *desired

	// The event-driven loop: Azurite's queue, the real KEDA operator (started by step 6) and the
	// consumer processes that stand in for the consumer's pods.
	azurite *azurite.Instance
	queue   *azqueue.QueueClient
	keda    *localcluster.KEDA
	adapter *localcluster.KEDAAdapter
	mirror  *localcluster.Mirror
	// karpenter launches the app pool's nodes from the stack's NodePool; nodeStart is how long
	// each of its nodes takes to turn Ready (a VM's boot).
	karpenter *localcluster.Karpenter
	nodeStart time.Duration
	// nodeWatch records the app pool's NodeClaims and nodes over the whole run.
	nodeWatch *nodeWatch
	// scaleOut samples the scaling loop from the scale-out burst through the scale-in;
	// drainedAt is when the scale-out's queue read 0 (from verify's report).
	scaleOut  *sampler
	drainedAt time.Time

	// entra plays GitHub's token endpoint and the Entra tenant kubelogin signs in to.
	entra *fakeentra.Entra
	// staticExpiry is when the static-assertion break's one assertion expires.
	staticExpiry time.Time
}

type step struct {
	title string
	run   func(context.Context) (string, error)
}

// run sets up the cluster, runs the steps in order until one fails, and tears everything down.
func (r *runner) run(ctx context.Context) (passed, total int, err error) {
	steps := []step{
		{"pulumi up creates the workload; the Deployment rolls out on a node Karpenter launches from the stack's NodePool", r.stepCreate},
		{"a second pulumi up changes nothing", r.stepNoChanges},
		{"user settings update in place, never replace", r.stepUpdateInPlace},
		{"scaleMode ScaledObject -> ScaledJob -> ScaledObject", r.stepSwitchScaleMode},
		{"the API server refuses invalid objects with its own message", r.stepRefused},
		{"(a) the real KEDA operator takes over: the idle Deployment goes to 0 and stays there", r.stepIdleAtZero},
		{"(b) fewer messages than activationQueueLength: KEDA reads them and stays at 0", r.stepBelowActivation},
		{"(c) a burst from zero with no app node: the pods wait Pending for Karpenter's node, the real consumer drains it, each message stored once (verify)", r.stepBurstScalesUp},
		{"(d) back to 0 after the cooldown; the consumer process drains and exits 0", r.stepBackToZero},
		{"(e) scale out: KEDA takes 0 -> 1, the HPA reads KEDA's metric through the aggregation layer and takes 1 -> N (verify)", r.stepScaleOut},
		{"(f) scale in: the HPA takes N -> 1 by the stack's scale-down window, then KEDA 1 -> 0 after the cooldown; Karpenter consolidates the empty nodes", r.stepScaleIn},
		{"(g) ScaledJob mode, nodes arriving late: a burst creates the Jobs it calls for and no more while their pods wait Pending; Karpenter leaves their nodes alone; all complete (verify)", r.stepScaledJob},
		{"(h) a node taken away mid-drain: its pods get SIGTERM and their grace period, nothing lost or poisoned, each message stored once (verify)", r.stepNodeTakenAway},
		{"(i) the stack's own TriggerAuthentication: KEDA accepts the trigger and fails only at the token", r.stepProductionAuth},
		{"(j) a misspelt trigger key: the API server stores it, the operator refuses it with its own message", r.stepOperatorRefusesTypo},
		{"removing the workload deletes its objects; destroy leaves DeletedWith objects to the cluster", r.stepRemoveAndDestroy},
	}
	total = len(steps)
	runStart := time.Now()
	defer r.teardown()
	if err := r.setup(ctx); err != nil {
		return 0, total, fmt.Errorf("setting up: %w", err)
	}
	for i, s := range steps {
		start := time.Now()
		evidence, err := s.run(ctx)
		if err == nil {
			err = r.cluster.Exited()
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			fmt.Fprintf(r.out, "e2e: step %d FAILS (%s) after %.0fs: %v\n", i+1, s.title, time.Since(start).Seconds(), err)
			if r.keda != nil {
				fmt.Fprintf(r.out, "e2e: last lines of the KEDA operator's log (%s):\n%s\n", r.keda.LogPath, r.keda.Tail(25))
			}
			if r.karpenter != nil {
				fmt.Fprintf(r.out, "e2e: last lines of Karpenter's log (%s):\n%s\n", r.karpenter.LogPath, r.karpenter.Tail(10))
			}
			if r.adapter != nil {
				fmt.Fprintf(r.out, "e2e: last lines of KEDA's metrics adapter's log (%s):\n%s\n", r.adapter.LogPath, r.adapter.Tail(15))
			}
			return passed, total, fmt.Errorf("step %d: %w", i+1, err)
		}
		passed++
		fmt.Fprintf(r.out, "e2e: step %d holds (%s) in %.0fs: %s\n", i+1, s.title, time.Since(start).Seconds(), evidence)
	}
	// Over the whole run the deployer's tokens ran out many times; each new one came from a
	// fresh assertion, never from one that had expired.
	if c := r.entra.Counts(); c.Expired > 0 || c.Refused > 0 {
		return passed, total, fmt.Errorf("the fake Entra refused %d expired assertions and %d other token requests over the run: %w", c.Expired, c.Refused, errStep)
	}
	fmt.Fprintf(r.out, "e2e: over the whole run (%.0fs), %s\n", time.Since(runStart).Seconds(), r.tokensEvidence())
	return passed, total, nil
}

func (r *runner) setup(ctx context.Context) error {
	start := time.Now()
	for _, b := range append([]string{"pulumi", "pulumi-resource-kubernetes", localcluster.KEDABinary, localcluster.KEDAAdapterBinary, localcluster.KarpenterBinary}, localcluster.Binaries...) {
		if _, err := os.Stat(filepath.Join(r.bin, b)); err != nil {
			return fmt.Errorf("%s is not built in %s: run `make e2e-tools` (or `make e2e`, which does): %w", b, r.bin, err)
		}
	}
	var err error
	if r.log, err = os.Create(filepath.Join(r.work, "pulumi.log")); err != nil {
		return err
	}
	stages, err := localcluster.Resolve(ctx, kwokStages)
	if err != nil {
		return fmt.Errorf("kwok's stage files: %w", err)
	}
	jobStages, err := localcluster.WriteJobPodStages(filepath.Join(r.work, "stages"))
	if err != nil {
		return fmt.Errorf("the Job pod stages: %w", err)
	}
	stages = append(stages, jobStages...)
	stock, err := localcluster.Resolve(ctx, []localcluster.ModuleFile{nodeInitializeStage})
	if err != nil {
		return fmt.Errorf("kwok's node-initialize stage: %w", err)
	}
	nodeStages, err := localcluster.WriteNodeStages(stock[0], filepath.Join(r.work, "stages"), r.nodeStart)
	if err != nil {
		return err
	}
	stages = append(stages, nodeStages...)
	bins, err := r.buildPrograms(ctx)
	if err != nil {
		return err
	}
	if err := r.startAzurite(ctx); err != nil {
		return err
	}
	crds, err := localcluster.Resolve(ctx, crdFiles)
	if err != nil {
		return fmt.Errorf("the CRDs: %w", err)
	}
	if err := r.startEntra(); err != nil {
		return fmt.Errorf("the fake Entra: %w", err)
	}
	r.cluster, err = localcluster.Start(ctx, localcluster.Options{BinDir: r.bin, Dir: r.work, KwokStages: stages, Log: r.log,
		APIServerFlags: r.entra.OIDCFlags(deployerPrefix), HPASyncPeriod: e2eHPASyncPeriod})
	if err != nil {
		return err
	}
	if r.kube, err = newKube(r.cluster.RESTConfig); err != nil {
		return err
	}
	names, err := r.cluster.InstallCRDs(ctx, crds)
	if err != nil {
		return err
	}
	settings := components.DefaultConsumerSettings()
	settings.PollingInterval, settings.CooldownPeriod = e2ePollingInterval, e2eCooldownPeriod
	settings.ActivationQueueLength, settings.QueueLength = e2eActivationQueueLength, e2eQueueLength
	settings.JobQueueLength, settings.JobMaxReplicas = e2eJobQueueLength, e2eJobMaxReplicas
	settings.ConsumerBatchSize, settings.ConsumerConcurrency = e2eConsumerBatchSize, e2eConsumerConcurrency
	settings.ScaleDownStabilizationSeconds = e2eScaleDownStabilization
	settings.NodePoolConsolidateAfter = e2eConsolidateAfter
	if err := settings.Validate(); err != nil {
		return fmt.Errorf("the e2e's stack config: %w", err)
	}
	ns := systemNodes()
	if err := r.cluster.AddNodes(ctx, ns); err != nil {
		return err
	}
	if err := r.startKarpenter(ctx, settings.NodePoolName, settings.Namespace, settings.AppLabel); err != nil {
		return err
	}
	if err := r.kedaOperatorStandIn(ctx); err != nil {
		return fmt.Errorf("the KEDA add-on's operator stand-in: %w", err)
	}
	// One real consumer process per consumer pod kwok runs, against Azurite.
	r.mirror, err = localcluster.StartMirror(ctx, r.kube.cs, localcluster.MirrorOptions{
		Namespace: settings.Namespace,
		Selector:  "app=" + settings.AppLabel,
		Binary:    bins.Consumer,
		Env:       map[string]string{"AZURE_STORAGE_CONNECTION_STRING": r.azurite.ConnectionString()},
		LogDir:    filepath.Join(r.work, "logs", "pods"),
		Log:       r.log,
	})
	if err != nil {
		return fmt.Errorf("the pod mirror: %w", err)
	}
	r.want = &desired{settings: settings, imageTag: "v1", withWorkload: true, brk: r.brk,
		azuriteAuth: true, kwokNodeClass: true, connectionString: r.azurite.ConnectionString()}
	kubeconfig, err := r.deployerKubeconfig()
	if err != nil {
		return err
	}
	stack, cliVersion, err := newStack(ctx, r.tools, r.work, program(r.cluster.Kubeconfig, kubeconfig, r.want))
	if err != nil {
		return err
	}
	server, err := r.kube.cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	r.eng = engine{stack: stack, log: r.log}
	fmt.Fprintf(r.out, "e2e: setup in %.0fs: %s; etcd, kube-apiserver %s, controller manager, scheduler and kwok on loopback; CRDs %s (KEDA %s, Karpenter %s); %d kwok system node Ready and no app pool node: Karpenter %s (core's kwok provider, out of cluster) launches them from the stack's NodePool (Azure Dsv5 sizes from %s), each Ready %s after Karpenter creates it; kube-system/%s plays the KEDA add-on's objects (its operator and metrics adapter run from step 6; the HPA controller syncs every %s); Azurite queue %s on 127.0.0.1:%d; consumer pods mirrored to processes; the program, its provider and verify reach the API server through kubelogin %s in the workloadidentity mode, signing in to a fake Entra tenant with fake GitHub assertions (the API server trusts the tenant's tokens: user %s) (engine log: %s)\n",
		time.Since(start).Seconds(), cliVersion, server.GitVersion, strings.Join(names, ", "), kedaVersion, karpenterVersion, len(ns), r.karpenter.Version, instanceTypesFile, r.nodeStart, components.KedaOperatorName, e2eHPASyncPeriod, queueName, r.azurite.QueuePort, kubeloginVersion, r.deployer(), r.log.Name())
	return nil
}

func (r *runner) teardown() {
	if r.mirror != nil {
		r.mirror.Stop()
	}
	if r.nodeWatch != nil {
		r.nodeWatch.stop()
	}
	if r.cluster != nil {
		r.cluster.Stop()
	}
	if r.azurite != nil {
		r.azurite.Stop()
	}
	if r.entra != nil {
		r.entra.Stop()
	}
	if r.log != nil {
		r.log.Close()
	}
}

// kedaOperatorStandIn creates what the AKS KEDA add-on installs and the workload patches: the
// kube-system/keda-operator service account and Deployment, on the system node like AKS's own.
func (r *runner) kedaOperatorStandIn(ctx context.Context) error {
	ns, name := components.KedaNamespace, components.KedaOperatorName
	if _, err := r.kube.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{"app": name}
	one := int32(1)
	if _, err := r.kube.cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					NodeSelector:       map[string]string{"kubernetes.azure.com/mode": "system"},
					Tolerations:        []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
					Containers:         []corev1.Container{{Name: name, Image: "registry.invalid/keda-operator-stand-in:e2e"}},
				},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return r.waitRollout(ctx, ns, name, 60*time.Second)
}

// waitRollout polls a Deployment until its current template is fully available.
func (r *runner) waitRollout(ctx context.Context, ns, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ro, err := r.kube.rollout(ctx, ns, name)
		if err != nil {
			return err
		}
		if ro.complete() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s/%s not rolled out after %s: %s", ns, name, timeout, ro)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// engineError is the engine's error with its error diagnostics, which carry the provider's
// (and so the API server's) message.
func engineError(op string, o outcome, err error) error {
	if len(o.errors) > 0 {
		return fmt.Errorf("pulumi %s failed: %s", op, strings.Join(o.errors, " | "))
	}
	return fmt.Errorf("pulumi %s failed: %w", op, err)
}

var errStep = errors.New("does not hold")

// buildPrograms builds the consumer (run for each mirrored pod) and verify into <work>/bin; the
// leftover check covers that folder too.
func (r *runner) buildPrograms(ctx context.Context) (procs.Binaries, error) {
	root, err := azurite.RepoRoot()
	if err != nil {
		return procs.Binaries{}, err
	}
	dir := filepath.Join(r.work, "bin")
	bins, err := procs.Build(ctx, root, dir)
	if err != nil {
		return bins, err
	}
	for name, pkg := range map[string]string{"verify": "./cmd/verify"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return bins, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return bins, nil
}

// startAzurite starts the queue, poison queue and table's Azurite and creates the queue and the
// table, as the stack's storage component does (the consumer recreates the poison queue itself).
func (r *runner) startAzurite(ctx context.Context) error {
	var err error
	if r.azurite, err = azurite.Start(ctx, azurite.Options{Log: r.log}); err != nil {
		return fmt.Errorf("starting Azurite: %w", err)
	}
	set := storage.Settings{QueueName: queueName, TableName: tableName, ConnectionString: r.azurite.ConnectionString()}
	c, err := storage.NewClients(set, storage.NewHTTPClient(8))
	if err != nil {
		return err
	}
	if err := storage.EnsureQueue(ctx, c.Queue); err != nil {
		return err
	}
	if err := storage.EnsureTable(ctx, c.Table); err != nil {
		return err
	}
	r.queue = c.Queue
	return nil
}
