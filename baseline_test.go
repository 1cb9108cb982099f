package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/ops/plan"
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

// The CI identity's Role Based Access Control Administrator condition (docs/ci.md, "Continuous
// delivery") must allow every role either stack assigns, or `pulumi up` in CI is refused.
func TestCIRoleConditionCoversEveryAssignedRole(t *testing.T) {
	raw, err := os.ReadFile("docs/ci.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^ROLES="([^"]+)"$`).FindStringSubmatch(string(raw))
	require.NotNil(t, m, "docs/ci.md has the ROLES=... line of the CI role condition")
	allowed := map[string]bool{}
	for _, g := range strings.Split(m[1], ",") {
		allowed[strings.TrimSpace(g)] = true
	}
	for _, stack := range []string{"dev", "prod"} {
		for _, r := range runStack(t, stack, loadStackConfig(t, stack)).mocks.ByType(tRole) {
			id, _ := r.Input("roleDefinitionId").(string)
			guid := id[strings.LastIndex(id, "/")+1:]
			assert.True(t, allowed[guid], "%s: %s assigns role %s, which the CI condition in docs/ci.md does not allow", stack, r.Name, guid)
		}
	}
}

// Issue 23 item 3: who is AKS RBAC Cluster Admin is configuration. With clusterAdmins set, two
// different principals running `pulumi up` one after the other leave the grants exactly as they
// were (neither deployer is added or removed); unset, the grant follows whoever ran last, and the
// program says so.
func TestClusterAdminsDoNotFollowTheDeployer(t *testing.T) {
	const laptop, ci = "0000000a-0000-4000-8000-00000000a11c", "0000000c-0000-4000-8000-0000000000c1"
	admins := `[{"objectId": "11111111-1111-4111-8111-111111111111", "type": "Group"},` +
		` {"objectId": "0000000C-0000-4000-8000-0000000000C1", "type": "ServicePrincipal"}]`
	grants := func(cfg map[string]string, deployer string) []string {
		t.Helper()
		m := pulumitest.New(infra.Project, "dev")
		m.SetDeployer(deployer)
		require.NoError(t, m.Run(cfg, func(ctx *pulumi.Context) error { _, err := deploy(ctx); return err }))
		provider := m.Get(t, "pulumi:providers:kubernetes", "consumer-k8s")
		var out []string
		for _, r := range m.ByType(tRole) {
			if !strings.HasSuffix(fmt.Sprint(r.Input("roleDefinitionId")), "/"+components.RoleAKSRBACClusterAdmin) {
				continue
			}
			assert.True(t, provider.DependsOn(r), "every Kubernetes object waits for %s", r.Name)
			out = append(out, fmt.Sprintf("%s %v %v %v", r.Name, r.Input("principalId"), r.Input("principalType"), r.Input("scope")))
		}
		sort.Strings(out)
		return out
	}

	set := withConfig(loadStackConfig(t, "dev"), "clusterAdmins", admins)
	fromLaptop, fromCI := grants(set, laptop), grants(set, ci)
	assert.Equal(t, fromLaptop, fromCI, "a second deployer changes no cluster admin grant")
	require.Len(t, fromLaptop, 2, "one grant per configured admin, none for the deployer")
	assert.Contains(t, fromLaptop[0], "cluster-admin-0000000c-0000-4000-8000-0000000000c1 0000000C-0000-4000-8000-0000000000C1 ServicePrincipal")
	assert.Contains(t, fromLaptop[1], "cluster-admin-11111111-1111-4111-8111-111111111111 11111111-1111-4111-8111-111111111111 Group")
	for _, g := range fromLaptop {
		assert.NotContains(t, g, laptop, "the laptop user is not an admin unless listed")
	}

	unset := loadStackConfig(t, "dev")
	before, after := grants(unset, laptop), grants(unset, ci)
	assert.NotEqual(t, before, after, "unset, the grant follows whoever runs up")
	assert.Contains(t, after[0], ci)

	for _, tc := range []struct {
		admins string
		warned bool
	}{{"[]", true}, {admins, false}} {
		p, err := plan.RunWithConfig(".", "dev", map[string]string{"imageSourceRepository": pulumitest.ImageSourceRepository, "clusterAdmins": tc.admins})
		require.NoError(t, err)
		assert.Equal(t, tc.warned, slices.Contains(p.Warnings, "warning: "+infra.ClusterAdminsUnsetWarning), "clusterAdmins %s: warnings %q", tc.admins, p.Warnings)
	}
}

// Bad clusterAdmins entries are refused, each naming the entry and the rule.
func TestClusterAdminsValidation(t *testing.T) {
	for _, tc := range []struct {
		name, admins, local, want string
	}{
		{"not a GUID", `[{"objectId": "alice@example.com", "type": "User"}]`, "false", `[0].objectId "alice@example.com" must be an Entra object id`},
		{"unknown type", `[{"objectId": "11111111-1111-4111-8111-111111111111", "type": "Robot"}]`, "false", `[0].type "Robot" is not one of User, ServicePrincipal, Group`},
		{"misspelt field", `[{"objId": "11111111-1111-4111-8111-111111111111", "type": "User"}]`, "false", `unknown field "objId"`},
		{"listed twice", `[{"objectId": "11111111-1111-4111-8111-111111111111", "type": "User"}, {"objectId": "11111111-1111-4111-8111-111111111111", "type": "Group"}]`, "false", "[1].objectId 11111111-1111-4111-8111-111111111111 is listed twice"},
		{"with local accounts", `[{"objectId": "11111111-1111-4111-8111-111111111111", "type": "User"}]`, "true", "localAccounts is true"},
		{"not an array", `{"objectId": "11111111-1111-4111-8111-111111111111"}`, "false", "must be a JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runProgram("dev", withConfig(loadStackConfig(t, "dev"), "clusterAdmins", tc.admins, "localAccounts", tc.local))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "aks-edw:clusterAdmins")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// Who gets the grantDeployer* data roles is configuration too: with dataOperators set, two
// different principals running `pulumi up` leave the grants exactly as they were, one set per
// listed principal and none for either deployer; unset, the grants follow whoever ran last (named
// deployer-*, as before the key existed, so a stack that leaves it unset keeps its grants), and
// the program says so.
func TestDataOperatorsDoNotFollowTheDeployer(t *testing.T) {
	const laptop, ci = "0000000a-0000-4000-8000-00000000a11c", "0000000c-0000-4000-8000-0000000000c1"
	operators := `[{"objectId": "22222222-2222-4222-8222-222222222222", "type": "Group"},` +
		` {"objectId": "0000000C-0000-4000-8000-0000000000C1", "type": "ServicePrincipal"}]`
	grants := func(stack string, cfg map[string]string, deployer string) []string {
		t.Helper()
		m := pulumitest.New(infra.Project, stack)
		m.SetDeployer(deployer)
		require.NoError(t, m.Run(cfg, func(ctx *pulumi.Context) error { _, err := deploy(ctx); return err }))
		var out []string
		for _, r := range m.ByType(tRole) {
			if strings.HasSuffix(fmt.Sprint(r.Input("roleDefinitionId")), "/"+components.RoleAKSRBACClusterAdmin) ||
				!(strings.HasPrefix(r.Name, "deployer-") || strings.HasPrefix(r.Name, "operator-")) {
				continue
			}
			role := fmt.Sprint(r.Input("roleDefinitionId"))
			out = append(out, fmt.Sprintf("%s %v %v %s", r.Name, r.Input("principalId"), r.Input("principalType"), role[strings.LastIndex(role, "/")+1:]))
		}
		sort.Strings(out)
		return out
	}
	for _, stack := range []string{"dev", "dev-aca"} {
		t.Run(stack, func(t *testing.T) {
			set := withConfig(loadStackConfig(t, stack), "dataOperators", operators)
			fromLaptop, fromCI := grants(stack, set, laptop), grants(stack, set, ci)
			assert.Equal(t, fromLaptop, fromCI, "a second deployer changes no data grant")
			require.Len(t, fromLaptop, 10, "five data roles (queue, verify, redrive) for each of two operators, none for the deployer")
			for _, g := range fromLaptop {
				assert.NotContains(t, g, laptop, "the laptop user gets no data role unless listed")
				assert.True(t, strings.HasPrefix(g, "operator-"), "%s: named by the operator's object id", g)
			}
			assert.Contains(t, fromLaptop, "operator-22222222-2222-4222-8222-222222222222-queue-data-contributor 22222222-2222-4222-8222-222222222222 Group "+components.RoleStorageQueueDataContributor)
			assert.Contains(t, fromLaptop, "operator-0000000c-0000-4000-8000-0000000000c1-queue-data-message-sender 0000000C-0000-4000-8000-0000000000C1 ServicePrincipal "+components.RoleStorageQueueDataMessageSender)

			unset := loadStackConfig(t, stack)
			before, after := grants(stack, unset, laptop), grants(stack, unset, ci)
			require.Len(t, before, 5)
			assert.NotEqual(t, before, after, "unset, the grants follow whoever runs up")
			for _, g := range after {
				assert.True(t, strings.HasPrefix(g, "deployer-"), "%s keeps its name from before dataOperators", g)
				assert.Contains(t, g, ci)
			}
		})
	}

	// The deployer listed: its grants take over the deployer-* ones (an alias, replaced
	// delete-first), so the `up` that sets the key never holds two assignments of one role for
	// one principal at one scope (Azure: RoleAssignmentExists). Not the deployer: no alias.
	takeOver := func(deployer string) map[string][]string {
		m := pulumitest.New(infra.Project, "dev")
		m.SetDeployer(deployer)
		require.NoError(t, m.Run(withConfig(loadStackConfig(t, "dev"), "dataOperators", operators, "clusterAdmins", operators),
			func(ctx *pulumi.Context) error { _, err := deploy(ctx); return err }))
		out := map[string][]string{}
		for _, r := range m.ByType(tRole) {
			if len(r.Aliases) > 0 {
				assert.True(t, r.DeleteBeforeReplace, "%s takes over %v: replaced delete-first", r.Name, r.Aliases)
				out[r.Name] = r.Aliases
			}
		}
		return out
	}
	ciTakes := takeOver(ci)
	assert.Equal(t, map[string][]string{
		"operator-0000000c-0000-4000-8000-0000000000c1-queue-data-contributor":        {"deployer-queue-data-contributor"},
		"operator-0000000c-0000-4000-8000-0000000000c1-table-data-contributor":        {"deployer-table-data-contributor"},
		"operator-0000000c-0000-4000-8000-0000000000c1-poison-queue-data-reader":      {"deployer-poison-queue-data-reader"},
		"operator-0000000c-0000-4000-8000-0000000000c1-poison-queue-data-contributor": {"deployer-poison-queue-data-contributor"},
		"operator-0000000c-0000-4000-8000-0000000000c1-queue-data-message-sender":     {"deployer-queue-data-message-sender"},
		"cluster-admin-0000000c-0000-4000-8000-0000000000c1":                          {"deployer-aks-rbac-cluster-admin"},
	}, ciTakes, "CI, listed (in other case), takes over its deployer-* grants")
	assert.Empty(t, takeOver(laptop), "a deployer not listed takes over nothing")

	for _, tc := range []struct {
		operators string
		warned    bool
	}{{"[]", true}, {operators, false}} {
		p, err := plan.RunWithConfig(".", "dev", map[string]string{"imageSourceRepository": pulumitest.ImageSourceRepository, "dataOperators": tc.operators})
		require.NoError(t, err)
		assert.Equal(t, tc.warned, slices.Contains(p.Warnings, "warning: "+infra.DataOperatorsUnsetWarning), "dataOperators %s: warnings %q", tc.operators, p.Warnings)
	}
}

// Bad dataOperators entries are refused, each naming the entry and the rule, and so is the key
// set with no data role to give.
func TestDataOperatorsValidation(t *testing.T) {
	for _, tc := range []struct {
		name, operators, want string
		off                   bool
	}{
		{"not a GUID", `[{"objectId": "bob@example.com", "type": "User"}]`, `[0].objectId "bob@example.com" must be an Entra object id`, false},
		{"unknown type", `[{"objectId": "22222222-2222-4222-8222-222222222222", "type": "Team"}]`, `[0].type "Team" is not one of User, ServicePrincipal, Group`, false},
		{"misspelt field", `[{"oid": "22222222-2222-4222-8222-222222222222", "type": "User"}]`, `unknown field "oid"`, false},
		{"listed twice", `[{"objectId": "22222222-2222-4222-8222-222222222222", "type": "User"}, {"objectId": "22222222-2222-4222-8222-222222222222", "type": "Group"}]`, "[1].objectId 22222222-2222-4222-8222-222222222222 is listed twice", false},
		{"nothing to grant", `[{"objectId": "22222222-2222-4222-8222-222222222222", "type": "User"}]`, "there is nothing to grant them", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := withConfig(loadStackConfig(t, "dev"), "dataOperators", tc.operators)
			if tc.off {
				cfg = withConfig(cfg, "grantDeployerQueueAccess", "false", "grantDeployerVerifyAccess", "false", "grantDeployerRedriveAccess", "false")
			}
			_, err := runProgram("dev", cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "aks-edw:dataOperators")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// Issue 23 item 4: prod's app pool is replaced (drift: NAP's new node images, which its node OS
// schedule picks up in the window) and consolidated only in the maintenance window; dev, with no
// window, keeps Karpenter's default budget.
func TestAppPoolDisruptionFollowsTheMaintenanceWindow(t *testing.T) {
	pool := func(stack string) *pulumitest.Resource {
		return runStack(t, stack, loadStackConfig(t, stack)).mocks.Get(t, "kubernetes:karpenter.sh/v1:NodePool", "consumer-node-pool")
	}
	prod := pool("prod")
	assert.Equal(t, "0", prod.Input("spec.disruption.budgets.0.nodes"))
	assert.Equal(t, "0 6 * * 0", prod.Input("spec.disruption.budgets.0.schedule"), "from the window's end, Sunday 06:00 UTC")
	assert.Equal(t, "164h", prod.Input("spec.disruption.budgets.0.duration"), "to its next start")
	assert.Equal(t, []any{"Drifted", "Underutilized"}, prod.Input("spec.disruption.budgets.0.reasons"))
	assert.Equal(t, "10%", prod.Input("spec.disruption.budgets.1.nodes"))
	assert.Nil(t, pool("dev").Input("spec.disruption.budgets"), "dev: no window, Karpenter's default")
}
