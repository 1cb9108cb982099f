package components

import (
	"testing"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

func TestKedaOperatorIdentity(t *testing.T) {
	m := pulumitest.New("aks-edw", "dev")
	require.NoError(t, m.Run(nil, func(ctx *pulumi.Context) error {
		cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6)})
		if err != nil {
			return err
		}
		credential, err := random.NewRandomString(ctx, "keda-credential", &random.RandomStringArgs{Length: pulumi.Int(6)})
		if err != nil {
			return err
		}
		k8s, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		_, err = NewKedaOperatorIdentity(ctx, "keda", &KedaOperatorIdentityArgs{
			ClientID: pulumi.String("client-id"), DependsOn: []pulumi.Resource{credential}, Cluster: cluster, Provider: k8s,
		})
		return err
	}))
	sa := m.One(t, "kubernetes:core/v1:ServiceAccountPatch")
	restart := m.One(t, "kubernetes:apps/v1:DeploymentPatch")
	assert.Equal(t, "keda-operator", sa.Input("metadata.name"))
	assert.Equal(t, "kube-system", sa.Input("metadata.namespace"))
	assert.Equal(t, "client-id", sa.Input("metadata.annotations.azure\\.workload\\.identity/client-id"))
	assert.Equal(t, "keda-operator", restart.Input("metadata.name"))
	assert.Equal(t, "true", restart.Input("spec.template.metadata.labels.azure\\.workload\\.identity/use"))
	assert.Equal(t, "client-id", restart.Input("spec.template.metadata.annotations.aks-edw\\.io/keda-workload-identity-client-id"))
	assert.Nil(t, restart.Input("spec.selector"), "a patch sets only the fields it owns")
	assert.True(t, restart.DependsOn(sa))
	assert.True(t, restart.DependsOn(m.Get(t, "random:index/randomString:RandomString", "keda-credential")))
	p := m.One(t, "pulumi:providers:kubernetes")
	cluster := m.Get(t, "random:index/randomString:RandomString", "cluster")
	assert.Equal(t, 2, pulumitest.CheckKubernetesObjects(t, m, p, cluster))
	comp := m.One(t, KedaOperatorIdentityType)
	assert.Equal(t, comp.URN, sa.Parent)
	assert.Equal(t, comp.URN, restart.Parent)

	err := m.Run(nil, func(ctx *pulumi.Context) error {
		_, err := NewKedaOperatorIdentity(ctx, "keda", &KedaOperatorIdentityArgs{})
		return err
	})
	require.Error(t, err)
	for _, f := range []string{"ClientID is required", "Cluster is required", "Provider is required"} {
		assert.Contains(t, err.Error(), f)
	}
}
