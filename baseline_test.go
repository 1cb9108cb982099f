package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/internal/pulumitest"
)

const tMaintenance = "azure-native:containerservice:MaintenanceConfiguration"

// Issue 17 item 3: prod upgrades only in its weekly window, for both of its channels (stable and
// SecurityPatch); dev sets no window and gets no configuration.
func TestMaintenanceWindows(t *testing.T) {
	m := runStack(t, "prod", loadStackConfig(t, "prod")).mocks
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	configs := m.ByType(tMaintenance)
	require.Len(t, configs, 2, "prod: one configuration per upgrade channel")
	var names []any
	for _, c := range configs {
		names = append(names, c.Input("configName"))
		assert.Equal(t, mc.Output("name"), c.Input("resourceName"), "on the stack's cluster")
		assert.Equal(t, "Sunday", c.Input("maintenanceWindow.schedule.weekly.dayOfWeek"))
		assert.Equal(t, 1.0, c.Input("maintenanceWindow.schedule.weekly.intervalWeeks"))
		assert.Equal(t, "02:00", c.Input("maintenanceWindow.startTime"))
		assert.Equal(t, 4.0, c.Input("maintenanceWindow.durationHours"))
		assert.Equal(t, "+00:00", c.Input("maintenanceWindow.utcOffset"))
	}
	assert.ElementsMatch(t, []any{components.MaintenanceAutoUpgrade, components.MaintenanceNodeOSUpgrade}, names)

	dev := runStack(t, "dev", loadStackConfig(t, "dev")).mocks
	assert.Empty(t, dev.ByType(tMaintenance), "dev sets no window")
}

// Issue 17 item 1: both stacks are Entra-only. No local accounts, AKS-managed Entra ID with Azure
// RBAC for Kubernetes, the user credential in kubelogin's exec format, and the deployer made
// AKS RBAC Cluster Admin on the cluster before the Kubernetes provider (so every object) and the
// add-on wait; localAccounts true takes all of that back.
func TestEntraOnlyClusterAccess(t *testing.T) {
	for _, stack := range []string{"dev", "prod"} {
		t.Run(stack, func(t *testing.T) {
			m := runStack(t, stack, loadStackConfig(t, stack)).mocks
			mc := m.One(t, "azure-native:containerservice:ManagedCluster")
			assert.Equal(t, true, mc.Input("disableLocalAccounts"))
			assert.Equal(t, true, mc.Input("aadProfile.managed"))
			assert.Equal(t, true, mc.Input("aadProfile.enableAzureRBAC"))
			assert.Equal(t, "exec", credentialFormat(t, m), "kubelogin's exec format: admin credentials are refused on such a cluster")

			admin := m.Get(t, tRole, "deployer-aks-rbac-cluster-admin")
			assert.Equal(t, "/subscriptions/"+pulumitest.SubscriptionID+"/providers/Microsoft.Authorization/roleDefinitions/"+components.RoleAKSRBACClusterAdmin, admin.Input("roleDefinitionId"))
			assert.Equal(t, mc.ID, admin.Input("scope"), "on the cluster")
			assert.Equal(t, pulumitest.DeployerObjectID, admin.Input("principalId"))
			provider := m.Get(t, "pulumi:providers:kubernetes", "consumer-k8s")
			assert.True(t, provider.DependsOn(admin), "the Kubernetes provider, and so every object, waits for the role")
		})
	}

	m := runStack(t, "dev", withConfig(loadStackConfig(t, "dev"), "localAccounts", "true")).mocks
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	assert.Equal(t, false, mc.Input("disableLocalAccounts"))
	assert.Nil(t, mc.Input("aadProfile"))
	assert.Equal(t, "", credentialFormat(t, m))
	for _, r := range m.ByType(tRole) {
		assert.NotEqual(t, "deployer-aks-rbac-cluster-admin", r.Name, "local accounts: no Azure RBAC role for the deployer")
	}
}

// credentialFormat is the format argument of the stack's one user-credentials call ("" unset).
func credentialFormat(t *testing.T, m *pulumitest.Mocks) string {
	t.Helper()
	var formats []string
	for _, c := range m.Calls() {
		if c.Token == "azure-native:containerservice:listManagedClusterUserCredentials" {
			f := ""
			if v, ok := c.Args["format"]; ok && v.IsString() {
				f = v.StringValue()
			}
			formats = append(formats, f)
		}
	}
	require.Len(t, formats, 1, "one user-credentials call")
	return formats[0]
}

// The CI identity's Role Based Access Control Administrator condition (README, "Continuous
// delivery") must allow every role either stack assigns, or `pulumi up` in CI is refused.
func TestReadmeRoleConditionCoversEveryAssignedRole(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^ROLES="([^"]+)"$`).FindStringSubmatch(string(raw))
	require.NotNil(t, m, "README has the ROLES=... line of the CI role condition")
	allowed := map[string]bool{}
	for _, g := range strings.Split(m[1], ",") {
		allowed[strings.TrimSpace(g)] = true
	}
	for _, stack := range []string{"dev", "prod"} {
		for _, r := range runStack(t, stack, loadStackConfig(t, stack)).mocks.ByType(tRole) {
			id, _ := r.Input("roleDefinitionId").(string)
			guid := id[strings.LastIndex(id, "/")+1:]
			assert.True(t, allowed[guid], "%s: %s assigns role %s, which the README's CI condition does not allow", stack, r.Name, guid)
		}
	}
}
