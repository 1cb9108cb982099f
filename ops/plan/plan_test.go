package plan

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// thing is a resource of any type token, for registering test resources under the mocks.
type thing struct{ pulumi.CustomResourceState }

// component is a component resource.
type component struct{ pulumi.ResourceState }

// samplePlan runs a tiny program under the mocks: a component with two children (one with a
// secret input and a dependency), a Kubernetes object with a secret field that depends on a
// Namespace, the Namespace, and a top-level protected resource.
func samplePlan(t *testing.T, extra func(ctx *pulumi.Context) error) *Plan {
	t.Helper()
	m := pulumitest.New("proj", "test")
	err := m.Run(nil, func(ctx *pulumi.Context) error {
		rg := &thing{}
		if err := ctx.RegisterResource("azure-native:resources:ResourceGroup", "rg",
			pulumi.Map{"resourceGroupName": pulumi.String("rg-x"), "location": pulumi.String("westus3")}, rg,
			pulumi.Protect(true)); err != nil {
			return err
		}
		c := &component{}
		if err := ctx.RegisterComponentResource("proj:index:Box", "box", c); err != nil {
			return err
		}
		if err := ctx.RegisterResource("azure-native:storage:Queue", "box-queue",
			pulumi.Map{"queueName": pulumi.String("q1"), "accountName": pulumi.String("acct")}, &thing{},
			pulumi.Parent(c), pulumi.DependsOn([]pulumi.Resource{rg})); err != nil {
			return err
		}
		if err := ctx.RegisterResource("test:index:Opaque", "box-opaque",
			pulumi.Map{"name": pulumi.String("opaque"), "password": pulumi.ToSecret(pulumi.String("hunter2"))}, &thing{},
			pulumi.Parent(c)); err != nil {
			return err
		}
		ns := &thing{}
		if err := ctx.RegisterResource("kubernetes:core/v1:Namespace", "ns", pulumi.Map{
			"apiVersion": pulumi.String("v1"), "kind": pulumi.String("Namespace"),
			"metadata": pulumi.Map{"name": pulumi.String("app")},
		}, ns); err != nil {
			return err
		}
		if err := ctx.RegisterResource("kubernetes:core/v1:Secret", "creds", pulumi.Map{
			"apiVersion": pulumi.String("v1"), "kind": pulumi.String("Secret"),
			"metadata":   pulumi.Map{"name": pulumi.String("creds"), "namespace": pulumi.String("app")},
			"stringData": pulumi.Map{"password": pulumi.ToSecret(pulumi.String("hunter2")), "user": pulumi.String("me")},
		}, &thing{}, pulumi.DependsOn([]pulumi.Resource{ns})); err != nil {
			return err
		}
		if extra != nil {
			return extra(ctx)
		}
		return nil
	})
	require.NoError(t, err)
	p, err := build("proj", "test", map[string]string{}, m, nil)
	require.NoError(t, err)
	return p
}

func TestTreeShape(t *testing.T) {
	p := samplePlan(t, nil)
	var b bytes.Buffer
	renderTree(&b, p.Root)
	want := `pulumi:pulumi:Stack  proj-test
├─ proj:index:Box  box
│  ├─ test:index:Opaque  box-opaque
│  │      name=opaque
│  └─ azure-native:storage:Queue  box-queue
│         queueName=q1
│         opts: dependsOn=[rg]
├─ kubernetes:core/v1:Secret  creds
│      metadata.namespace=app  metadata.name=creds
│      opts: dependsOn=[ns]
├─ kubernetes:core/v1:Namespace  ns
│      metadata.name=app
└─ azure-native:resources:ResourceGroup  rg
       resourceGroupName=rg-x  location=westus3
       opts: protect
`
	assert.Equal(t, want, b.String())
	assert.Equal(t, 7, p.Root.count(), "the stack and six resources")
}

func TestManifestRoundTripsAsYAML(t *testing.T) {
	p := samplePlan(t, nil)
	require.Len(t, p.Manifests, 2)
	assert.Equal(t, "Namespace", p.Manifests[0].Kind(), "the Namespace is applied first")
	for _, mf := range p.Manifests {
		y, err := mf.YAML()
		require.NoError(t, err)
		var obj map[string]any
		require.NoError(t, yaml.Unmarshal(y, &obj), "%s is not valid YAML:\n%s", mf.Name, y)
		assert.Equal(t, mf.APIVersion(), obj["apiVersion"])
		assert.Equal(t, mf.Kind(), obj["kind"])
		md, _ := obj["metadata"].(map[string]any)
		assert.Equal(t, mf.ObjectName(), md["name"])
	}
	var secret map[string]any
	y, err := p.Manifests[1].YAML()
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(y, &secret))
	assert.Equal(t, map[string]any{"password": "[secret]", "user": "me"}, secret["stringData"])
}

func TestSecretsNeverShown(t *testing.T) {
	out := samplePlan(t, nil).String()
	assert.NotContains(t, out, "hunter2")
	assert.Contains(t, out, "password: '[secret]'", "the manifest shows the secret field as [secret]")
}

func TestManifestWithoutKindIsAnError(t *testing.T) {
	m := pulumitest.New("proj", "test")
	require.NoError(t, m.Run(nil, func(ctx *pulumi.Context) error {
		return ctx.RegisterResource("kubernetes:core/v1:ConfigMap", "cm",
			pulumi.Map{"metadata": pulumi.Map{"name": pulumi.String("cm")}}, &thing{})
	}))
	_, err := build("proj", "test", nil, m, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kubernetes:core/v1:ConfigMap cm")
}

func TestRenderIsDeterministic(t *testing.T) {
	a, b := samplePlan(t, nil).String(), samplePlan(t, nil).String()
	assert.Equal(t, a, b)
	for _, section := range []string{"Offline plan: stack test, project proj", "Key settings", "Resources (6, plus the stack)",
		"Kubernetes manifests (2, in apply order)", "  protect         rg\n"} {
		assert.Contains(t, a, section)
	}
}

func TestWarningsAreRecorded(t *testing.T) {
	rec := &logRecorder{}
	m := pulumitest.New("proj", "test")
	require.NoError(t, m.Run(nil, func(ctx *pulumi.Context) error {
		rec.inner = ctx.Log
		ctx.Log = rec
		return ctx.Log.Warn("second", nil)
	}))
	assert.Equal(t, []string{"warning: second"}, rec.messages())
}

func TestShortIDAndWrap(t *testing.T) {
	assert.Equal(t, "…/Queue/q1", shortID("/subscriptions/s/resourceGroups/rg/providers/storage/Queue/q1"))
	assert.Equal(t, "plain", shortID("plain"))
	var b bytes.Buffer
	wrap(&b, "> ", "  ", []string{strings.Repeat("a", 60), strings.Repeat("b", 60)}, "  ")
	assert.Equal(t, "> "+strings.Repeat("a", 60)+"\n  "+strings.Repeat("b", 60)+"\n", b.String())
}

func TestRunUnknownStack(t *testing.T) {
	_, err := Run("../..", "no-such-stack")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stacks: dev, dev-aca, prod")
}
