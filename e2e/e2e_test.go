package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
)

// These cover the harness's own logic; `make e2e` runs the scenario itself.

func nodePoolProps() pulumi.Map {
	return pulumi.Map{
		"apiVersion": pulumi.String("karpenter.sh/v1"),
		"spec": pulumi.Map{"template": pulumi.Map{"spec": pulumi.Map{
			"requirements": pulumi.Array{pulumi.Map{"key": pulumi.String("kubernetes.io/os"), "operator": pulumi.String("In"), "values": pulumi.Array{pulumi.String("linux")}}},
		}}},
	}
}

func TestBreaksEditTheObjectTheyName(t *testing.T) {
	plain, err := toPlain(nodePoolProps())
	require.NoError(t, err)
	require.NoError(t, breaks["nodepool-restricted-label"].edit(plain))
	reqs, err := dig[[]any](plain, "spec", "template", "spec", "requirements")
	require.NoError(t, err)
	require.Len(t, reqs, 2)
	assert.Equal(t, "karpenter.sh/nodepool", reqs[1].(map[string]any)["key"])

	so := map[string]any{"spec": map[string]any{"maxReplicaCount": 5}}
	require.NoError(t, breaks["scaledobject-unknown-field"].edit(so))
	assert.Equal(t, 5, so["spec"].(map[string]any)["maxReplicas"])

	assert.Error(t, breaks["nodepool-restricted-label"].edit(map[string]any{"spec": "x"}), "a shape it cannot edit is an error")
}

func TestBreakTransformOnlyTouchesItsKind(t *testing.T) {
	b := breaks["nodepool-restricted-label"]
	other := &pulumi.ResourceTransformArgs{Type: "kubernetes:apps/v1:Deployment", Props: nodePoolProps()}
	assert.Nil(t, b.transform(context.Background(), other))
	mine := &pulumi.ResourceTransformArgs{Type: "kubernetes:karpenter.sh/v1:NodePool", Props: nodePoolProps()}
	res := b.transform(context.Background(), mine)
	require.NotNil(t, res)
	assert.Contains(t, res.Props, "spec")
}

func TestToPlainKeepsValuesAndOutputs(t *testing.T) {
	out := pulumi.String("x").ToStringOutput()
	plain, err := toPlain(pulumi.Map{"s": pulumi.String("a"), "b": pulumi.Bool(true), "n": pulumi.Float64(2), "o": out, "nil": nil})
	require.NoError(t, err)
	assert.Equal(t, "a", plain["s"])
	assert.Equal(t, true, plain["b"])
	assert.Equal(t, 2.0, plain["n"])
	assert.Equal(t, out, plain["o"], "an output passes through untouched")
	assert.Nil(t, plain["nil"])
}

func TestOutcomeCounts(t *testing.T) {
	o := outcome{ops: map[string][]string{
		"same":   {"a", "b"},
		"update": {"kubernetes:apps/v1:Deployment::consumer-deployment"},
	}}
	assert.Equal(t, 1, o.changed())
	assert.Equal(t, "same 2, update 1", o.counts())
	assert.True(t, o.has("update", "Deployment::consumer-deployment"))
	assert.False(t, o.has("update", "ScaledObject::consumer-scaled-object"))

	err := onlyUpdates(o, "preview")
	require.Error(t, err, "the ScaledObject is not updated")
	o.ops["update"] = append(o.ops["update"], "kubernetes:keda.sh/v1alpha1:ScaledObject::consumer-scaled-object")
	assert.NoError(t, onlyUpdates(o, "preview"))
	o.ops["replace"] = []string{"kubernetes:core/v1:Namespace::consumer-namespace"}
	assert.ErrorContains(t, onlyUpdates(o, "preview"), "plans replace")
}

func TestScaleModeSwitchObjects(t *testing.T) {
	s := components.DefaultConsumerSettings()
	shared, gone, added := diffObjects(workloadObjects(s, components.ScaleModeScaledObject), workloadObjects(s, components.ScaleModeScaledJob))
	assert.Equal(t, "Namespace, ServiceAccount, TriggerAuthentication, NodePool, NetworkPolicy", kinds(shared))
	assert.Equal(t, "Deployment, PodDisruptionBudget, ScaledObject", kinds(gone))
	assert.Equal(t, "ScaledJob", kinds(added))
}

func TestRefusalFindsTheAPIServerMessage(t *testing.T) {
	errs := []string{"consumer-node-pool: other", `consumer-node-pool: NodePool.karpenter.sh "aqs-app-pool" is invalid: spec.template.spec.requirements[4].key: Invalid value: "string": label "karpenter.sh/nodepool" is restricted`}
	assert.Contains(t, refusal(errs, breaks["nodepool-restricted-label"].refusal), `is invalid`)
	assert.Empty(t, refusal(errs[:1], breaks["nodepool-restricted-label"].refusal))
}

func triggerAuthProps() pulumi.Map {
	return pulumi.Map{
		"apiVersion": pulumi.String("keda.sh/v1alpha1"),
		"kind":       pulumi.String("TriggerAuthentication"),
		"spec": pulumi.Map{"podIdentity": pulumi.Map{
			"provider": pulumi.String("azure-workload"), "identityId": pulumi.String(fakeClientID),
		}},
	}
}

// The one substitution: only the TriggerAuthentication's spec changes, to the Secret's connection
// string, and the stack's own spec is kept for the evidence.
func TestSubstituteAuthRewritesOnlyTheTriggerAuthentication(t *testing.T) {
	d := &desired{}
	other := &pulumi.ResourceTransformArgs{Type: "kubernetes:keda.sh/v1alpha1:ScaledObject", Props: triggerAuthProps()}
	assert.Nil(t, d.substituteAuth(context.Background(), other), "a ScaledObject is left alone")

	res := d.substituteAuth(context.Background(), &pulumi.ResourceTransformArgs{Type: "kubernetes:keda.sh/v1alpha1:TriggerAuthentication", Props: triggerAuthProps()})
	require.NotNil(t, res)
	awaited, err := internals.UnsafeAwaitOutput(context.Background(), res.Props.ToMapOutput())
	require.NoError(t, err)
	plain := awaited.Value.(map[string]any)
	assert.Equal(t, azuriteAuthSpec(), plain["spec"])
	assert.Equal(t, "keda.sh/v1alpha1", plain["apiVersion"], "everything but the spec stays")
	assert.Equal(t, map[string]any{"podIdentity": map[string]any{"provider": "azure-workload", "identityId": fakeClientID}}, d.productionAuth)
	refs, err := dig[[]any](plain, "spec", "secretTargetRef")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"parameter": "connection", "name": azuriteSecretName, "key": azuriteSecretKey}, refs[0], "the azure-queue scaler's `connection` parameter")
}

// recordScaler keeps the stack's ScaledObject or ScaledJob spec by kind and changes nothing.
func TestRecordScalerKeepsTheStacksSpecAndChangesNothing(t *testing.T) {
	d := &desired{}
	props := pulumi.Map{"spec": pulumi.Map{"pollingInterval": pulumi.Float64(5), "triggers": pulumi.Array{
		pulumi.Map{"type": pulumi.String("azure-queue"), "metadata": pulumi.Map{"queueName": pulumi.String(queueName)}},
	}}}
	assert.Nil(t, d.recordScaler(context.Background(), &pulumi.ResourceTransformArgs{Type: "kubernetes:keda.sh/v1alpha1:ScaledObject", Props: props}))
	assert.Nil(t, d.recordScaler(context.Background(), &pulumi.ResourceTransformArgs{Type: "kubernetes:keda.sh/v1alpha1:TriggerAuthentication", Props: triggerAuthProps()}))
	assert.Equal(t, map[string]map[string]any{"ScaledObject": {"pollingInterval": 5.0, "triggers": []any{
		map[string]any{"type": "azure-queue", "metadata": map[string]any{"queueName": queueName}},
	}}}, d.scalers, "only the scaler's spec, under its kind")
}

// subsetDiffs names every field of the registered spec that the server lacks or holds
// differently, and ignores what the server adds.
func TestSubsetDiffsNamesEachDifferingField(t *testing.T) {
	want := map[string]any{"pollingInterval": 5.0, "triggers": []any{map[string]any{"metadata": map[string]any{"queueName": "q", "queueLength": "50"}}}}
	same := map[string]any{"pollingInterval": 5.0, "added": true, "triggers": []any{map[string]any{"metadata": map[string]any{"queueName": "q", "queueLength": "50"}, "name": "x"}}}
	assert.Empty(t, subsetDiffs("spec", want, same))
	changed := map[string]any{"pollingInterval": 6.0, "triggers": []any{map[string]any{"metadata": map[string]any{"queueName": "q"}}}}
	assert.Equal(t, []string{
		"spec.pollingInterval is 6, want 5",
		"spec.triggers[0].metadata.queueLength is <nil>, want 50",
	}, subsetDiffs("spec", want, changed))
	assert.Equal(t, []string{"spec.triggers is [], want 1 items"}, subsetDiffs("spec", want, map[string]any{"pollingInterval": 5.0, "triggers": []any{}}))
}

// The operator-only defect misspells queueName and nothing else; step 5 leaves it to the operator.
func TestTriggerMetadataTypo(t *testing.T) {
	so := map[string]any{"spec": map[string]any{"triggers": []any{map[string]any{
		"type": "azure-queue", "metadata": map[string]any{"queueName": "aws2azmsgs", "accountName": "a"},
	}}}}
	b := breaks["trigger-metadata-typo"]
	require.True(t, b.byOperator)
	require.NoError(t, b.edit(so))
	md := so["spec"].(map[string]any)["triggers"].([]any)[0].(map[string]any)["metadata"]
	assert.Equal(t, map[string]any{"queueNme": "aws2azmsgs", "accountName": "a"}, md)
	assert.Error(t, b.edit(map[string]any{"spec": map[string]any{}}), "no triggers to break is an error")
	for k, other := range breaks {
		if k != "trigger-metadata-typo" {
			assert.False(t, other.byOperator, "%s is refused by the API server", k)
		}
	}
}

// The replicas over time: the first sample and each change, in order.
func TestTimelineShowsEachChange(t *testing.T) {
	pts := []scalePoint{{at: 0, replicas: 0}, {at: 500 * time.Millisecond, replicas: 0}, {at: 4 * time.Second, replicas: 1},
		{at: 7 * time.Second, replicas: 5}, {at: 7500 * time.Millisecond, replicas: 5}, {at: 22 * time.Second, replicas: 8}, {at: 40 * time.Second, replicas: 1}}
	assert.Equal(t, "0 (0.0s) -> 1 (4.0s) -> 5 (7.0s) -> 8 (22.0s) -> 1 (40.0s)", timeline(pts))
	pts[2].running, pts[3].running = 1, 6
	peak, running := peakReplicas(pts)
	assert.Equal(t, int32(8), peak)
	assert.Equal(t, 6, running)
}

func stackNodePoolProps() pulumi.Map {
	return pulumi.Map{
		"apiVersion": pulumi.String("karpenter.sh/v1"),
		"spec": pulumi.Map{
			"limits": pulumi.Map{"cpu": pulumi.String("100")},
			"template": pulumi.Map{"spec": pulumi.Map{
				"requirements": pulumi.Array{pulumi.Map{"key": pulumi.String("karpenter.azure.com/sku-family"), "operator": pulumi.String("In"), "values": pulumi.Array{pulumi.String("D")}}},
				"nodeClassRef": pulumi.Map{"group": pulumi.String("karpenter.azure.com"), "kind": pulumi.String("AKSNodeClass"), "name": pulumi.String("default")},
			}},
		},
	}
}

// The second substitution: only the NodePool's nodeClassRef changes, to the KWOKNodeClass, and
// the stack's own spec is kept for step 1's comparison.
func TestSubstituteNodeClassRewritesOnlyTheNodeClassRef(t *testing.T) {
	d := &desired{}
	assert.Nil(t, d.substituteNodeClass(context.Background(), &pulumi.ResourceTransformArgs{Type: "kubernetes:keda.sh/v1alpha1:ScaledObject", Props: stackNodePoolProps()}))
	assert.Nil(t, d.nodePool, "nothing recorded for another kind")

	res := d.substituteNodeClass(context.Background(), &pulumi.ResourceTransformArgs{Type: "kubernetes:karpenter.sh/v1:NodePool", Props: stackNodePoolProps()})
	require.NotNil(t, res)
	awaited, err := internals.UnsafeAwaitOutput(context.Background(), res.Props.ToMapOutput())
	require.NoError(t, err)
	plain := awaited.Value.(map[string]any)
	ref, err := dig[map[string]any](plain, "spec", "template", "spec", "nodeClassRef")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": kwokNodeClass}, ref)
	reqs, err := dig[[]any](plain, "spec", "template", "spec", "requirements")
	require.NoError(t, err)
	assert.Len(t, reqs, 1, "the requirements stay")
	assert.Equal(t, map[string]any{"cpu": "100"}, plain["spec"].(map[string]any)["limits"], "the limits stay")

	recorded, err := dig[map[string]any](d.nodePool, "template", "spec", "nodeClassRef")
	require.NoError(t, err)
	assert.Equal(t, "AKSNodeClass", recorded["kind"], "the stack's spec is recorded before the rewrite")
}

// The Karpenter-only defect changes the sku-family requirement to one no instance type has; it
// is not one of step 5's API-server refusals.
func TestNodePoolUnschedulableBreak(t *testing.T) {
	b := breaks["nodepool-unschedulable"]
	require.True(t, b.byKarpenter)
	plain, err := toPlain(stackNodePoolProps())
	require.NoError(t, err)
	require.NoError(t, b.edit(plain))
	reqs, err := dig[[]any](plain, "spec", "template", "spec", "requirements")
	require.NoError(t, err)
	assert.Equal(t, []any{"N"}, reqs[0].(map[string]any)["values"])
	assert.Error(t, b.edit(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"requirements": []any{}}}}}), "no sku-family requirement to break is an error")

	// Every offering of every size carries the family the stack requires, none the broken one.
	b2, err := os.ReadFile(filepath.Join("..", instanceTypesFile))
	require.NoError(t, err)
	var types []struct {
		Name, Architecture string
		OperatingSystems   []string
		Offerings          []struct {
			Requirements []struct {
				Key    string
				Values []string
			}
		}
	}
	require.NoError(t, json.Unmarshal(b2, &types))
	require.NotEmpty(t, types)
	capacity := map[string]bool{}
	for _, it := range types {
		assert.Regexp(t, `^Standard_D\d+s_v5$`, it.Name)
		assert.Equal(t, "amd64", it.Architecture, it.Name)
		assert.Equal(t, []string{"linux"}, it.OperatingSystems, it.Name)
		for _, o := range it.Offerings {
			family := ""
			for _, r := range o.Requirements {
				switch r.Key {
				case "karpenter.azure.com/sku-family":
					family = strings.Join(r.Values, ",")
				case "karpenter.sh/capacity-type":
					capacity[strings.Join(r.Values, ",")] = true
				}
			}
			assert.Equal(t, "D", family, "%s: an offering without the family the NodePool requires", it.Name)
		}
	}
	assert.Equal(t, map[string]bool{"on-demand": true, "spot": true}, capacity, "both capacity types")
}

func TestKEDAPendingPollsCountsPollsWithPendingJobs(t *testing.T) {
	since := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	lines := []string{
		`2026-12-06T11:59:59Z	INFO	scaleexecutor	Scaling Jobs	{"scaledJob.Name": "j", "Number of pending Jobs": 3}`,
		`2026-12-06T12:00:02Z	INFO	scaleexecutor	Scaling Jobs	{"scaledJob.Name": "j", "Number of running Jobs": 5}`,
		`2026-12-06T12:00:02Z	INFO	scaleexecutor	Scaling Jobs	{"scaledJob.Name": "j", "Number of pending Jobs": 5}`,
		`2026-12-06T12:00:07Z	INFO	scaleexecutor	Scaling Jobs	{"scaledJob.Name": "j", "Number of pending Jobs": 2}`,
		`2026-12-06T12:00:12Z	INFO	scaleexecutor	Scaling Jobs	{"scaledJob.Name": "j", "Number of pending Jobs": 0}`,
		``,
	}
	assert.Equal(t, 2, kedaPendingPolls(lines, since), "only polls since the burst with pending Jobs")
}

func TestNodeCountsSince(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	w := &nodeWatch{counts: []nodeCount{{t0, 0}, {t0.Add(10 * time.Second), 2}, {t0.Add(40 * time.Second), 1}, {t0.Add(52 * time.Second), 0}}}
	assert.Equal(t, "2 (0s) -> 1 (10s) -> 0 (22s)", w.countsSince(t0.Add(30*time.Second)))
	assert.Equal(t, 0, w.live())
}

// tools.sh builds the Karpenter whose CRDs the API server serves.
func TestToolsBuildTheKarpenterOfTheCRDs(t *testing.T) {
	b, err := os.ReadFile("tools.sh")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^KARPENTER_VERSION=(v\S+)`).FindSubmatch(b)
	require.NotNil(t, m, "tools.sh has no KARPENTER_VERSION")
	assert.Equal(t, karpenterVersion, string(m[1]))
	m = regexp.MustCompile(`(?m)^KWOK_VERSION=(v\S+)`).FindSubmatch(b)
	require.NotNil(t, m)
	assert.Equal(t, kwokVersion, string(m[1]))
}
