package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Issue 5: `pulumi destroy` leaves nothing behind by design. Every Azure resource lives in the
// stack's resource group (the script's monitoring add-on created a workspace elsewhere that
// cleanup never deleted), the node resource group is AKS's own and named for the cluster, and
// every Kubernetes object (and their provider) is deleted with the cluster instead of waiting on
// its dying API server. Protection is checked in TestStacks (only where the stack asks for it).
func TestDestroyIsCleanByDesign(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			m := runStack(t, stack, loadStackConfig(t, stack)).mocks
			rg := m.One(t, tResourceGrp).Input("resourceGroupName")
			rgScope := "/resourceGroups/" + rg.(string) + "/"

			checked := 0
			for _, r := range m.Resources() {
				switch {
				case r.Type == tResourceGrp || !strings.HasPrefix(r.Type, "azure-native:"):
					continue
				case r.Type == tRole:
					assert.Contains(t, r.Input("scope"), rgScope, "%s %s must be scoped inside the stack's resource group", r.Type, r.Name)
				case r.Type == tDCRA || r.Type == tDiagnostics: // extension resources of the cluster or the environment, deleted with it
					assert.Contains(t, r.Input("resourceUri"), rgScope, "%s %s must be scoped inside the stack's resource group", r.Type, r.Name)
				default:
					assert.Equal(t, rg, r.Input("resourceGroupName"), "%s %s must live in the stack's resource group", r.Type, r.Name)
				}
				checked++
			}
			assert.Greater(t, checked, 15, "Azure resources checked")

			ws := m.One(t, tWorkspace)
			if env := m.ByType(tManagedEnv); len(env) > 0 {
				// Container Apps: no cluster, nothing Kubernetes; the environment's logs go to the
				// stack's workspace through its diagnostic setting.
				diag := m.One(t, tDiagnostics)
				assert.Equal(t, env[0].ID, diag.Input("resourceUri"))
				assert.Equal(t, ws.Output("id"), diag.Input("workspaceId"), "the environment's logs go to the stack's own workspace")
				assert.Empty(t, m.ByType(tCluster))
				for _, r := range m.Resources() {
					assert.False(t, strings.HasPrefix(r.Type, "kubernetes:") || r.Type == "pulumi:providers:kubernetes", "Kubernetes on Container Apps: %s %s", r.Type, r.Name)
				}
				return
			}
			mc := m.One(t, tCluster)
			assert.Equal(t, ws.Output("id"), mc.Input("addonProfiles.omsagent.config.logAnalyticsWorkspaceResourceID"),
				"Container Insights must use the stack's own workspace")
			assert.Equal(t, "MC_"+rg.(string)+"_"+mc.Input("resourceName").(string)+"_"+mc.Input("location").(string), mc.Input("nodeResourceGroup"),
				"the node resource group is named for the cluster and deleted by AKS with it")

			provider := m.One(t, "pulumi:providers:kubernetes")
			assert.Equal(t, mc.URN, provider.DeletedWith, "the Kubernetes provider must be DeletedWith the cluster")
			assert.Greater(t, pulumitest.CheckKubernetesObjects(t, m, provider, mc), 1, "no Kubernetes objects found")
		})
	}
}
