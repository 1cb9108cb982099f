package workload

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/internal/pulumitest"
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
// message and registers no object that needs the add-ons.
func TestDeployWaitsForAddons(t *testing.T) {
	srv, kc := pulumitest.NewAPIServer(without("/apis/keda.sh/v1alpha1"))
	defer srv.Close()
	m, err := deploy(t, components.DefaultConsumerSettings(), func(a *Args) {
		a.Kubeconfig = pulumi.String(kc).ToStringOutput()
		a.AddonWait = fast
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "waiting for the cluster's add-ons")
	assert.Contains(t, err.Error(), "KEDA's ScaledObject kind")
	for _, typ := range []string{"kubernetes:keda.sh/v1alpha1:TriggerAuthentication", "kubernetes:keda.sh/v1alpha1:ScaledObject",
		"kubernetes:karpenter.sh/v1:NodePool", "kubernetes:apps/v1:DeploymentPatch", "kubernetes:core/v1:ServiceAccountPatch"} {
		assert.Empty(t, m.ByType(typ), "%s must not be created before the add-ons serve it", typ)
	}
}

// When the deadline cuts a poll short, the error reports the poll before it: what is really
// missing, not every path with "context deadline exceeded".
func TestWaitForAddonsReportsThePollBeforeTheDeadline(t *testing.T) {
	paths := requiredAddons(true)
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
