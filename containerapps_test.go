package main

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/ops/plan"
)

// Issue 18: Azure Container Apps as a second target. Every Container Apps stack, in both scale
// modes: the environment, the app or the job with its scale rule (identity, no secrets), AcrPull
// and the data roles for the identity with the app or job depending on them, no cluster and no
// Kubernetes, the names, tags, protection and outputs; the golden inventory (ScaledObject mode,
// as the stack file says).
func TestContainerAppsStacks(t *testing.T) {
	for _, stack := range containerAppsStackNames(t) {
		for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
			t.Run(stack+"/"+mode, func(t *testing.T) {
				t.Parallel()
				cfg := withConfig(loadStackConfig(t, stack), "scaleMode", mode)
				run := runStack(t, stack, cfg)
				m := run.mocks
				sfx := pulumitest.RandomResult

				// No cluster, no Kubernetes provider or object.
				for _, r := range m.Resources() {
					assert.False(t, strings.HasPrefix(r.Type, "kubernetes:") || r.Type == "pulumi:providers:kubernetes" ||
						strings.HasPrefix(r.Type, "azure-native:containerservice:"), "%s %s on Container Apps", r.Type, r.Name)
				}

				// The identity, and what it is given.
				id := m.Get(t, tIdentity, "consumer-identity-identity")
				assert.Equal(t, "mi-aksdemo-consumer-"+sfx, id.Input("resourceName"))
				assert.Empty(t, m.ByType(tFIC), "no federated credential: Container Apps hands the identity to the app")
				grants := map[string]*pulumitest.Resource{}
				for _, r := range m.ByType(tRole) {
					if r.Input("principalId") == id.Output("principalId") {
						grants[r.Name] = r
					}
				}
				roleOn := func(name, role string, scope any) *pulumitest.Resource {
					t.Helper()
					r, ok := grants[name]
					require.True(t, ok, "role assignment %s for the identity", name)
					assert.Equal(t, "/subscriptions/"+pulumitest.SubscriptionID+"/providers/Microsoft.Authorization/roleDefinitions/"+role, r.Input("roleDefinitionId"), name)
					assert.Equal(t, scope, r.Input("scope"), "%s scope", name)
					assert.Equal(t, "ServicePrincipal", r.Input("principalType"), name)
					return r
				}
				queue, poison := m.Get(t, tQueue, "storage-queue"), m.Get(t, tQueue, "storage-poison-queue")
				needed := []*pulumitest.Resource{
					roleOn("consumer-identity-acrpull", components.RoleAcrPull, m.One(t, tRegistry).ID),
					roleOn("consumer-identity-queue-data-contributor", components.RoleStorageQueueDataContributor, queue.ID),
					roleOn("consumer-identity-poison-queue-data-contributor", components.RoleStorageQueueDataContributor, poison.ID),
					roleOn("consumer-identity-table-data-contributor", components.RoleStorageTableDataContributor, m.One(t, tTable).ID),
				}
				assert.Len(t, grants, len(needed), "the identity has exactly these roles")

				// The environment: Consumption, logs through the diagnostic setting.
				env := m.One(t, tManagedEnv)
				assert.Equal(t, "cae-aksdemo-"+sfx, env.Input("environmentName"))
				assert.Equal(t, []any{map[string]any{"name": "Consumption", "workloadProfileType": "Consumption"}}, env.Input("workloadProfiles"))
				assert.Equal(t, "azure-monitor", env.Input("appLogsConfiguration.destination"))
				assert.Nil(t, env.Input("appLogsConfiguration.logAnalyticsConfiguration"), "no workspace key in the environment")
				assert.Equal(t, m.One(t, tSubnet).ID, env.Input("vnetConfiguration.infrastructureSubnetId"), "in the stack's VNet")

				// The app or the job.
				var app *pulumitest.Resource
				var rule string
				if mode == components.ScaleModeScaledJob {
					assert.Empty(t, m.ByType(tContainerApp))
					app = m.One(t, tACAJob)
					assert.Equal(t, "caj-aksdemo-"+sfx, app.Input("jobName"))
					assert.Equal(t, "Event", app.Input("configuration.triggerType"))
					assert.EqualValues(t, components.DefaultJobMaxReplicas, app.Input("configuration.eventTriggerConfig.scale.maxExecutions"))
					assert.EqualValues(t, components.DefaultJobQueueLength, mustAtoi(t, app.Input("configuration.eventTriggerConfig.scale.rules.0.metadata.queueLength")))
					rule = "configuration.eventTriggerConfig.scale.rules.0"
				} else {
					assert.Empty(t, m.ByType(tACAJob))
					app = m.One(t, tContainerApp)
					assert.Equal(t, "ca-aksdemo-"+sfx, app.Input("containerAppName"))
					assert.EqualValues(t, 0, app.Input("template.scale.minReplicas"), "scales to zero")
					assert.EqualValues(t, components.DefaultMaxReplicas, app.Input("template.scale.maxReplicas"))
					assert.EqualValues(t, components.DefaultQueueLength, mustAtoi(t, app.Input("template.scale.rules.0.custom.metadata.queueLength")))
					rule = "template.scale.rules.0.custom"
				}
				assert.Equal(t, env.ID, app.Input("environmentId"))
				assert.Equal(t, "azure-queue", app.Input(rule+".type"))
				assert.Equal(t, id.ID, app.Input(rule+".identity"), "the scale rule authenticates with the identity")
				assert.Nil(t, app.Input(rule+".auth"), "no scale rule secrets")
				assert.Nil(t, app.Input("configuration.secrets"), "no secrets at all")
				assert.Equal(t, queue.Input("queueName"), app.Input(rule+".metadata.queueName"))
				assert.Equal(t, m.One(t, tAccount).Input("accountName"), app.Input(rule+".metadata.accountName"))
				assert.Equal(t, []any{id.ID}, app.Input("identity.userAssignedIdentities"))
				assert.Equal(t, []any{map[string]any{"server": "acraksdemo" + sfx + ".azurecr.io", "identity": id.ID}}, app.Input("configuration.registries"))
				for _, g := range needed {
					assert.True(t, app.DependsOn(g), "the %s waits for %s", app.Type, g.Name)
				}
				container := "template.containers.0"
				assert.Equal(t, id.Output("clientId"), envValue(t, app.Input(container+".env"), "AZURE_CLIENT_ID"))
				assert.Equal(t, "1Gi", app.Input(container+".resources.memory"), "the smallest size with 0.5 vCPU")
				assert.Equal(t, 0.5, app.Input(container+".resources.cpu"), "cpuRequest 500m")
				assert.Equal(t, run.outputs["consumerImage"].Value, app.Input(container+".image"))
				task := m.One(t, tTaskRun)
				assert.True(t, app.DependsOn(task), "the %s waits for the image build", app.Type)

				// Tags and protection, as on AKS.
				for _, r := range m.Resources() {
					if _, ok := r.Inputs["tags"]; ok {
						assert.Equal(t, stack, r.Input("tags.environment"), "%s %s: tags.environment", r.Type, r.Name)
					}
					assert.Equal(t, cfg[infra.Project+":protect"] == "true" && (r.Type == tAccount || r.Type == tRegistry), r.Protect, "%s %s protect", r.Type, r.Name)
				}

				// Outputs: the same keys; the environment's and app's names where the cluster's were.
				for _, k := range infra.OutputKeys {
					o, ok := run.outputs[k]
					require.True(t, ok, "output %s missing", k)
					assert.True(t, o.Known, "output %s unknown", k)
				}
				assert.Len(t, run.outputs, len(infra.OutputKeys))
				appName := app.Input("containerAppName")
				appKind, appKey := "ContainerApp", "CONTAINER_APP_NAME"
				if mode == components.ScaleModeScaledJob {
					appName, appKind, appKey = app.Input("jobName"), "Job", "CONTAINER_APPS_JOB_NAME"
				}
				assert.Equal(t, "containerapps", run.outputs["platform"].Value)
				assert.Equal(t, "cae-aksdemo-"+sfx, run.outputs["containerAppsEnvironmentName"].Value)
				assert.Equal(t, appName, run.outputs["containerAppName"].Value)
				assert.Equal(t, "mi-aksdemo-consumer-"+sfx, run.outputs["workloadManagedIdentityName"].Value)
				assert.Equal(t, id.Output("clientId"), run.outputs["workloadManagedIdentityClientId"].Value)
				for _, k := range []string{"aksClusterName", "aksManagedIdentityName", "serviceAccount", "federatedIdentityCredentialName",
					"kedaServiceAccountCredentialName", "oidcIssuerUrl", "kubeconfig"} {
					assert.Equal(t, "", run.outputs[k].Value, "output %s has no meaning on Container Apps", k)
				}
				assert.True(t, run.outputs["kubeconfig"].Secret, "kubeconfig keeps its secrecy")
				assert.Equal(t, map[string]string{
					"platform": "containerapps", "scaleMode": mode, "resourceGroupName": "rg-aksdemo-" + sfx,
					"environmentName": "cae-aksdemo-" + sfx, "appName": fmt.Sprint(appName), "appKind": appKind, "appId": app.ID,
				}, run.outputs["consumerWorkload"].Value)
				assert.Equal(t, strings.Join([]string{
					"SUFFIX=" + sfx,
					"RESOURCE_GROUP=rg-aksdemo-" + sfx,
					"AZURE_STORAGE_ACCOUNT_NAME=storaksdemo" + sfx,
					"AZURE_QUEUE_NAME=aws2azmsgs",
					"AZURE_TABLE_NAME=aws2azpmts",
					"AZURE_COSMOSDB_TABLE=aws2azpmts",
					"AZURE_CONTAINER_REGISTRY_NAME=acraksdemo" + sfx,
					"CONTAINER_APPS_ENVIRONMENT_NAME=cae-aksdemo-" + sfx,
					appKey + "=" + fmt.Sprint(appName),
					"WORKLOAD_MANAGED_IDENTITY_NAME=mi-aksdemo-consumer-" + sfx,
				}, "\n")+"\n", run.outputs["deployState"].Value)

				if mode == cfgOr(loadStackConfig(t, stack), "scaleMode", components.ScaleModeScaledObject) {
					checkGolden(t, stack, m)
				}
			})
		}
	}
}

// envValue is the value of the env var name in a Container Apps container's env list.
func envValue(t *testing.T, env any, name string) any {
	t.Helper()
	list, ok := env.([]any)
	require.True(t, ok, "env is a list, got %T", env)
	for _, e := range list {
		if lookupMap(e, "name") == name {
			return lookupMap(e, "value")
		}
	}
	t.Fatalf("env %s not set", name)
	return nil
}

func mustAtoi(t *testing.T, v any) int {
	t.Helper()
	var n int
	_, err := fmt.Sscan(fmt.Sprint(v), &n)
	require.NoError(t, err, "%v is not a number", v)
	return n
}

// aksOnlyValues are a value other than the default for every key that means something only on
// AKS: each is refused with platform containerapps, naming the key.
var aksOnlyValues = map[string]string{
	"aksSubnetPrefix":               "10.224.0.0/17",
	"podCidr":                       "10.245.0.0/16",
	"serviceCidr":                   "10.1.0.0/16",
	"dnsServiceIp":                  "10.0.0.11",
	"apiServerAuthorizedIpRanges":   `["20.1.2.3/32"]`,
	"kubernetesVersion":             "1.33",
	"systemNodeCount":               "2",
	"systemNodeVmSize":              "Standard_D2ds_v5",
	"systemNodeZones":               `["1"]`,
	"upgradeChannel":                "stable",
	"nodeOsUpgradeChannel":          "SecurityPatch",
	"clusterTier":                   "Standard",
	"clusterAdmins":                 `[{"objectId": "11111111-1111-1111-1111-111111111111", "type": "Group"}]`,
	"localAccounts":                 "true",
	"maintenanceWindow":             `{"dayOfWeek":"Sunday","startTime":"02:00","durationHours":4}`,
	"managedPrometheus":             "true",
	"alertEmails":                   `["oncall@example.com"]`,
	"backlogAlertFor":               "30m",
	"namespace":                     "edw",
	"serviceAccountName":            "edw-reader",
	"deploymentName":                "edw",
	"appLabel":                      "edw",
	"scaledObjectName":              "edw",
	"scaledJobName":                 "edw",
	"scaleUpStabilizationSeconds":   "15",
	"scaleDownStabilizationSeconds": "120",
	"triggerAuthenticationName":     "edw",
	"jobSuccessfulHistoryLimit":     "1",
	"jobFailedHistoryLimit":         "1",
	"jobScalingStrategy":            "accurate",
	"cpuLimit":                      "1",
	"memoryLimit":                   "256Mi",
	"nodeFailureTolerationSeconds":  "60",
	"nodePoolName":                  "edw-pool",
	"nodePoolSkuFamily":             "E",
	"nodePoolCpuLimit":              "50",
	"nodePoolConsolidateAfter":      "5m",
	"appCapacityTypes":              `["spot"]`,
}

// Issue 18: the keys that mean something only on AKS are refused with containerapps, each error
// naming its key, all at once; on AKS the same values are not refused for the platform.
func TestContainerAppsRefusesAKSOnlyKeys(t *testing.T) {
	keys := infra.AKSOnlyKeys()
	var tested []string
	for k := range aksOnlyValues {
		tested = append(tested, k)
	}
	sort.Strings(tested)
	sorted := slices.Clone(keys)
	sort.Strings(sorted)
	require.Equal(t, sorted, tested, "aksOnlyValues must cover exactly infra.AKSOnlyKeys()")

	stack := containerAppsStackNames(t)[0]
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			_, err := runProgram(stack, withConfig(loadStackConfig(t, stack), key, aksOnlyValues[key]))
			require.Error(t, err, "%s set with containerapps", key)
			assert.Contains(t, err.Error(), infra.Project+":"+key+": means something only on AKS", "the error names the key")

			_, err = runProgram("dev", withConfig(loadStackConfig(t, "dev"), key, aksOnlyValues[key]))
			if err != nil {
				assert.NotContains(t, err.Error(), "means something only on AKS", "AKS takes %s", key)
			}
		})
	}
	t.Run("all at once", func(t *testing.T) {
		cfg := loadStackConfig(t, stack)
		for _, k := range []string{"systemNodeCount", "namespace", "managedPrometheus"} {
			cfg = withConfig(cfg, k, aksOnlyValues[k])
		}
		_, err := runProgram(stack, cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "(3 problem(s))")
	})
	t.Run("unknown platform", func(t *testing.T) {
		_, err := runProgram(stack, withConfig(loadStackConfig(t, stack), "platform", "aci"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `aks-edw:platform: "aci" is not one of aks, containerapps`)
	})
	t.Run("Container Apps' own limits", func(t *testing.T) {
		_, err := runProgram(stack, withConfig(loadStackConfig(t, stack), "cpuRequest", "5", "maxReplicas", "1001"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "aks-edw:cpuRequest (5) is more than the 4 vCPU")
		assert.Contains(t, err.Error(), "aks-edw:maxReplicas (1001) must be <= 1000")
		_, err = runProgram("dev", withConfig(loadStackConfig(t, "dev"), "maxReplicas", "1001"))
		assert.NoError(t, err, "AKS has no such ceiling")
	})
	t.Run("a prefix too long for Container Apps names", func(t *testing.T) {
		_, err := runProgram(stack, withConfig(loadStackConfig(t, stack), "prefix", "averyveryverylongprefix", "storageAccountName", "storacaxyz"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "aks-edw:prefix: \"averyveryverylongprefix\" is too long: the Container Apps job name caj-<prefix>-<suffix>")
	})
}

// Pulumi.yaml says which keys are AKS-only: exactly the keys the program refuses on Container Apps.
func TestPulumiYamlMarksAKSOnlyKeys(t *testing.T) {
	raw, err := os.ReadFile("Pulumi.yaml")
	require.NoError(t, err)
	var proj struct {
		Config map[string]struct {
			Description string `yaml:"description"`
		} `yaml:"config"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &proj))
	var marked []string
	for k, v := range proj.Config {
		if strings.HasPrefix(v.Description, "AKS only.") {
			marked = append(marked, k)
		}
	}
	sort.Strings(marked)
	want := infra.AKSOnlyKeys()
	sort.Strings(want)
	assert.Equal(t, want, marked, "keys whose Pulumi.yaml description starts with \"AKS only.\"")

	marked = nil
	for k, v := range proj.Config {
		if strings.HasPrefix(v.Description, "Container Apps only.") {
			marked = append(marked, k)
		}
	}
	sort.Strings(marked)
	want = infra.ContainerAppsOnlyKeys()
	sort.Strings(want)
	assert.Equal(t, want, marked, "keys whose Pulumi.yaml description starts with \"Container Apps only.\"")
}

// The Container Apps subnet key: refused on AKS when set, checked on Container Apps.
func TestContainerAppsSubnetPrefix(t *testing.T) {
	_, err := runProgram("dev", withConfig(loadStackConfig(t, "dev"), "containerAppsSubnetPrefix", "10.226.0.0/24"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "aks-edw:containerAppsSubnetPrefix: means something only on Container Apps")

	stack := containerAppsStackNames(t)[0]
	for value, want := range map[string]string{
		"10.226.0.0/28": "is too small: a Container Apps environment with workload profiles needs a /27 or larger",
		"10.240.0.0/24": "is not inside vnetAddressSpace 10.224.0.0/12",
		"10.226.0.1/24": "is not a valid IPv4 CIDR",
	} {
		_, err := runProgram(stack, withConfig(loadStackConfig(t, stack), "containerAppsSubnetPrefix", value))
		require.Error(t, err, value)
		assert.Contains(t, err.Error(), "aks-edw:containerAppsSubnetPrefix", value)
		assert.Contains(t, err.Error(), want, value)
	}
	m, err := runProgram(stack, withConfig(loadStackConfig(t, stack), "containerAppsSubnetPrefix", "10.226.0.0/27"))
	require.NoError(t, err)
	subnet := m.One(t, tSubnet)
	assert.Equal(t, "10.226.0.0/27", subnet.Input("addressPrefix"))
	assert.Equal(t, "snet-aca", subnet.Input("subnetName"))
	assert.Equal(t, []any{map[string]any{"name": "Microsoft.App.environments", "serviceName": "Microsoft.App/environments"}}, subnet.Input("delegations"))
}

// A Container Apps stack that keeps the storage firewall closed is warned at preview that
// Container Apps' scaler may not pass it (docs/cloud-notes.md) when it keeps a replica running,
// and refused when it could scale to zero or is an event-driven job (issue 23 item 4), naming
// both keys and the ways out; an open firewall, or AKS, is neither.
func TestContainerAppsFirewall(t *testing.T) {
	stack := containerAppsStackNames(t)[0]
	for _, tc := range []struct {
		stack, open, min, mode string
		warned                 bool
		refused                string
	}{
		{stack, "false", "1", "ScaledObject", true, ""},
		{stack, "false", "0", "ScaledObject", false, "is false with platform containerapps and minReplicas 0"},
		{stack, "false", "1", "ScaledJob", false, "is false with platform containerapps and scaleMode ScaledJob"},
		{stack, "true", "0", "ScaledObject", false, ""},
		{stack, "true", "0", "ScaledJob", false, ""},
		{"prod", "false", "0", "ScaledObject", false, ""},
	} {
		t.Run(fmt.Sprintf("%s/open=%s/min=%s/%s", tc.stack, tc.open, tc.min, tc.mode), func(t *testing.T) {
			p, err := plan.RunWithConfig(".", tc.stack, map[string]string{
				"imageSourceRepository": pulumitest.ImageSourceRepository, "storagePublicNetworkAccess": tc.open,
				"minReplicas": tc.min, "scaleMode": tc.mode,
			})
			if tc.refused != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "aks-edw:storagePublicNetworkAccess: "+tc.refused)
				assert.Contains(t, err.Error(), "Set storagePublicNetworkAccess true")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.warned, slices.Contains(p.Warnings, "warning: "+infra.ContainerAppsFirewallWarning), "warnings: %q", p.Warnings)
		})
	}
}
