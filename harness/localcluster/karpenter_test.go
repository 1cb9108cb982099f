package localcluster

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const readyStatus = `.status.conditions.[] | select( .type == "Ready" ) | .status`

// The shape of kwok v0.8.0's kustomize/stage/node/fast/node-initialize.yaml (its template cut).
const stockNodeInitialize = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      phase: Running
`

// Karpenter's nodes turn Ready after the delay, the harness's at once, and no node matches both
// stages (kwok applies one stage per object).
func TestNodeStagesSplitKarpentersNodesFromTheOthers(t *testing.T) {
	dir := t.TempDir()
	stock := filepath.Join(dir, "node-initialize.yaml")
	require.NoError(t, os.WriteFile(stock, []byte(stockNodeInitialize), 0o644))
	paths, err := WriteNodeStages(stock, filepath.Join(dir, "out"), 7500*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, paths, 3)
	type expr struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	}
	type stage struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Delay *struct {
				DurationMilliseconds int64 `json:"durationMilliseconds"`
			} `json:"delay"`
			Selector struct {
				MatchExpressions []expr `json:"matchExpressions"`
			} `json:"selector"`
			Next struct {
				StatusTemplate string `json:"statusTemplate"`
			} `json:"next"`
		} `json:"spec"`
	}
	got := map[string]stage{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var s stage
		require.NoError(t, yaml.Unmarshal(b, &s))
		assert.Equal(t, s.Metadata.Name+".yaml", filepath.Base(p))
		require.Len(t, s.Spec.Selector.MatchExpressions, 2, "the Ready expression and the label's")
		assert.Equal(t, readyStatus, s.Spec.Selector.MatchExpressions[0].Key)
		got[s.Metadata.Name] = s
	}
	label := `.metadata.labels."karpenter.sh/nodepool"`
	harness, boot, karpenter := got["node-initialize"], got["aks-edw-node-boot"], got["aks-edw-node-start"]
	// kwok's own stage for the harness's nodes: any node not Ready turns Ready.
	assert.Equal(t, expr{Key: readyStatus, Operator: "NotIn", Values: []string{"True"}}, harness.Spec.Selector.MatchExpressions[0])
	assert.Contains(t, harness.Spec.Next.StatusTemplate, "phase: Running\n", "kwok's template kept")
	// Karpenter's: registered not Ready at once, Ready after the delay.
	assert.Equal(t, expr{Key: readyStatus, Operator: "DoesNotExist"}, boot.Spec.Selector.MatchExpressions[0])
	assert.Equal(t, expr{Key: label, Operator: "Exists"}, boot.Spec.Selector.MatchExpressions[1])
	assert.Nil(t, boot.Spec.Delay)
	assert.Contains(t, boot.Spec.Next.StatusTemplate, "status: \"False\"\n  type: Ready")
	assert.Equal(t, expr{Key: readyStatus, Operator: "In", Values: []string{"False"}}, karpenter.Spec.Selector.MatchExpressions[0])
	assert.Contains(t, karpenter.Spec.Next.StatusTemplate, "phase: Running\n", "kwok's template kept")
	assert.Equal(t, expr{Key: label, Operator: "DoesNotExist"}, harness.Spec.Selector.MatchExpressions[1])
	assert.Nil(t, harness.Spec.Delay, "the harness's nodes turn Ready at once")
	assert.Contains(t, harness.Spec.Next.StatusTemplate, "or .metadata.creationTimestamp $now", "kwok's own dating")
	assert.Equal(t, expr{Key: label, Operator: "Exists"}, karpenter.Spec.Selector.MatchExpressions[1])
	require.NotNil(t, karpenter.Spec.Delay)
	assert.EqualValues(t, 7500, karpenter.Spec.Delay.DurationMilliseconds)
	assert.Contains(t, karpenter.Spec.Next.StatusTemplate, "{{ $lastTransitionTime := $now }}", "Ready dated when the node turns Ready")
	assert.NotContains(t, karpenter.Spec.Next.StatusTemplate, "creationTimestamp")

	changed := filepath.Join(dir, "changed.yaml")
	require.NoError(t, os.WriteFile(changed, []byte(strings.Replace(stockNodeInitialize, "or .metadata.creationTimestamp $now", ".metadata.creationTimestamp", 1)), 0o644))
	_, err = WriteNodeStages(changed, filepath.Join(dir, "out3"), time.Second)
	assert.ErrorContains(t, err, "no longer has", "a kwok whose template changed is noticed")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: v1\nkind: Stage\nspec: {}\n"), 0o644))
	_, err = WriteNodeStages(bad, filepath.Join(dir, "out2"), time.Second)
	assert.ErrorContains(t, err, "no spec.selector.matchExpressions")
	_, err = WriteNodeStages(filepath.Join(dir, "missing.yaml"), dir, time.Second)
	assert.ErrorContains(t, err, "node-initialize stage")
}

func TestKarpenterVersionFromBuildInfo(t *testing.T) {
	metrics := "# HELP karpenter_build_info x\n# TYPE karpenter_build_info gauge\n" +
		`karpenter_build_info{commit="",goarch="amd64",goversion="go1.25.4",version="v1.7.1"} 1` + "\n"
	v, err := buildInfoVersionOf(strings.NewReader(metrics))
	require.NoError(t, err)
	assert.Equal(t, "v1.7.1", v)

	_, err = buildInfoVersionOf(strings.NewReader(strings.Replace(metrics, "v1.7.1", "unspecified", 1)))
	assert.ErrorContains(t, err, "built without its version", "a binary built without the -X stamp is refused")
	_, err = buildInfoVersionOf(strings.NewReader("go_goroutines 12\n"))
	assert.ErrorContains(t, err, "no karpenter_build_info")
}

func TestKarpenterArgs(t *testing.T) {
	args := karpenterArgs(KarpenterOptions{InstanceTypesFile: "/x/types.json", BatchMaxDuration: 5 * time.Second}, 1001, 1002)
	assert.Contains(t, args, "--instance-types-file-path=/x/types.json")
	assert.Contains(t, args, "--disable-leader-election")
	assert.Contains(t, args, "--metrics-port=1001")
	assert.Contains(t, args, "--health-probe-port=1002")
	assert.Contains(t, args, "--batch-max-duration=5s")
	for _, a := range args {
		assert.False(t, strings.HasPrefix(a, "--batch-idle-duration"), "unset keeps Karpenter's default: %s", a)
	}
	assert.Equal(t, []string{"KUBECONFIG=/k"}, karpenterEnv("/k"))
}

func TestStartKarpenterChecksItsBinaryAndInstanceTypes(t *testing.T) {
	bin := t.TempDir()
	c := &Cluster{opts: Options{BinDir: bin, Dir: t.TempDir(), Log: io.Discard}}
	_, err := c.StartKarpenter(context.Background(), KarpenterOptions{})
	assert.ErrorContains(t, err, "InstanceTypesFile is required")
	_, err = c.StartKarpenter(context.Background(), KarpenterOptions{InstanceTypesFile: "/nowhere/types.json"})
	assert.ErrorContains(t, err, "karpenter-kwok is not built in")
	require.NoError(t, os.WriteFile(filepath.Join(bin, KarpenterBinary), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	_, err = c.StartKarpenter(context.Background(), KarpenterOptions{InstanceTypesFile: "/nowhere/types.json"})
	assert.ErrorContains(t, err, "Karpenter's instance types")
}

// A karpenter-kwok that prints its environment and flags and exits: StartKarpenter fails at once
// with the end of its log, having passed the kubeconfig and the instance types.
func TestStartKarpenterFailsEarlyWhenItExits(t *testing.T) {
	bin, dir := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, KarpenterBinary), []byte("#!/bin/sh\nenv\necho \"args: $*\"\necho boom >&2\nexit 1\n"), 0o755))
	types := filepath.Join(dir, "types.json")
	require.NoError(t, os.WriteFile(types, []byte("[]"), 0o644))
	c := &Cluster{opts: Options{BinDir: bin, Dir: dir, Log: io.Discard}, KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	t.Cleanup(c.Stop)

	start := time.Now()
	_, err := c.StartKarpenter(context.Background(), KarpenterOptions{InstanceTypesFile: types})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "no waiting for the timeout once it has exited")
	assert.Contains(t, err.Error(), "karpenter-kwok exited")
	assert.Contains(t, err.Error(), "boom", "the log's tail")
	b, err := os.ReadFile(filepath.Join(dir, "logs", KarpenterBinary+".log"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "KUBECONFIG="+c.KubeconfigPath)
	assert.Contains(t, string(b), "--instance-types-file-path="+types)
}

func TestKarpenterGaugeReadsOneSeries(t *testing.T) {
	metrics := `# TYPE karpenter_voluntary_disruption_eligible_nodes gauge
karpenter_voluntary_disruption_eligible_nodes{reason="drifted"} 3
karpenter_voluntary_disruption_eligible_nodes{reason="underutilized"} 2
karpenter_voluntary_disruption_eligible_nodes_other{reason="underutilized"} 9
`
	v, ok, err := gaugeOf(strings.NewReader(metrics), "karpenter_voluntary_disruption_eligible_nodes", `reason="underutilized"`)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, 2.0, v)
	_, ok, err = gaugeOf(strings.NewReader(metrics), "karpenter_voluntary_disruption_eligible_nodes", `reason="empty"`)
	require.NoError(t, err)
	assert.False(t, ok, "no such series")
	_, _, err = gaugeOf(strings.NewReader(`karpenter_x{reason="a"} NaNx`), "karpenter_x", `reason="a"`)
	assert.Error(t, err)
}
