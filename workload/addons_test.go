package workload

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// without returns the add-on discovery minus the given paths (an add-on not installed yet).
func without(paths ...string) map[string]any {
	out := map[string]any{}
	for k, v := range pulumitest.AddonDiscovery {
		out[k] = v
	}
	for _, p := range paths {
		delete(out, p)
	}
	return out
}

// fast gives up quickly, yet leaves a loaded machine time for a few polls.
var fast = AddonWait{Timeout: 1500 * time.Millisecond, Interval: 50 * time.Millisecond}

func TestWaitForAddonsServed(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	require.NoError(t, WaitForAddons(context.Background(), kc, RequiredAddons, fast))
}

// Each add-on that is missing is named, and the wait gives up after its timeout.
func TestWaitForAddonsNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		missing string
		want    string
	}{
		{"/apis/keda.sh/v1alpha1", "KEDA's ScaledObject kind"},
		{"/apis/karpenter.sh/v1", "Karpenter's NodePool kind"},
		{"/apis/apps/v1/namespaces/kube-system/deployments/keda-operator", "the KEDA operator's Deployment"},
		{"/api/v1/namespaces/kube-system/serviceaccounts/keda-operator", "the KEDA operator's service account"},
	} {
		t.Run(tc.missing, func(t *testing.T) {
			srv, kc := pulumitest.NewAPIServer(without(tc.missing))
			defer srv.Close()
			start := time.Now()
			err := WaitForAddons(context.Background(), kc, RequiredAddons, fast)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "KEDA add-on and node autoprovisioning are enabled")
			assert.Less(t, time.Since(start), 10*time.Second)
		})
	}
	// A group served without the kind (CRD not established yet) is missing too.
	partial := without()
	partial["/apis/keda.sh/v1alpha1"] = map[string]any{"kind": "APIResourceList", "groupVersion": "keda.sh/v1alpha1",
		"resources": []any{map[string]any{"name": "scaledobjects"}}}
	srv, kc := pulumitest.NewAPIServer(partial)
	defer srv.Close()
	err := WaitForAddons(context.Background(), kc, RequiredAddons, fast)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ScaledJob kind")
	assert.NotContains(t, err.Error(), "ScaledObject kind")
}

// The add-ons arrive while the program waits: it goes on as soon as they are served.
func TestWaitForAddonsAppearLater(t *testing.T) {
	var calls atomic.Int32
	srv, kc := pulumitest.NewAPIServerFunc(func(path string) (any, bool) {
		if calls.Add(1) <= int32(3*len(RequiredAddons)) {
			return nil, false // not installed yet: 404
		}
		body, ok := pulumitest.AddonDiscovery[path]
		return body, ok
	})
	defer srv.Close()
	require.NoError(t, WaitForAddons(context.Background(), kc, RequiredAddons, AddonWait{Timeout: 10 * time.Second, Interval: 20 * time.Millisecond}))
	assert.Greater(t, calls.Load(), int32(3*len(RequiredAddons)), "it polled until they were served")
}

func TestWaitForAddonsBadInput(t *testing.T) {
	err := WaitForAddons(context.Background(), "not: [a kubeconfig", RequiredAddons, fast)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reading the cluster's kubeconfig")

	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	err = WaitForAddons(context.Background(), strings.Replace(kc, pulumitest.MockToken, "wrong-token", 1), RequiredAddons, fast)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401", "an authorization failure is reported, not hidden as 'missing'")
	assert.Contains(t, err.Error(), "Azure Kubernetes Service RBAC Cluster Admin", "and what to check for it")
}

// Issue 17 item 1: a 403 (a role assignment not propagated yet) is "not yet": the wait keeps
// polling and succeeds once the API server lets it in.
func TestWaitForAddonsWaitsOutA403(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	forbidden := &forbidUntil{next: srv.Config.Handler, until: 3 * int32(len(RequiredAddons))}
	srv.Config.Handler = forbidden
	require.NoError(t, WaitForAddons(context.Background(), kc, RequiredAddons, AddonWait{Timeout: 10 * time.Second, Interval: 20 * time.Millisecond}))
	assert.Greater(t, forbidden.seen.Load(), forbidden.until, "it polled through the 403s")
}

// forbidUntil answers 403 to the first until requests, then hands them to next.
type forbidUntil struct {
	next  http.Handler
	until int32
	seen  atomic.Int32
}

func (f *forbidUntil) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.seen.Add(1) <= f.until {
		http.Error(w, `{"kind":"Status","code":403}`, http.StatusForbidden)
		return
	}
	f.next.ServeHTTP(w, r)
}

// Through Deploy: when the cluster does not serve KEDA's kinds, `pulumi up` fails with the wait's
// message and registers no Kubernetes object at all.
func TestDeployWaitsForAddons(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(without("/apis/keda.sh/v1alpha1"))
	defer srv.Close()
	m, err := deploy(t, components.DefaultConsumerSettings(), func(a *Args) {
		a.Kubeconfig = pulumi.String(kc).ToStringOutput()
		a.AddonWait = fast
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "waiting for the deployer's access and the cluster's add-ons")
	assert.Contains(t, err.Error(), "KEDA's ScaledObject kind")
	for _, r := range m.Resources() {
		assert.False(t, strings.HasPrefix(r.Type, "kubernetes:"), "%s %s must not be created before the add-ons are served", r.Type, r.Name)
	}
}

// When the deadline cuts a poll short, the error reports the poll before it: what is really
// missing, not every path with "context deadline exceeded".
func TestWaitForAddonsReportsThePollBeforeTheDeadline(t *testing.T) {
	paths := requiredAddons(true, true, "ns")
	distinct := map[string]bool{}
	for _, p := range paths {
		distinct[p.Path] = true
	}
	release := make(chan struct{})
	var calls atomic.Int32
	srv, kc := pulumitest.NewAPIServerFunc(func(path string) (any, bool) {
		if calls.Add(1) > int32(len(distinct)) {
			<-release // every poll after the first hangs until the wait has given up
		}
		if path == "/apis/azmonitoring.coreos.com/v1" {
			return nil, false // all but the PodMonitor kind
		}
		body, ok := pulumitest.AddonDiscovery[path]
		return body, ok
	})
	defer srv.Close()
	defer close(release)
	err := WaitForAddons(context.Background(), kc, paths, fast)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Azure Monitor's PodMonitor kind")
	for _, served := range []string{"KEDA's ScaledObject kind", "Karpenter's NodePool kind", "the KEDA operator's Deployment"} {
		assert.NotContains(t, err.Error(), served, "served in the last complete poll")
	}
	assert.NotContains(t, err.Error(), "context deadline exceeded")
}

// Issue 23 item 2: outside a preview the wait also asks the API server, with
// SelfSubjectAccessReviews, whether the deployer may make the writes `pulumi up` is about to
// make; the preview writes nothing and asks nothing.
func TestRequiredAddonsAskForTheDeployersAccessOutsidePreview(t *testing.T) {
	up := requiredAddons(false, false, "aqs-demo")
	access := DeployerAccess("aqs-demo")
	require.Greater(t, len(up), len(access))
	assert.Equal(t, access, up[:len(access)], "the access checks come first")
	verbs := map[string]bool{}
	for _, p := range access {
		require.NotNil(t, p.Review, p.What)
		verbs[p.Review.Verb+" "+p.Review.Group+"/"+p.Review.Resource+" "+p.Review.Namespace] = true
	}
	for _, want := range []string{"create /namespaces ", "create apps/deployments aqs-demo", "create keda.sh/scaledobjects aqs-demo",
		"create karpenter.sh/nodepools ", "patch apps/deployments kube-system"} {
		assert.True(t, verbs[want], "asks whether the deployer may %s", want)
	}
	for _, p := range requiredAddons(false, true, "aqs-demo") {
		assert.Nil(t, p.Review, "a preview asks nothing about writes: %s", p.What)
	}
}

// The API server says "not allowed" until the deployer's role has propagated: the wait keeps
// asking and goes on once it is allowed.
func TestWaitForAddonsWaitsUntilTheDeployerIsAllowed(t *testing.T) {
	var reviews atomic.Int32
	srv, kc := pulumitest.NewAPIServerFunc(func(path string) (any, bool) {
		if path == pulumitest.DenyReview("create", "namespaces") {
			return nil, reviews.Add(1) <= 5
		}
		body, ok := pulumitest.AddonDiscovery[path]
		return body, ok
	})
	defer srv.Close()
	err := WaitForAddons(context.Background(), kc, requiredAddons(false, false, "aqs-demo"), AddonWait{Timeout: 10 * time.Second, Interval: 20 * time.Millisecond})
	require.NoError(t, err)
	assert.Greater(t, reviews.Load(), int32(5), "it asked again after each refusal")

	srv, kc = pulumitest.NewAPIServer(map[string]any{pulumitest.DenyReview("create", "nodepools"): true})
	defer srv.Close()
	err = WaitForAddons(context.Background(), kc, DeployerAccess("aqs-demo"), fast)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the deployer's permission to create Karpenter NodePools")
	assert.Contains(t, err.Error(), "not allowed to create nodepools (denied by the fake API server)")
	assert.Contains(t, err.Error(), "clusterAdmins", "the advice says who gets the role")
	assert.NotContains(t, err.Error(), "permission to create namespaces", "what is allowed is not listed")
}

// A preview grants nothing, so a refusal is final at once, with what the preview identity needs.
func TestWaitForAddonsPreviewFailsAtOnceWhenRefused(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	srv.Config.Handler = &forbidUntil{next: srv.Config.Handler, until: 1 << 30}
	start := time.Now()
	err := WaitForAddons(context.Background(), kc, requiredAddons(false, true, "aqs-demo"), AddonWait{Timeout: time.Minute, Interval: 20 * time.Millisecond, Preview: true})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "no waiting for a role a preview does not grant")
	assert.Contains(t, err.Error(), "refused the preview's credentials")
	assert.Contains(t, err.Error(), "Microsoft.ContainerService/managedClusters/*/read")
}

// Through Deploy: the API server answers 403 to everything for a while after the grant exists,
// as Azure RBAC does while a role assignment propagates; no Kubernetes object is registered
// before it has answered the deployer with success.
func TestDeployRegistersNoObjectBeforeTheAPIServerAcceptsTheDeployer(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	gate := &forbidFor{next: srv.Config.Handler, until: time.Now().Add(1500 * time.Millisecond)}
	srv.Config.Handler = gate
	m, err := deploy(t, components.DefaultConsumerSettings(), func(a *Args) {
		a.Kubeconfig = pulumi.String(kc).ToStringOutput()
		a.AddonWait = AddonWait{Timeout: time.Minute, Interval: 50 * time.Millisecond}
	})
	require.NoError(t, err)
	first := gate.firstSuccess()
	require.False(t, first.IsZero(), "the API server answered with success at some point")
	require.Positive(t, gate.refused.Load(), "the wait met the 403s")
	objects := 0
	for _, r := range m.Resources() {
		if !strings.HasPrefix(r.Type, "kubernetes:") {
			continue
		}
		objects++
		assert.True(t, r.Registered.After(first), "%s %s registered at %s, before the API server first accepted the deployer at %s",
			r.Type, r.Name, r.Registered.Format(time.StampMilli), first.Format(time.StampMilli))
	}
	assert.GreaterOrEqual(t, objects, 8, "namespace, service account, network policy, deployment, PDB, KEDA objects, NodePool, KEDA patches")
}

// forbidFor answers 403 to every request until the given time, then hands them to next and
// records when it first did.
type forbidFor struct {
	next    http.Handler
	until   time.Time
	refused atomic.Int32
	mu      sync.Mutex
	first   time.Time
}

func (f *forbidFor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if time.Now().Before(f.until) {
		f.refused.Add(1)
		http.Error(w, `{"kind":"Status","code":403}`, http.StatusForbidden)
		return
	}
	f.mu.Lock()
	if f.first.IsZero() {
		f.first = time.Now()
	}
	f.mu.Unlock()
	f.next.ServeHTTP(w, r)
}

func (f *forbidFor) firstSuccess() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// A kubeconfig whose credential plugin fails (kubelogin with an expired assertion) is not waited
// out for 15 minutes: a few polls, then an error that says what to check.
func TestWaitForAddonsGivesUpWhenTheCredentialPluginFails(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(pulumitest.AddonDiscovery)
	defer srv.Close()
	plugin := filepath.Join(t.TempDir(), "kubelogin")
	require.NoError(t, os.WriteFile(plugin, []byte("#!/bin/sh\necho 'AADSTS700024: Client assertion is not within its valid time range.' >&2\nexit 1\n"), 0o755))
	exec := strings.Replace(kc, "user: {token: "+pulumitest.MockToken+"}",
		"user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: "+plugin+", interactiveMode: Never}}", 1)
	require.NotEqual(t, kc, exec)
	start := time.Now()
	err := WaitForAddons(context.Background(), exec, requiredAddons(false, false, "aqs-demo"), AddonWait{Timeout: time.Minute, Interval: 20 * time.Millisecond})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 20*time.Second, "no waiting out the whole timeout")
	assert.Contains(t, err.Error(), "could not get a token 3 times in a row")
	assert.Contains(t, err.Error(), "AAD_LOGIN_METHOD=workloadidentity")
}
