package components

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi-azure-native-sdk/containerservice/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

func clusterTestArgs() *ClusterArgs {
	return &ClusterArgs{
		ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
		ClusterName: pulumi.String("aks1"), IdentityName: pulumi.String("mi1"),
		WorkspaceName: pulumi.String("log1"), NodeResourceGroup: pulumi.String("MC_rg_aks1_westus3"),
		SubnetID: pulumi.String("/subnets/aks"), RegistryID: pulumi.String("/registries/acr1"),
		SubscriptionID: pulumi.String("sub"),
		Spec: ClusterSpec{
			SystemNodeCount: 3, SystemNodeVMSize: "Standard_D4ds_v5", SystemNodeZones: []string{"1", "2"},
			UpgradeChannel: "stable", NodeOSUpgradeChannel: "SecurityPatch",
			PodCidr: "10.244.0.0/16", ServiceCidr: "10.0.0.0/16", DNSServiceIP: "10.0.0.10",
			APIServerAuthorizedIPRanges: []string{"203.0.113.0/24"}, Tier: "Standard",
		},
		Protect: true,
	}
}

func TestClusterComponent(t *testing.T) {
	var kc internals.UnsafeAwaitOutputResult
	m := runAzure(t, func(ctx *pulumi.Context) error {
		c, err := NewCluster(ctx, "c", clusterTestArgs())
		if err != nil {
			return err
		}
		kc, err = internals.UnsafeAwaitOutput(ctx.Context(), c.Kubeconfig)
		return err
	})
	assert.True(t, kc.Secret, "kubeconfig must be a secret")
	assert.Equal(t, pulumitest.Kubeconfig(), kc.Value, "kubeconfig is the base64-decoded credential")
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	assert.True(t, mc.Protect)
	assert.Equal(t, "Auto", mc.Input("nodeProvisioningProfile.mode"))
	assert.Equal(t, []any{"1", "2"}, mc.Input("agentPoolProfiles.0.availabilityZones"))
	assert.Equal(t, []any{"203.0.113.0/24"}, mc.Input("apiServerAccessProfile.authorizedIPRanges"))
	assert.Equal(t, "stable", mc.Input("autoUpgradeProfile.upgradeChannel"))
	assert.Equal(t, "SecurityPatch", mc.Input("autoUpgradeProfile.nodeOSUpgradeChannel"))
	assert.Equal(t, "Standard", mc.Input("sku.tier"))
	assert.Equal(t, "MC_rg_aks1_westus3", mc.Input("nodeResourceGroup"))
	ws := m.One(t, "azure-native:operationalinsights:Workspace")
	assert.Equal(t, ws.ID, mc.Input("addonProfiles.omsagent.config.logAnalyticsWorkspaceResourceID"), "Container Insights must use the stack's workspace")
	id := m.One(t, "azure-native:managedidentity:UserAssignedIdentity")
	assert.Equal(t, []any{id.ID}, mc.Input("identity.userAssignedIdentities"))
	acr := m.Get(t, "azure-native:authorization:RoleAssignment", "c-kubelet-acrpull")
	assert.Equal(t, mc.Output("identityProfile.kubeletidentity.objectId"), acr.Input("principalId"))
	assert.Equal(t, "/registries/acr1", acr.Input("scope"))
	requireChildrenParented(t, m, "aks-edw:azure:Cluster")
	// The only invoke is the credentials read, against this cluster.
	calls := m.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, "azure-native:containerservice:listManagedClusterUserCredentials", calls[0].Token)
	assert.Equal(t, "aks1", calls[0].Args["resourceName"].StringValue())
}

func TestClusterDefaultsAndValidation(t *testing.T) {
	args := clusterTestArgs()
	args.Spec.APIServerAuthorizedIPRanges = nil
	args.Spec.Tier = ""
	built := managedClusterArgs(args, pulumi.String("id"), pulumi.String("ws"))
	assert.Nil(t, built.ApiServerAccessProfile, "no authorized ranges: no access profile")
	args.Spec.SystemNodeCount = 0
	args.Spec.SystemNodeVMSize = ""
	err := runAzureErr(func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", args); return err })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SystemNodeCount")
	assert.Contains(t, err.Error(), "SystemNodeVMSize")
}

// The Container Insights rule and its association (issue 12 item 3), from the component alone.
func TestClusterContainerInsights(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", clusterTestArgs()); return err })
	rule := m.One(t, "azure-native:monitor:DataCollectionRule")
	assoc := m.One(t, "azure-native:monitor:DataCollectionRuleAssociation")
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	ws := m.One(t, "azure-native:operationalinsights:Workspace")
	assert.Equal(t, "MSCI-westus3-aks1", rule.Input("dataCollectionRuleName"))
	assert.Equal(t, "rg", rule.Input("resourceGroupName"))
	assert.Equal(t, "ContainerInsights", rule.Input("dataSources.extensions.0.extensionName"))
	assert.Equal(t, ws.ID, rule.Input("destinations.logAnalytics.0.workspaceResourceId"))
	assert.Equal(t, mc.ID, assoc.Input("resourceUri"))
	assert.Equal(t, rule.ID, assoc.Input("dataCollectionRuleId"))
	assert.Equal(t, ContainerInsightsAssociationName, assoc.Input("associationName"))
	assert.Equal(t, "true", mc.Input("addonProfiles.omsagent.config.useAADAuth"))
}

func TestContainerInsightsRuleName(t *testing.T) {
	assert.Equal(t, "MSCI-westus3-aks-aksdemo-x7k2p9", containerInsightsRuleName("westus3", "aks-aksdemo-x7k2p9"))
	long := containerInsightsRuleName("westus3", "aks-"+strings.Repeat("a", 80))
	assert.Len(t, long, 64, "Azure caps the rule name at 64 characters")
}

// A version pin that the upgrade channel would move past is refused by the component too.
func TestClusterRefusesAMovingVersionPin(t *testing.T) {
	args := clusterTestArgs()
	args.Spec.KubernetesVersion = "1.33" // beside "stable"
	err := runAzureErr(func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", args); return err })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kubernetesVersion \"1.33\" is pinned while upgradeChannel \"stable\"")
	args.Spec.UpgradeChannel = "patch"
	built := managedClusterArgs(args, pulumi.String("id"), pulumi.String("ws"))
	assert.NotNil(t, built.KubernetesVersion, "a minor pin with the patch channel is kept")
}

// Managed Prometheus on the cluster: the metrics add-on with empty kube-state-metrics allow-lists
// when on; no azureMonitorProfile at all when off. The builder, then the component under mocks.
func TestClusterAzureMonitorProfile(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   bool
	}{
		{"off", false},
		{"on", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := clusterTestArgs()
			args.Spec.ManagedPrometheus = tc.on
			built := managedClusterArgs(args, pulumi.String("id"), pulumi.String("ws"))
			m := runAzure(t, func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", args); return err })
			mc := m.One(t, "azure-native:containerservice:ManagedCluster")
			if !tc.on {
				assert.Nil(t, built.AzureMonitorProfile, "off: no azureMonitorProfile")
				assert.Nil(t, mc.Input("azureMonitorProfile"), "off: no azureMonitorProfile sent")
				return
			}
			profile := built.AzureMonitorProfile.(*containerservice.ManagedClusterAzureMonitorProfileArgs)
			metrics := profile.Metrics.(*containerservice.ManagedClusterAzureMonitorProfileMetricsArgs)
			assert.Equal(t, pulumi.Bool(true), metrics.Enabled)
			ksm := metrics.KubeStateMetrics.(*containerservice.ManagedClusterAzureMonitorProfileKubeStateMetricsArgs)
			assert.Equal(t, pulumi.String(""), ksm.MetricLabelsAllowlist)
			assert.Equal(t, pulumi.String(""), ksm.MetricAnnotationsAllowList)
			assert.Equal(t, map[string]any{"metrics": map[string]any{
				"enabled":          true,
				"kubeStateMetrics": map[string]any{"metricLabelsAllowlist": "", "metricAnnotationsAllowList": ""},
			}}, mc.Input("azureMonitorProfile"), "the profile as sent")
			// The add-on's rule and association are the ManagedPrometheus component's: the
			// cluster keeps exactly its Container Insights pair.
			assert.Len(t, m.ByType("azure-native:monitor:DataCollectionRule"), 1)
			assert.Len(t, m.ByType("azure-native:monitor:DataCollectionRuleAssociation"), 1)
		})
	}
}
