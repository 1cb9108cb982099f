package verify

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// object decodes a KEDA object from JSON, as the API server returns it (numbers become int64).
func object(t *testing.T, js string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	require.NoError(t, u.UnmarshalJSON([]byte(js)))
	return u
}

func TestParseScaler(t *testing.T) {
	cases := []struct {
		name    string
		js      string
		want    Scaler
		wantErr string
	}{
		{
			name: "KEDA's defaults",
			js: `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw"},
				"spec":{"scaleTargetRef":{"name":"dep"},"triggers":[{"type":"azure-queue","metadata":{"queueName":"q"}}]}}`,
			want: Scaler{Kind: ScaleModeScaledObject, Namespace: "edw", Name: "c", PollingInterval: 30 * time.Second, CooldownPeriod: 300 * time.Second,
				MinReplicaCount: 0, MaxReplicaCount: 100, QueueLength: 5, ActivationQueueLength: 0, QueueName: "q", Target: "dep"},
		},
		{
			name: "the live values",
			js: `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw"},
				"spec":{"pollingInterval":5,"cooldownPeriod":120,"minReplicaCount":1,"idleReplicaCount":0,"maxReplicaCount":20,
				"triggers":[{"type":"cpu","metadata":{}},{"type":"azure-queue","metadata":{"queueName":"q","queueLength":"16","activationQueueLength":"2"}}]}}`,
			want: Scaler{Kind: ScaleModeScaledObject, Namespace: "edw", Name: "c", PollingInterval: 5 * time.Second, CooldownPeriod: 120 * time.Second,
				MinReplicaCount: 1, IdleReplicaCount: ptr(int32(0)), MaxReplicaCount: 20, QueueLength: 16, ActivationQueueLength: 2, QueueName: "q"},
		},
		{
			name: "ScaledJob has no cooldown",
			js: `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledJob","metadata":{"name":"j","namespace":"edw"},
				"spec":{"pollingInterval":10,"cooldownPeriod":99,"maxReplicaCount":8,"triggers":[{"type":"azure-queue","metadata":{"queueName":"q","queueLength":"1"}}]}}`,
			want: Scaler{Kind: ScaleModeScaledJob, Namespace: "edw", Name: "j", PollingInterval: 10 * time.Second,
				MaxReplicaCount: 8, QueueLength: 1, QueueName: "q"},
		},
		{
			name: "paused",
			js: `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw","annotations":{"autoscaling.keda.sh/paused":"true"}},
				"spec":{"triggers":[{"type":"azure-queue","metadata":{"queueName":"q"}}]}}`,
			want: Scaler{Kind: ScaleModeScaledObject, Namespace: "edw", Name: "c", PollingInterval: 30 * time.Second, CooldownPeriod: 300 * time.Second,
				MaxReplicaCount: 100, QueueLength: 5, QueueName: "q", Paused: true},
		},
		{
			name:    "no azure-queue trigger",
			js:      `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw"},"spec":{"triggers":[{"type":"cpu"}]}}`,
			wantErr: "ScaledObject edw/c has no azure-queue trigger",
		},
		{
			name: "queueLength not a number",
			js: `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw"},
				"spec":{"triggers":[{"type":"azure-queue","metadata":{"queueName":"q","queueLength":"lots"}}]}}`,
			wantErr: `azure-queue trigger queueLength = "lots" is not an integer`,
		},
		{
			name:    "pollingInterval not a number",
			js:      `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"c","namespace":"edw"},"spec":{"pollingInterval":"often","triggers":[{"type":"azure-queue","metadata":{}}]}}`,
			wantErr: "spec.pollingInterval = often is not an integer",
		},
		{
			name:    "another kind",
			js:      `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"c","namespace":"edw"}}`,
			wantErr: "not a ScaledObject or ScaledJob",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScaler(object(t, tc.js))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestScalerAtRestAndString(t *testing.T) {
	s := so()
	assert.Equal(t, int32(0), s.AtRest())
	s.MinReplicaCount = 2
	assert.Equal(t, int32(2), s.AtRest())
	s.IdleReplicaCount = ptr(int32(0))
	assert.Equal(t, int32(0), s.AtRest())
	assert.Equal(t, "ScaledObject edw/aqs-consumer: pollingInterval 30s, cooldownPeriod 300s, minReplicaCount 2, idleReplicaCount 0, maxReplicaCount 10, queueLength 5, activationQueueLength 0, queue q", s.String())
	assert.Equal(t, "ScaledJob edw/aqs-consumer-job: pollingInterval 30s, minReplicaCount 0, maxReplicaCount 10, queueLength 5, activationQueueLength 0, queue q", sj().String())
}

func TestReadScaler(t *testing.T) {
	w := Workload{Namespace: "edw", ScaleMode: ScaleModeScaledJob, ScaledJobName: "j", ScaledObjectName: "c"}
	sjObj := object(t, `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledJob","metadata":{"name":"j","namespace":"edw"},
		"spec":{"triggers":[{"type":"azure-queue","metadata":{"queueName":"q"}}]}}`)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		ScaledObjectGVR: "ScaledObjectList", ScaledJobGVR: "ScaledJobList",
	}, sjObj)
	s, err := ReadScaler(context.Background(), dyn, w)
	require.NoError(t, err)
	assert.Equal(t, ScaleModeScaledJob, s.Kind)
	assert.Equal(t, "j", s.Name)

	// The mode decides which object is read: there is no ScaledObject.
	w.ScaleMode = ScaleModeScaledObject
	_, err = ReadScaler(context.Background(), dyn, w)
	require.Error(t, err)
	assert.Equal(t, "ScaledObject edw/c not found on the cluster (is KEDA installed and the stack's workload deployed?)", err.Error())
}

func TestWorkloadValidate(t *testing.T) {
	full := Workload{Namespace: "edw", ScaleMode: ScaleModeScaledObject, DeploymentName: "d", ScaledObjectName: "so", NodePoolName: "app", AppLabel: "a"}
	assert.NoError(t, full.Validate())
	noDeploy := full
	noDeploy.DeploymentName, noDeploy.AppLabel = "", ""
	assert.Equal(t, []string{"consumerWorkload.appLabel", "consumerWorkload.deploymentName"}, noDeploy.Missing())
	assert.EqualError(t, noDeploy.Validate(), "missing stack outputs: consumerWorkload.appLabel, consumerWorkload.deploymentName")
	job := Workload{Namespace: "edw", ScaleMode: ScaleModeScaledJob, NodePoolName: "app", AppLabel: "a"}
	assert.Equal(t, []string{"consumerWorkload.scaledJobName"}, job.Missing(), "a ScaledJob needs its name, not the Deployment's")
	bad := full
	bad.ScaleMode = "HPA"
	assert.EqualError(t, bad.Validate(), `stack output consumerWorkload.scaleMode is "HPA": must be ScaledObject or ScaledJob`)
	var decoded Workload
	require.NoError(t, json.Unmarshal([]byte(`{"namespace":"edw","scaleMode":"ScaledJob","deploymentName":"d","scaledObjectName":"so","scaledJobName":"sj","nodePoolName":"app","appLabel":"a"}`), &decoded))
	assert.Equal(t, Workload{Namespace: "edw", ScaleMode: "ScaledJob", DeploymentName: "d", ScaledObjectName: "so", ScaledJobName: "sj", NodePoolName: "app", AppLabel: "a"}, decoded)
}
