package localcluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/aks-edw/aks-edw/harness/fakeentra"
)

// readStages decodes the files WriteJobPodStages wrote, strictly: a field kwok's Stage does not
// have (as far as kwokStage mirrors it) fails the test.
func readStages(t *testing.T) map[string]kwokStage {
	t.Helper()
	paths, err := WriteJobPodStages(filepath.Join(t.TempDir(), "stages"))
	require.NoError(t, err)
	require.Len(t, paths, 2)
	stages := map[string]kwokStage{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var s kwokStage
		require.NoError(t, yaml.UnmarshalStrict(b, &s), p)
		assert.Equal(t, "kwok.x-k8s.io/v1alpha1", s.APIVersion)
		assert.Equal(t, "Stage", s.Kind)
		assert.Equal(t, "v1", s.Spec.ResourceRef.APIGroup)
		assert.Equal(t, "Pod", s.Spec.ResourceRef.Kind)
		assert.Equal(t, s.Metadata.Name+".yaml", filepath.Base(p))
		stages[s.Metadata.Name] = s
	}
	return stages
}

func TestJobPodStagesSelectRunningPodsWithAnExitCode(t *testing.T) {
	stages := readStages(t)
	running := []string{
		".metadata.deletionTimestamp DoesNotExist []",
		".status.phase In [Running]",
		".spec.restartPolicy NotIn [Always]",
	}
	exprs := func(s kwokStage) []string {
		var out []string
		for _, e := range s.Spec.Selector.MatchExpressions {
			out = append(out, fmt.Sprintf("%s %s %v", e.JQ.Key, e.JQ.Operator, e.JQ.Values))
		}
		return out
	}

	ok := stages["aks-edw-job-pod-succeeded"]
	assert.Equal(t, map[string]string{ExitCodeAnnotation: "0"}, ok.Spec.Selector.MatchAnnotations)
	assert.Equal(t, running, exprs(ok))

	failed := stages["aks-edw-job-pod-failed"]
	assert.Empty(t, failed.Spec.Selector.MatchAnnotations)
	assert.Equal(t, append(running,
		`.metadata.annotations["aks-edw.e2e/exit-code"] Exists []`,
		`.metadata.annotations["aks-edw.e2e/exit-code"] NotIn [0]`,
	), exprs(failed))

	for _, s := range stages {
		require.Len(t, s.Spec.Steps, 1, s.Metadata.Name)
		p := s.Spec.Steps[0].Patch
		assert.Equal(t, "status", p.Subresource, "%s patches the status, as kwok's statusTemplate does", s.Metadata.Name)
		assert.Equal(t, "status", p.Root, s.Metadata.Name)
	}
}

// kwokFuncs stand in for the template functions of kwok (Now, Quote) and sprig (atoi) the
// templates use, with the same results for these inputs.
var kwokFuncs = template.FuncMap{
	"Now": func() string { return "2026-01-02T03:04:05Z" },
	"Quote": func(s any) string {
		b, err := json.Marshal(s)
		if err != nil || len(b) == 0 || b[0] != '"' {
			return strconv.Quote(string(b))
		}
		return string(b)
	},
	"atoi": func(s string) int { n, _ := strconv.Atoi(s); return n },
}

// render runs a stage's template the way kwok does: on the pod as JSON.
func render(t *testing.T, s kwokStage, pod *corev1.Pod) corev1.PodStatus {
	t.Helper()
	tmpl, err := template.New(s.Metadata.Name).Funcs(kwokFuncs).Parse(strings.TrimSpace(s.Spec.Steps[0].Patch.Template))
	require.NoError(t, err)
	b, err := json.Marshal(pod)
	require.NoError(t, err)
	var data any
	require.NoError(t, json.Unmarshal(b, &data))
	var out strings.Builder
	require.NoError(t, tmpl.Execute(&out, data))
	var st corev1.PodStatus
	require.NoError(t, yaml.UnmarshalStrict([]byte(out.String()), &st), out.String())
	return st
}

func TestJobPodStagesEndThePodWithItsProcessExitCode(t *testing.T) {
	stages := readStages(t)
	started := metav1.NewTime(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC))
	pod := func(code string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "job-1", Annotations: map[string]string{ExitCodeAnnotation: code}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{
				{Name: "reader", Image: "acr.io/reader:1"}, {Name: "sidecar", Image: "sidecar:2"},
			}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started},
		}
	}
	for _, tc := range []struct {
		stage, code string
		phase       corev1.PodPhase
		exit        int32
		reason      string
	}{
		{"aks-edw-job-pod-succeeded", "0", corev1.PodSucceeded, 0, "Completed"},
		{"aks-edw-job-pod-failed", "3", corev1.PodFailed, 3, "Error"},
		{"aks-edw-job-pod-failed", "137", corev1.PodFailed, 137, "Error"},
	} {
		t.Run(tc.stage+"-"+tc.code, func(t *testing.T) {
			st := render(t, stages[tc.stage], pod(tc.code))
			assert.Equal(t, tc.phase, st.Phase)
			require.Len(t, st.ContainerStatuses, 2, "one status per container")
			for i, name := range []string{"reader", "sidecar"} {
				cs := st.ContainerStatuses[i]
				assert.Equal(t, name, cs.Name)
				assert.False(t, cs.Ready, name)
				require.NotNil(t, cs.State.Terminated, name)
				assert.Equal(t, tc.exit, cs.State.Terminated.ExitCode, name)
				assert.Equal(t, tc.reason, cs.State.Terminated.Reason, name)
				assert.True(t, cs.State.Terminated.StartedAt.Equal(&started), "%s started when the pod did", name)
			}
			assert.Equal(t, "acr.io/reader:1", st.ContainerStatuses[0].Image)
			for _, c := range st.Conditions {
				assert.Equal(t, corev1.ConditionFalse, c.Status, "%s after the containers ended", c.Type)
			}
		})
	}
}

// KubeloginKubeconfig is AKS's exec kubeconfig for an Entra-only cluster, pointing here: no
// token, kubelogin's arguments as AKS writes them, then the harness's, and the environment.
func TestKubeloginKubeconfig(t *testing.T) {
	c := &Cluster{server: "https://127.0.0.1:6443", caPEM: []byte("ca")}
	cfg, err := clientcmd.Load([]byte(c.KubeloginKubeconfig("/bin/kubelogin", "tenant-1", map[string]string{"AAD_LOGIN_METHOD": "workloadidentity", "B": "2"}, "--disable-instance-discovery")))
	require.NoError(t, err)
	user := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	require.NotNil(t, user.Exec)
	assert.Empty(t, user.Token)
	assert.Equal(t, "/bin/kubelogin", user.Exec.Command)
	assert.Equal(t, []string{"get-token", "--login", "devicecode", "--server-id", fakeentra.AKSServerAppID, "--client-id", fakeentra.AKSClientAppID,
		"--tenant-id", "tenant-1", "--environment", "AzurePublicCloud", "--disable-instance-discovery"}, user.Exec.Args)
	assert.Equal(t, "client.authentication.k8s.io/v1beta1", user.Exec.APIVersion)
	require.Len(t, user.Exec.Env, 2)
	assert.Equal(t, "AAD_LOGIN_METHOD", user.Exec.Env[0].Name)
	assert.Equal(t, "workloadidentity", user.Exec.Env[0].Value)
	assert.Equal(t, "https://127.0.0.1:6443", cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server)
}
