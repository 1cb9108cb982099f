package verify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// TestRunCannotVerify: when verify cannot do its work, Run says why with an error (the CLI exits
// 2) and sends nothing.
func TestRunCannotVerify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		breakIt func(e *env)
		want    string
	}{
		{"no queue", func(e *env) {
			_, err := e.clients.Queue.Delete(context.Background(), nil)
			require.NoError(t, err)
		}, "queue verify-q%d does not exist in storage account devstoreaccount1"},
		{"no table", func(e *env) {
			_, err := e.clients.Table.Delete(context.Background(), nil)
			require.NoError(t, err)
		}, "table verifyt%d does not exist in storage account devstoreaccount1"},
		{"no ScaledObject", func(e *env) {
			e.inputs.Dynamic = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
				verify.ScaledObjectGVR: "ScaledObjectList", verify.ScaledJobGVR: "ScaledJobList", verify.NodeClaimGVR: "NodeClaimList",
			})
		}, "ScaledObject edw/aqs-consumer not found on the cluster"},
		{"no Deployment", func(e *env) {
			e.inputs.Kube = k8sfake.NewSimpleClientset()
		}, `reading the workload on the cluster: reading Deployment edw/aqs-consumer: deployments.apps "aqs-consumer" not found`},
		{"bad options", func(e *env) {}, "-count=0: must be between 1 and 10000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, setup{mode: verify.ScaleModeScaledObject})
			tc.breakIt(e)
			opts := e.options(10 * time.Second)
			if tc.name == "bad options" {
				opts.Count = 0
			}
			rep, err := verify.Run(context.Background(), e.inputs, opts)
			require.Error(t, err)
			want := tc.want
			if strings.Contains(want, "%d") {
				var n int
				_, _ = fmt.Sscanf(strings.TrimPrefix(e.inputs.QueueName, "verify-q"), "%d", &n)
				want = fmt.Sprintf(want, n)
			}
			assert.Contains(t, err.Error(), want)
			assert.Equal(t, 0, rep.Burst, "nothing sent")
		})
	}
}

// storageStub answers every request with status and code, except the properties of the queues
// listed in ok (an empty queue).
func storageStub(t *testing.T, status int, code string, ok ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, q := range ok {
			if r.URL.Query().Get("comp") == "metadata" && strings.HasSuffix(r.URL.Path, "/"+q) {
				w.Header().Set("x-ms-approximate-messages-count", "0")
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		w.Header().Set("x-ms-error-code", code)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"odata.error":{"code":%q,"message":{"lang":"en-US","value":"This request is not authorized to perform this operation."}}}`, code)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRunAccessErrors: a 403 from storage stops verify with the advice for the service and code.
func TestRunAccessErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		queue, table *httptest.Server
		want         string
	}{
		{"queue role", storageStub(t, http.StatusForbidden, "AuthorizationPermissionMismatch"), storageStub(t, http.StatusNotFound, "ResourceNotFound"),
			"storage queue orders in account stedwdev answered 403 AuthorizationPermissionMismatch: the identity verify runs as lacks Storage Queue Data Contributor on the queue. `grantDeployerQueueAccess: true`"},
		{"poison queue role", storageStub(t, http.StatusForbidden, "AuthorizationPermissionMismatch", "orders"), storageStub(t, http.StatusNotFound, "ResourceNotFound"),
			"poison queue orders-poison in account stedwdev answered 403 AuthorizationPermissionMismatch: the identity verify runs as lacks Storage Queue Data Reader on the poison queue"},
		{"table role", storageStub(t, http.StatusForbidden, "AuthorizationPermissionMismatch", "orders", "orders-poison"), storageStub(t, http.StatusForbidden, "AuthorizationPermissionMismatch"),
			`storage table records in account stedwdev answered 403 AuthorizationPermissionMismatch: the identity verify runs as lacks Storage Table Data Contributor on the table`},
		{"firewall", storageStub(t, http.StatusForbidden, "AuthorizationFailure"), storageStub(t, http.StatusForbidden, "AuthorizationFailure"),
			"storage account stedwdev answered 403 AuthorizationFailure on the queue orders: the storage firewall refuses this machine's public IP. Add it to operatorIpRanges"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=%s/%s;TableEndpoint=%s/%s",
				azurite.AccountName, azurite.AccountKey, tc.queue.URL, azurite.AccountName, tc.table.URL, azurite.AccountName)
			clients, err := storage.NewClients(storage.Settings{QueueName: "orders", TableName: "records", ConnectionString: cs}, storage.NewHTTPClient(4))
			require.NoError(t, err)
			w := testWorkload(verify.ScaleModeScaledObject)
			in := verify.Inputs{
				Stack: "dev", Workload: w, AccountName: "stedwdev", QueueName: "orders", TableName: "records", Storage: clients,
				Kube: k8sfake.NewSimpleClientset(),
				Dynamic: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
					verify.ScaledObjectGVR: "ScaledObjectList", verify.ScaledJobGVR: "ScaledJobList", verify.NodeClaimGVR: "NodeClaimList",
				}, scalerObject(w, "orders")),
			}
			_, err = verify.Run(context.Background(), in, verify.Options{Count: 10, Timeout: time.Second})
			require.Error(t, err)
			var ae *verify.AccessError
			require.True(t, errors.As(err, &ae), "%T: %v", err, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
