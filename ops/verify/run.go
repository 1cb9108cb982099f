// Package verify is the user's "does it work" after `pulumi up` (SPEC §10), as a library: it
// sends a tagged burst to the stack's queue with the producer's code and checks, with timings,
// that KEDA scales the consumer up from rest in time, NAP gives it nodes, every message is
// stored exactly once by its id, the queue drains, nothing is poisoned, and the consumer is back
// at rest after the cooldown; then it deletes the entities it caused. cmd/verify reads the stack's
// outputs and builds the clients; the e2e drives the same Run.
//
// The checks are decisions over observations (decide.go: pure functions), fed by a sampler of
// the cluster (observe.go) and reads of the queue and table (storage.go).
package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/producer"
	"github.com/aks-edw/aks-edw/app/retry"
	"github.com/aks-edw/aks-edw/app/storage"
)

// Workload is the stack's consumerWorkload output: where the consumer lives on the cluster.
type Workload struct {
	// Namespace holds the consumer's objects.
	Namespace string `json:"namespace"`
	// ScaleMode is ScaleModeScaledObject or ScaleModeScaledJob.
	ScaleMode string `json:"scaleMode"`
	// DeploymentName is the consumer Deployment (ScaledObject mode).
	DeploymentName string `json:"deploymentName"`
	// ScaledObjectName is the ScaledObject (ScaledObject mode).
	ScaledObjectName string `json:"scaledObjectName"`
	// ScaledJobName is the ScaledJob (ScaledJob mode).
	ScaledJobName string `json:"scaledJobName"`
	// NodePoolName is the Karpenter NodePool the consumer pods run on.
	NodePoolName string `json:"nodePoolName"`
	// AppLabel is the value of the consumer pods' "app" label.
	AppLabel string `json:"appLabel"`

	// Platform is PlatformAKS (also when empty) or PlatformContainerApps; the fields above are
	// AKS's, those below Container Apps'.
	Platform string `json:"platform"`
	// ResourceGroupName holds the environment and the app or job.
	ResourceGroupName string `json:"resourceGroupName"`
	// EnvironmentName is the Container Apps environment.
	EnvironmentName string `json:"environmentName"`
	// AppName and AppID are the Container App (ScaledObject mode) or the job (ScaledJob mode).
	AppName string `json:"appName"`
	AppID   string `json:"appId"`
	// AppKind is ContainerApp or Job.
	AppKind string `json:"appKind"`
}

// OnContainerApps reports whether the workload is a Container App or a Container Apps job.
func (w Workload) OnContainerApps() bool { return w.Platform == PlatformContainerApps }

// Missing returns the fields verify needs for the workload's scale mode that are empty, named
// consumerWorkload.<key>, sorted.
func (w Workload) Missing() []string {
	need := map[string]string{"namespace": w.Namespace, "scaleMode": w.ScaleMode, "nodePoolName": w.NodePoolName, "appLabel": w.AppLabel}
	switch {
	case w.OnContainerApps():
		need = map[string]string{"scaleMode": w.ScaleMode, "resourceGroupName": w.ResourceGroupName, "appName": w.AppName, "appId": w.AppID}
	case w.ScaleMode == ScaleModeScaledObject:
		need["deploymentName"], need["scaledObjectName"] = w.DeploymentName, w.ScaledObjectName
	case w.ScaleMode == ScaleModeScaledJob:
		need["scaledJobName"] = w.ScaledJobName
	}
	var missing []string
	for k, v := range need {
		if v == "" {
			missing = append(missing, "consumerWorkload."+k)
		}
	}
	sort.Strings(missing)
	return missing
}

// Validate reports the missing fields (Missing) and a scale mode verify does not know.
func (w Workload) Validate() error {
	var errs []error
	if missing := w.Missing(); len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing stack outputs: %s", strings.Join(missing, ", ")))
	}
	if w.Platform != "" && w.Platform != PlatformAKS && w.Platform != PlatformContainerApps {
		errs = append(errs, fmt.Errorf("stack output consumerWorkload.platform is %q: this verify knows %s and %s", w.Platform, PlatformAKS, PlatformContainerApps))
	}
	if w.ScaleMode != "" && w.ScaleMode != ScaleModeScaledObject && w.ScaleMode != ScaleModeScaledJob {
		errs = append(errs, fmt.Errorf("stack output consumerWorkload.scaleMode is %q: must be %s or %s", w.ScaleMode, ScaleModeScaledObject, ScaleModeScaledJob))
	}
	return errors.Join(errs...)
}

// Inputs are what Run works on: the stack's names and the clients to reach its storage and
// cluster.
type Inputs struct {
	// Stack is the Pulumi stack's name (for the report and advice).
	Stack string
	// Workload is the stack's consumerWorkload output.
	Workload Workload
	// AccountName, QueueName and TableName are the stack's storage outputs.
	AccountName, QueueName, TableName string
	// Storage holds the queue, poison queue and table clients (app/storage.NewClients).
	Storage *storage.Clients
	// Kube reads the Deployment, Jobs, pods and nodes (AKS; unused when Platform is set).
	Kube kubernetes.Interface
	// Dynamic reads the ScaledObject or ScaledJob (AKS; unused when Platform is set).
	Dynamic dynamic.Interface
	// Platform reads the scaler and samples the consumer; nil means the Kubernetes cluster of
	// Kube and Dynamic (KubernetesPlatform). Container Apps stacks set ContainerAppsPlatform.
	Platform Platform
}

// platform is in.Platform, or the cluster of Kube and Dynamic; nil when neither is given.
func (in Inputs) platform() Platform {
	if in.Platform != nil {
		return in.Platform
	}
	if in.Kube == nil || in.Dynamic == nil {
		return nil
	}
	return KubernetesPlatform(in.Kube, in.Dynamic, in.Workload)
}

// Defaults and bounds of Options.
const (
	DefaultCount       = 100
	MaxCount           = 10000
	DefaultSlack       = 60 * time.Second
	DefaultTimeout     = 15 * time.Minute
	DefaultInterval    = time.Second
	DefaultConcurrency = 16
)

// Options tune a run. Count and Timeout are required; Interval, Concurrency, Tag and Out take
// their defaults when zero.
type Options struct {
	// Count is the burst's size (1 to MaxCount; the CLI's default is DefaultCount).
	Count int
	// Slack is added to pollingInterval for scaled-up, and to cooldownPeriod + pollingInterval
	// for back-to-minimum (0 is no slack; the CLI's default is DefaultSlack).
	Slack time.Duration
	// Timeout bounds, from the burst's first message, the waits for the scale-up (to tell late
	// from never), the nodes, the entities and the drain (the CLI's default is DefaultTimeout).
	Timeout time.Duration
	// SkipScaleDown skips back-to-minimum.
	SkipScaleDown bool
	// Interval is how often the cluster is sampled and storage polled (DefaultInterval).
	Interval time.Duration
	// Concurrency bounds the enqueues, point reads and deletes in flight (DefaultConcurrency).
	Concurrency int
	// Tag is the run tag the burst's texts start with ("<tag> #<n>"); random "verify-<hex>"
	// when empty.
	Tag string
	// Out receives a line per step and check as the run goes (nil: discarded).
	Out io.Writer
}

func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Tag == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		o.Tag = "verify-" + hex.EncodeToString(b[:])
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// Validate reports every option out of range, named by its CLI flag where it has one.
func (o Options) Validate() error {
	var errs []error
	if o.Count < 1 || o.Count > MaxCount {
		errs = append(errs, fmt.Errorf("-count=%d: must be between 1 and %d", o.Count, MaxCount))
	}
	if o.Slack < 0 {
		errs = append(errs, fmt.Errorf("-slack=%s: must be >= 0", o.Slack))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout=%s: must be > 0", o.Timeout))
	}
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be >= 0 (0 = %s)", o.Interval, DefaultInterval))
	}
	if o.Concurrency < 0 || o.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be between 0 (= %d) and 1024", o.Concurrency, DefaultConcurrency))
	}
	if strings.ContainsAny(o.Tag, "'#") {
		errs = append(errs, fmt.Errorf("tag %q: must not contain ' or #", o.Tag))
	}
	return errors.Join(errs...)
}

// Run verifies the stack: it reads the live ScaledObject or ScaledJob, checks the consumer is at
// rest, sends a burst of opts.Count tagged messages with the producer's code and runs the checks
// in the order of CheckNames, writing a line for each to opts.Out; then it deletes the burst's
// entities, also when a check failed. A failed check is in the Report (the error is nil). The
// error is non-nil when verify could not do its work: the KEDA object is missing or invalid,
// the queue or table is missing, storage refuses the caller (an *AccessError), the cluster
// cannot be read, or the queue accepted none of the burst.
func Run(ctx context.Context, in Inputs, opts Options) (Report, error) {
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	r := &runner{in: in, opts: opts, results: map[string]Check{}, skipReason: map[string]string{}}
	err := r.run(ctx)
	return r.report(), err
}

type runner struct {
	in   Inputs
	opts Options

	before     Observation
	beforeJobs map[string]bool
	rec        recorder
	start      time.Time

	results    map[string]Check
	skipReason map[string]string
	burst      int
	deleted    int
	timeline   []ReplicaPoint
	jobs       jobStats
}

func (r *runner) printf(format string, a ...any) {
	fmt.Fprintf(r.opts.Out, "verify: "+format+"\n", a...)
}

// record keeps a check's verdict and prints its line. took is how long the wait took; a timed
// verdict says itself when the samples decided it.
func (r *runner) record(name string, v verdict, took time.Duration) Check {
	if v.timed {
		took = v.at
	}
	c := Check{Name: name, OK: v.ok, Seconds: seconds(took), Evidence: v.evidence}
	r.results[name] = c
	fmt.Fprintln(r.opts.Out, c.Line())
	return c
}

// skip marks a check as not run, with the reason, and prints its line.
func (r *runner) skip(name, reason string) {
	c := Check{Name: name, Skipped: true, Evidence: reason}
	r.results[name] = c
	fmt.Fprintln(r.opts.Out, c.Line())
}

// skipRest marks every check without a verdict as not run.
func (r *runner) skipRest(reason string) {
	for _, name := range CheckNames {
		if _, done := r.results[name]; !done {
			r.skip(name, reason)
		}
	}
}

func (r *runner) report() Report {
	rep := Report{
		Stack: r.in.Stack, ScaleMode: r.in.Workload.ScaleMode, Burst: r.burst,
		Checks: []Check{}, ReplicasTimeline: r.timeline, EntitiesDeleted: r.deleted,
		JobsCreated: r.jobs.Created, MaxActiveJobs: r.jobs.MaxActive,
	}
	if rep.ReplicasTimeline == nil {
		rep.ReplicasTimeline = []ReplicaPoint{}
	}
	for _, name := range CheckNames {
		c, ok := r.results[name]
		if !ok {
			c = Check{Name: name, Skipped: true, Evidence: "not run"}
		}
		rep.Checks = append(rep.Checks, c)
	}
	return rep
}

func (r *runner) target(service string) Target {
	t := Target{Service: service, Account: r.in.AccountName, Stack: r.in.Stack, Name: r.in.QueueName}
	switch service {
	case ServicePoisonQueue:
		t.Name = r.in.QueueName + storage.PoisonSuffix
	case ServiceTable:
		t.Name = r.in.TableName
	}
	return t
}

// storageErr turns a storage error into an *AccessError when it is one, else wraps it with
// what was being done.
func (r *runner) storageErr(service, doing string, err error) error {
	if ae := ClassifyAccess(err, r.target(service)); ae != nil {
		return ae
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// wait calls decide until it is done or deadline passes (then once more with final true),
// every Interval. An interruption ends it with a failure.
func (r *runner) wait(ctx context.Context, deadline time.Time, decide func(final bool) verdict) verdict {
	for {
		final := !time.Now().Before(deadline)
		v := decide(final)
		if v.done {
			return v
		}
		if final {
			return fail("no verdict by the deadline")
		}
		t := time.NewTimer(min(r.opts.Interval, max(time.Until(deadline), 0)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fail("interrupted while waiting (%v)", context.Cause(ctx))
		case <-t.C:
		}
	}
}

func (r *runner) run(ctx context.Context) (err error) {
	in, opts := r.in, r.opts
	if err := in.Workload.Validate(); err != nil {
		return err
	}
	platform := in.platform()
	if in.Storage == nil || in.Storage.Queue == nil || in.Storage.Poison == nil || in.Storage.Table == nil || platform == nil {
		return errors.New("verify.Inputs: the queue, poison queue and table clients and the platform (both Kubernetes clients, or Platform) are required")
	}
	s, err := platform.ReadScaler(ctx)
	if err != nil {
		return err
	}
	r.printf("scaler: %s (live object)", s)

	// Storage answers, and the caller may use it, before anything is sent.
	var depth0 int
	var exists bool
	err = once(ctx, func(ctx context.Context) (err error) {
		depth0, exists, err = depth(ctx, in.Storage.Queue)
		return err
	})
	if err != nil {
		return r.storageErr(ServiceQueue, "reading queue "+in.QueueName, err)
	}
	if !exists {
		return fmt.Errorf("queue %s does not exist in storage account %s (is the stack deployed, and does AZURE_STORAGE_CONNECTION_STRING, if set, point at its account?)", in.QueueName, in.AccountName)
	}
	poisonBefore, err := r.poisonCount(ctx)
	if err != nil {
		return err
	}
	if err := once(ctx, func(ctx context.Context) error {
		_, _, err := readEntity(ctx, in.Storage.Table, "verify-preflight")
		return err
	}); err != nil {
		if re := responseError(err); re != nil && re.ErrorCode == codeTableNotFound {
			return fmt.Errorf("table %s does not exist in storage account %s (is the stack deployed?)", in.TableName, in.AccountName)
		}
		return r.storageErr(ServiceTable, "reading table "+in.TableName, err)
	}

	checkStart := time.Now()
	r.before, err = platform.Observe(ctx)
	if err != nil {
		where := "on the cluster"
		if in.Workload.OnContainerApps() {
			where = "from Azure Resource Manager"
		}
		return fmt.Errorf("reading the workload %s: %w", where, err)
	}
	r.beforeJobs = map[string]bool{}
	for _, j := range r.before.Jobs {
		r.beforeJobs[j.UID] = true
	}
	if c := r.record(CheckAtMinimumBefore, atMinimumVerdict(s, in.QueueName, r.before, depth0), time.Since(checkStart)); !c.OK {
		r.skipRest("not run: " + CheckAtMinimumBefore + " failed, so a burst would prove nothing")
		return nil
	}

	// From here on the cluster is sampled every Interval, and the burst's entities are cleaned
	// up whatever happens.
	sctx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	r.start = time.Now()
	depthOf := func(ctx context.Context) (int, error) {
		n, _, err := depth(ctx, in.Storage.Queue)
		return n, err
	}
	sampling.Go(func() { sample(sctx, platform.Observe, depthOf, r.start, opts.Interval, &r.rec) })
	enq := newRecordingEnqueuer(in.Storage.Queue)
	defer func() {
		stopSampling()
		sampling.Wait()
		samples := r.rec.snapshot()
		r.timeline = timeline(s.Kind, samples)
		if s.Kind == ScaleModeScaledJob {
			r.jobs = jobStatsOf(samples, r.beforeJobs)
		}
		if cerr := r.cleanup(ctx, enq); err == nil && cerr != nil {
			err = cerr
		}
	}()

	sum, perr := producer.Run(ctx, enq, producer.Options{
		Count: opts.Count, Concurrency: min(opts.Concurrency, opts.Count), Text: opts.Tag, MaxConsecutiveFailures: 5,
	}, nil, nil)
	sentAt := time.Since(r.start) // the whole burst is on the queue from here
	sent, _, lastErr := enq.result()
	r.burst = len(sent)
	if len(sent) < opts.Count {
		if lastErr != nil {
			if ae := ClassifyAccess(lastErr, r.target(ServiceQueue)); ae != nil {
				return ae
			}
		}
		if len(sent) == 0 {
			return fmt.Errorf("burst: queue %s accepted none of %d messages: %w", in.QueueName, opts.Count, errors.Join(perr, lastErr))
		}
		r.printf("burst: WARNING: the queue accepted %d of %d messages (last error: %v); checking those", len(sent), opts.Count, lastErr)
	}
	r.printf("burst: %d messages tagged %q sent in %s", len(sent), opts.Tag, fmtSeconds(seconds(sum.Elapsed)))

	// scaled-up: wait up to Timeout, so a late scale-up is told from none at all.
	limit := scaleUpLimit(s, opts.Slack)
	noted := false
	v := r.wait(ctx, r.start.Add(opts.Timeout), func(final bool) verdict {
		v := scaledUpVerdict(s, opts.Slack, r.rec.snapshot(), r.beforeJobs, final)
		if !v.done && !noted && time.Since(r.start) > limit {
			noted = true
			r.printf("scaled-up: no scale-up by the limit (%s); watching up to -timeout (%s) to tell late from never", fmtSeconds(seconds(limit)), opts.Timeout)
		}
		return v
	})
	r.record(CheckScaledUp, v, time.Since(r.start))
	if _, found := scaleUpAt(s, r.rec.snapshot(), r.beforeJobs); !found {
		r.skipRest("not run: the consumer never scaled up")
		return nil
	}

	deadline := r.start.Add(opts.Timeout)
	switch {
	case ctx.Err() != nil:
	case !platform.HasNodes():
		r.skip(CheckNodes, "Container Apps: replicas run on the platform's own capacity, there are no nodes of the stack's to watch")
	default:
		v = r.wait(ctx, deadline, func(final bool) verdict {
			return nodesVerdict(in.Workload.NodePoolName, r.before, r.rec.snapshot(), final)
		})
		// What Karpenter (NAP) launched for the burst, and how long each node took. Reading
		// them is not the check: a cluster without NodeClaims (or the right to list them) says so.
		if lister, ok := platform.(nodeClaimLister); ok && ctx.Err() == nil {
			if claims, err := lister.NodeClaims(ctx); err != nil {
				v.evidence += "; NodeClaims not read: " + err.Error()
			} else {
				v.evidence += "; " + burstNodeClaims(claims, r.start)
			}
		}
		r.record(CheckNodes, v, time.Since(r.start))
	}

	if ctx.Err() == nil {
		v, err = r.storedOnce(ctx, sent, deadline)
		if err != nil {
			return err
		}
		r.record(CheckStoredOnce, v, time.Since(r.start))
	}

	// drained: from the sampled depth; a 403 on the queue stops verify.
	if ctx.Err() == nil {
		v = r.wait(ctx, deadline, func(final bool) verdict {
			return drainedVerdict(r.rec.snapshot(), sentAt, final)
		})
		if !v.ok && ctx.Err() == nil {
			if _, _, err := depth(ctx, in.Storage.Queue); err != nil {
				if ae := ClassifyAccess(err, r.target(ServiceQueue)); ae != nil {
					return ae
				}
			}
		}
		r.record(CheckDrained, v, time.Since(r.start))
	}

	if ctx.Err() == nil {
		checkStart = time.Now()
		after, err := r.poisonCount(ctx)
		if err != nil {
			return err
		}
		ids := map[string]bool{}
		for _, m := range sent {
			ids[m.ID] = true
		}
		var peeked int
		var ours []string
		err = once(ctx, func(ctx context.Context) (err error) {
			peeked, ours, err = poisonOf(ctx, in.Storage.Poison, opts.Tag, ids)
			return err
		})
		if err != nil {
			return r.storageErr(ServicePoisonQueue, "peeking the poison queue", err)
		}
		r.record(CheckNothingPoisoned, poisonVerdict(poisonBefore, after, peeked, ours), time.Since(checkStart))
	}

	drain, drained := drainedAt(r.rec.snapshot(), sentAt)
	switch {
	case ctx.Err() != nil:
	case opts.SkipScaleDown:
		r.skip(CheckBackToMinimum, "-skip-scale-down: not waited for")
	case !drained || !r.results[CheckDrained].OK:
		r.skip(CheckBackToMinimum, "not run: the queue is not drained, so KEDA keeps the consumer up")
	default:
		v = r.wait(ctx, r.start.Add(drain+backToMinimumLimit(s, opts.Slack)), func(final bool) verdict {
			return backToMinimumVerdict(s, opts.Slack, r.rec.snapshot(), r.beforeJobs, drain, final)
		})
		r.record(CheckBackToMinimum, v, time.Since(r.start.Add(drain)))
	}
	if ctx.Err() != nil {
		r.skipRest(fmt.Sprintf("not run: interrupted (%v)", context.Cause(ctx)))
	}
	return nil
}

// once runs a single storage read with a few quick retries of transient errors (the clients
// have the SDK's retries off): a throttled or failed request is not a verdict. A 403 is retried
// too, briefly (app/retry treats it as transient), then classified by the caller.
func once(ctx context.Context, op func(ctx context.Context) error) error {
	pol := retry.Default()
	pol.Attempts, pol.Max = 4, 2*time.Second
	return pol.Do(ctx, op)
}

// poisonCount reads the poison queue's count; a missing poison queue counts as empty.
func (r *runner) poisonCount(ctx context.Context) (poisonCount, error) {
	var n int
	var exists bool
	err := once(ctx, func(ctx context.Context) (err error) {
		n, exists, err = depth(ctx, r.in.Storage.Poison)
		return err
	})
	if err != nil {
		return poisonCount{}, r.storageErr(ServicePoisonQueue, "reading the poison queue", err)
	}
	return poisonCount{Count: n, Exists: exists}, nil
}

// storedOnce waits until every message's entity is found (point reads), then queries the run
// tag once, and decides.
func (r *runner) storedOnce(ctx context.Context, sent []sentMsg, deadline time.Time) (verdict, error) {
	found := map[string]message.Entity{}
	var tagged []message.Entity
	queried := false
	var fatal error
	lastErr := ""
	v := r.wait(ctx, deadline, func(final bool) verdict {
		if err := readMissing(ctx, r.in.Storage.Table, sent, found, r.opts.Concurrency); err != nil {
			if ae := ClassifyAccess(err, r.target(ServiceTable)); ae != nil {
				fatal = ae
				return fail("%v", ae)
			}
			lastErr = err.Error()
		}
		if len(found) == len(sent) && !queried {
			t, err := queryTag(ctx, r.in.Storage.Table, r.opts.Tag)
			switch {
			case err == nil:
				tagged, queried = t, true
			case ClassifyAccess(err, r.target(ServiceTable)) != nil:
				fatal = ClassifyAccess(err, r.target(ServiceTable))
				return fail("%v", fatal)
			default:
				lastErr = err.Error()
			}
		}
		v := storedOnceVerdict(sent, found, tagged, queried, final)
		if !v.ok && v.done && lastErr != "" {
			v.evidence += "; last storage error: " + lastErr
		}
		return v
	})
	return v, fatal
}

// cleanup deletes the burst's entities and says how many; it runs even when ctx was cancelled.
func (r *runner) cleanup(ctx context.Context, enq *recordingEnqueuer) error {
	_, ids, _ := enq.result()
	if len(ids) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	n, err := cleanup(cctx, r.in.Storage.Table, r.opts.Tag, ids, r.opts.Concurrency)
	r.deleted = n
	left := ""
	if d, _, derr := depth(cctx, r.in.Storage.Queue); derr == nil && d > 0 {
		left = fmt.Sprintf("; the queue still holds %d messages, so entities stored after this carry the tag %q: delete them by hand", d, r.opts.Tag)
	}
	if err != nil {
		r.printf("cleanup: deleted %d entities of %s, but not all: %v%s", n, r.opts.Tag, err, left)
		if ae := ClassifyAccess(err, r.target(ServiceTable)); ae != nil {
			return ae
		}
		return nil
	}
	r.printf("cleanup: deleted %d entities of %s%s", n, r.opts.Tag, left)
	return nil
}
