package verify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/aks-edw/aks-edw/ops/verify"
)

// fakeToken is a credential that hands out one fixed token.
type fakeToken struct{ calls atomic.Int32 }

func (f *fakeToken) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.calls.Add(1)
	return azcore.AccessToken{Token: "arm-token-for-" + strings.Join(opts.Scopes, ","), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

const testAppID = "/subscriptions/s/resourceGroups/rg-edw/providers/Microsoft.App/containerApps/ca-edw"

// armFake plays Azure Resource Manager for one Container App or job, answering from the fake
// cluster's state: the Deployment's replicas as the active revision's, the ScaledJob's Jobs as
// the job's executions. It records what it was asked.
type armFake struct {
	t       *testing.T
	e       *env
	queue   string
	status  int // answer every request with this status when set
	asked   atomic.Int32
	badAuth atomic.Int32
}

func (a *armFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.asked.Add(1)
	if r.Header.Get("Authorization") != "Bearer arm-token-for-"+verify.ARMScope || r.URL.Query().Get("api-version") != verify.ContainerAppsAPIVersion {
		a.badAuth.Add(1)
		http.Error(w, `{"error":{"code":"InvalidAuthenticationToken"}}`, http.StatusUnauthorized)
		return
	}
	if a.status != 0 {
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(`{"error":{"code":"AuthorizationFailed","message":"no read on the app"}}`))
		return
	}
	ctx, fw := r.Context(), a.e.fake.w
	metadata := map[string]string{"queueName": a.queue, "accountName": "stedwdev", "queueLength": "5", "activationQueueLength": "0"}
	var body any
	switch r.URL.Path {
	case testAppID:
		if fw.ScaleMode == verify.ScaleModeScaledJob {
			body = map[string]any{"properties": map[string]any{"configuration": map[string]any{"eventTriggerConfig": map[string]any{
				"scale": map[string]any{"minExecutions": 0, "maxExecutions": 10, "pollingInterval": 1,
					"rules": []any{map[string]any{"name": "azure-queue", "type": "azure-queue", "metadata": metadata}}},
			}}}}
		} else {
			body = map[string]any{"properties": map[string]any{"template": map[string]any{
				"scale": map[string]any{"minReplicas": 0, "maxReplicas": 10, "pollingInterval": 1, "cooldownPeriod": 1,
					"rules": []any{map[string]any{"name": "azure-queue", "custom": map[string]any{"type": "azure-queue", "metadata": metadata}}}},
			}}}
		}
	case testAppID + "/revisions":
		d, err := a.e.fake.kube.AppsV1().Deployments(fw.Namespace).Get(ctx, fw.DeploymentName, metav1.GetOptions{})
		require.NoError(a.t, err)
		body = map[string]any{"value": []any{
			map[string]any{"name": "ca-edw--old", "properties": map[string]any{"active": false, "replicas": 3}},
			map[string]any{"name": "ca-edw--new", "properties": map[string]any{"active": true, "replicas": *d.Spec.Replicas}},
		}}
	case testAppID + "/executions":
		jobs, err := a.e.fake.kube.BatchV1().Jobs(fw.Namespace).List(ctx, metav1.ListOptions{})
		require.NoError(a.t, err)
		var execs []any
		for _, j := range jobs.Items {
			status := "Running"
			if len(j.Status.Conditions) > 0 {
				status = "Succeeded"
			}
			execs = append(execs, map[string]any{"name": j.Name, "properties": map[string]any{"status": status}})
		}
		body = map[string]any{"value": execs}
	default:
		http.Error(w, `{"error":{"code":"ResourceNotFound"}}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	require.NoError(a.t, json.NewEncoder(w).Encode(body))
}

// containerAppsEnv is newEnv with the consumer on Container Apps: verify reads the app or job
// through the real ARM client (azcore pipeline, bearer token) from a TLS server playing ARM.
func containerAppsEnv(t *testing.T, mode string, status int) (*env, *armFake, *fakeToken) {
	e := newEnv(t, setup{mode: mode})
	fake := &armFake{t: t, e: e, queue: e.inputs.QueueName, status: status}
	srv := httptest.NewTLSServer(fake)
	t.Cleanup(srv.Close)
	w := e.inputs.Workload
	w.Platform, w.ResourceGroupName, w.AppName, w.AppID = verify.PlatformContainerApps, "rg-edw", "ca-edw", testAppID
	w.AppKind = "ContainerApp"
	if mode == verify.ScaleModeScaledJob {
		w.AppKind = "Job"
	}
	cred := &fakeToken{}
	e.inputs.Workload = w
	e.inputs.Kube, e.inputs.Dynamic = nil, nil // no cluster on Container Apps
	e.inputs.Platform = verify.ContainerAppsPlatform(verify.NewARMReader(cred, srv.URL, &policy.ClientOptions{Transport: srv.Client()}), w)
	return e, fake, cred
}

// Issue 18 item 6: verify works on Container Apps: every check as on AKS, from what Resource
// Manager says of the app's revisions or the job's executions; no nodes to watch.
func TestRunPassesOnContainerApps(t *testing.T) {
	for _, mode := range []string{verify.ScaleModeScaledObject, verify.ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e, fake, cred := containerAppsEnv(t, mode, 0)
			rep := e.run(t, e.options(20*time.Second))
			failed, skipped := states(rep)
			assert.Empty(t, failed)
			assert.Equal(t, []string{verify.CheckNodes}, skipped, "only the nodes check is skipped")
			assert.Contains(t, check(t, rep, verify.CheckNodes).Evidence, "Container Apps")
			assert.True(t, rep.OK())
			assert.Contains(t, e.out.String(), "scaler: "+mode+" rg-edw/ca-edw: pollingInterval 1s")
			assert.Greater(t, fake.asked.Load(), int32(5), "verify sampled the app through ARM")
			assert.Zero(t, fake.badAuth.Load(), "every request had the bearer token and the api-version")
			assert.Less(t, cred.calls.Load(), int32(3), "the token is cached, not fetched per request")
			if mode == verify.ScaleModeScaledJob {
				// Every Job the fake created (2, or 4 when a slow burst let the first pair finish
				// first), read back as the job's executions.
				assert.GreaterOrEqual(t, rep.JobsCreated, 2)
				assert.Equal(t, e.jobsCreated(t), rep.JobsCreated)
			} else {
				assert.Equal(t, 0, rep.ReplicasTimeline[0].Replicas, "only active revisions count")
				assert.Equal(t, 2, rep.ReplicasTimeline[1].Replicas)
			}
		})
	}
}

// Resource Manager refusing the caller is an error that names the app, not a failed check.
func TestRunContainerAppsARMRefuses(t *testing.T) {
	t.Parallel()
	e, _, _ := containerAppsEnv(t, verify.ScaleModeScaledObject, http.StatusForbidden)
	_, err := verify.Run(context.Background(), e.inputs, e.options(5*time.Second))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reading Container App ca-edw ("+testAppID+")")
	assert.Contains(t, err.Error(), "AuthorizationFailed")
}

// The consumerWorkload of a Container Apps stack: what verify needs of it.
func TestWorkloadOnContainerApps(t *testing.T) {
	w := verify.Workload{Platform: verify.PlatformContainerApps, ScaleMode: verify.ScaleModeScaledJob}
	assert.Equal(t, []string{"consumerWorkload.appId", "consumerWorkload.appName", "consumerWorkload.resourceGroupName"}, w.Missing(),
		"no namespace, node pool or label on Container Apps")
	w.AppID, w.AppName, w.ResourceGroupName = testAppID, "caj-edw", "rg-edw"
	assert.NoError(t, w.Validate())
	w.Platform = "aci"
	assert.ErrorContains(t, w.Validate(), `consumerWorkload.platform is "aci"`)
}
