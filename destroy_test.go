package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/aks-edw/aks-edw/internal/pulumitest"
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
				case r.Type == tDCRA: // an extension resource of the cluster, deleted with it
					assert.Contains(t, r.Input("resourceUri"), rgScope, "%s %s must be scoped inside the stack's resource group", r.Type, r.Name)
				default:
					assert.Equal(t, rg, r.Input("resourceGroupName"), "%s %s must live in the stack's resource group", r.Type, r.Name)
				}
				checked++
			}
			assert.Greater(t, checked, 15, "Azure resources checked")

			ws := m.One(t, tWorkspace)
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
