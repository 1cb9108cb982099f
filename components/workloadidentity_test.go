package components

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWorkloadIdentityComponent(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error {
		_, err := NewWorkloadIdentity(ctx, "wi", &WorkloadIdentityArgs{
			ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
			IdentityName: pulumi.String("mi-wi"), SubscriptionID: pulumi.String("sub"),
			QueueID: pulumi.String("/queues/q"), PoisonQueueID: pulumi.String("/queues/q-poison"),
			TableID: pulumi.String("/tables/t"), IssuerURL: pulumi.String("https://issuer.example/x/"),
			Namespace: "ns1", ServiceAccountName: "sa1",
			CredentialName: pulumi.String("fc1"), KedaCredentialName: pulumi.String("fc2"),
		})
		return err
	})
	sa := m.Get(t, "azure-native:managedidentity:FederatedIdentityCredential", "wi-sa-credential")
	keda := m.Get(t, "azure-native:managedidentity:FederatedIdentityCredential", "wi-keda-credential")
	assert.Equal(t, "system:serviceaccount:ns1:sa1", sa.Input("subject"))
	assert.Equal(t, KedaOperatorSubject, keda.Input("subject"))
	assert.Equal(t, "https://issuer.example/x/", sa.Input("issuer"), "issuer used verbatim")
	assert.True(t, keda.DependsOn(sa))
	assert.True(t, sa.DeleteBeforeReplace && keda.DeleteBeforeReplace)
	scopes := map[any]any{}
	for _, r := range m.ByType("azure-native:authorization:RoleAssignment") {
		scopes[r.Input("scope")] = r.Input("roleDefinitionId")
		assert.Equal(t, "ServicePrincipal", r.Input("principalType"))
	}
	assert.Equal(t, map[any]any{
		"/queues/q":        "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/" + RoleStorageQueueDataContributor,
		"/queues/q-poison": "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/" + RoleStorageQueueDataContributor,
		"/tables/t":        "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/" + RoleStorageTableDataContributor,
	}, scopes, "exactly the queue, poison queue and table scopes")
	requireChildrenParented(t, m, "aks-edw:azure:WorkloadIdentity")

	err := runAzureErr(func(ctx *pulumi.Context) error {
		_, err := NewWorkloadIdentity(ctx, "wi", &WorkloadIdentityArgs{})
		return err
	})
	require.Error(t, err)
}

func TestNetworkAndRegistryComponents(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error {
		if _, err := NewNetwork(ctx, "n", &NetworkArgs{
			ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
			VnetName: pulumi.String("vnet1"), SubnetName: pulumi.String("snet1"),
			AddressSpace: "10.224.0.0/12", SubnetPrefix: "10.224.0.0/16",
		}); err != nil {
			return err
		}
		_, err := NewRegistry(ctx, "r", &RegistryArgs{
			ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"), Name: pulumi.String("acr1"),
		})
		return err
	})
	vnet := m.One(t, "azure-native:network:VirtualNetwork")
	assert.Equal(t, []any{"10.224.0.0/12"}, vnet.Input("addressSpace.addressPrefixes"))
	assert.Nil(t, vnet.Input("subnets"), "subnet must not be inline")
	sn := m.One(t, "azure-native:network:Subnet")
	assert.Equal(t, "10.224.0.0/16", sn.Input("addressPrefix"))
	assert.Equal(t, "vnet1", sn.Input("virtualNetworkName"))
	reg := m.One(t, "azure-native:containerregistry:Registry")
	assert.Equal(t, "Basic", reg.Input("sku.name"))
	assert.Equal(t, false, reg.Input("adminUserEnabled"))
	assert.Equal(t, false, reg.Input("anonymousPullEnabled"))
	assert.False(t, reg.Protect)
}
