package preflight

import (
	"errors"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNamespaceOfStackTypes(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		{"azure-native:resources:ResourceGroup", "Microsoft.Resources"},
		{"azure-native:containerservice:ManagedCluster", "Microsoft.ContainerService"},
		{"azure-native:containerservice:MaintenanceConfiguration", "Microsoft.ContainerService"},
		{"azure-native:containerregistry:Registry", "Microsoft.ContainerRegistry"},
		{"azure-native:containerregistry:TaskRun", "Microsoft.ContainerRegistry"},
		{"azure-native:storage:StorageAccount", "Microsoft.Storage"},
		{"azure-native:storage:Queue", "Microsoft.Storage"},
		{"azure-native:storage:Table", "Microsoft.Storage"},
		{"azure-native:managedidentity:UserAssignedIdentity", "Microsoft.ManagedIdentity"},
		{"azure-native:managedidentity:FederatedIdentityCredential", "Microsoft.ManagedIdentity"},
		{"azure-native:network:VirtualNetwork", "Microsoft.Network"},
		{"azure-native:network:Subnet", "Microsoft.Network"},
		{"azure-native:operationalinsights:Workspace", "Microsoft.OperationalInsights"},
		// monitor spans two namespaces.
		{"azure-native:monitor:AzureMonitorWorkspace", "Microsoft.Monitor"},
		{"azure-native:monitor:DataCollectionEndpoint", "Microsoft.Insights"},
		{"azure-native:monitor:DataCollectionRule", "Microsoft.Insights"},
		{"azure-native:monitor:DataCollectionRuleAssociation", "Microsoft.Insights"},
		{"azure-native:monitor:ActionGroup", "Microsoft.Insights"},
		{"azure-native:monitor:DiagnosticSetting", "Microsoft.Insights"},
		{"azure-native:app:ManagedEnvironment", "Microsoft.App"},
		{"azure-native:app:Job", "Microsoft.App"},
		{"azure-native:alertsmanagement:PrometheusRuleGroup", "Microsoft.AlertsManagement"},
		{"azure-native:authorization:RoleAssignment", "Microsoft.Authorization"},
		// Not listed, but its module lives in one namespace.
		{"azure-native:containerservice:AgentPool", "Microsoft.ContainerService"},
		// A versioned module counts as its module.
		{"azure-native:monitor/v20230403:AzureMonitorWorkspace", "Microsoft.Monitor"},
	} {
		t.Run(tc.token, func(t *testing.T) {
			got, err := NamespaceOf(tc.token)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestNamespaceOfErrors(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		// A module the stack does not use yet must be added with its namespace, not guessed.
		{"azure-native:keyvault:Vault", `azure-native module "keyvault" is unknown to ops/preflight`},
		{"azure-native:dashboard:Grafana", `module "dashboard" is unknown`},
		// In a module that spans namespaces, every type must be listed.
		{"azure-native:monitor:PipelineGroup", `module "monitor" spans several ARM namespaces`},
		{"azure-native:resources:Resource", `module "resources" spans several ARM namespaces`},
		{"azure-native:storage", "is not an azure-native type token"},
		{"azure-native::Vault", "is not an azure-native type token"},
		{"azure-native:storage:", "is not an azure-native type token"},
		{"azure-native:a:b:c", "is not an azure-native type token"},
	} {
		t.Run(tc.token, func(t *testing.T) {
			_, err := NamespaceOf(tc.token)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.False(t, errors.Is(err, ErrNotAzureNative))
		})
	}
	for _, token := range []string{"random:index/randomString:RandomString", "kubernetes:apps/v1:Deployment", "aks-edw:components:Cluster", "pulumi:pulumi:Stack"} {
		_, err := NamespaceOf(token)
		assert.ErrorIs(t, err, ErrNotAzureNative, token)
	}
}

func TestNamespaces(t *testing.T) {
	var names []string
	for _, n := range Namespaces {
		names = append(names, n.Name)
		assert.NotEmpty(t, n.Types, n.Name)
		assert.True(t, sort.StringsAreSorted(n.Types), n.Name)
		assert.Equal(t, n.Name == "Microsoft.Authorization" || n.Name == "Microsoft.Resources", n.RegisteredByDefault, n.Name)
	}
	assert.Equal(t, []string{
		"Microsoft.AlertsManagement", "Microsoft.App", "Microsoft.Authorization", "Microsoft.ContainerRegistry",
		"Microsoft.ContainerService", "Microsoft.Insights", "Microsoft.ManagedIdentity", "Microsoft.Monitor",
		"Microsoft.Network", "Microsoft.OperationalInsights", "Microsoft.Resources", "Microsoft.Storage",
	}, names)

	mon, ok := Lookup("microsoft.monitor")
	require.True(t, ok)
	assert.Equal(t, "monitor:AzureMonitorWorkspace", mon.Why())
	ins, ok := Lookup("Microsoft.Insights")
	require.True(t, ok)
	assert.Equal(t, "monitor:ActionGroup, monitor:DataCollectionEndpoint, monitor:DataCollectionRule, monitor:DataCollectionRuleAssociation, monitor:DiagnosticSetting", ins.Why())
	_, ok = Lookup("Microsoft.Dashboard")
	assert.False(t, ok, "the stack creates no Grafana: Microsoft.Dashboard is not needed")
}

// Every listed type agrees with its module's namespace, when the module has one.
func TestTypeTableAgreesWithModules(t *testing.T) {
	for typ, ns := range typeNamespaces {
		module := strings.Split(strings.TrimPrefix(typ, azureNativePrefix), ":")[0]
		def, ok := moduleNamespaces[module]
		if assert.True(t, ok, "%s: module %s is not in moduleNamespaces", typ, module) && def != "" {
			assert.Equal(t, def, ns, typ)
		}
		assert.True(t, strings.HasPrefix(ns, "Microsoft."), typ)
	}
}

// Every azure-native module in go.mod is in moduleNamespaces: adding a module to the stack
// without saying which provider it needs fails here, before the root package's stack test.
func TestModulesTrackGoMod(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	re := regexp.MustCompile(`github\.com/pulumi/pulumi-azure-native-sdk/([a-z0-9]+)/v3 `)
	var inGoMod []string
	for _, m := range re.FindAllStringSubmatch(string(gomod), -1) {
		inGoMod = append(inGoMod, m[1])
	}
	require.NotEmpty(t, inGoMod, "go.mod requires no azure-native module?")
	sort.Strings(inGoMod)
	var listed []string
	for m := range moduleNamespaces {
		listed = append(listed, m)
	}
	sort.Strings(listed)
	assert.Equal(t, inGoMod, listed, "moduleNamespaces must list exactly the azure-native modules go.mod requires")
}

func TestNeededBy(t *testing.T) {
	needed, err := NeededBy([]string{
		"pulumi:pulumi:Stack", "aks-edw:components:Cluster", "random:index/randomString:RandomString",
		"azure-native:containerservice:ManagedCluster", "azure-native:containerservice:ManagedCluster",
		"azure-native:containerservice:AgentPool", // through its module
		"azure-native:monitor:AzureMonitorWorkspace",
		"azure-native:containerservice:listManagedClusterUserCredentials", // an invoke
	})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{
		"Microsoft.ContainerService": {"azure-native:containerservice:AgentPool", "azure-native:containerservice:ManagedCluster", "azure-native:containerservice:listManagedClusterUserCredentials"},
		"Microsoft.Monitor":          {"azure-native:monitor:AzureMonitorWorkspace"},
	}, needed)

	// Every error at once.
	_, err = NeededBy([]string{"azure-native:keyvault:Vault", "azure-native:monitor:MetricAlert", "azure-native:storage:Table"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `azure-native:keyvault:Vault: azure-native module "keyvault" is unknown`)
	assert.Contains(t, err.Error(), `azure-native:monitor:MetricAlert: azure-native module "monitor" spans several ARM namespaces`)
}

// A type whose module's namespace is not among Namespaces (no listed type needs it) is caught.
func TestNeededByNamespaceNotChecked(t *testing.T) {
	saved := moduleNamespaces["network"]
	t.Cleanup(func() { moduleNamespaces["network"] = saved })
	moduleNamespaces["network"] = "Microsoft.Cdn"
	_, err := NeededBy([]string{"azure-native:network:FrontDoor"})
	assert.EqualError(t, err, "azure-native:network:FrontDoor: its namespace Microsoft.Cdn is not in preflight.Namespaces: list the type in typeNamespaces (ops/preflight)")
}
