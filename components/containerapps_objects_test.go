package components

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testContainerAppsInputs are literal deploy-time inputs for the Container Apps builders' tests.
func testContainerAppsInputs() containerAppsInputs {
	in := testInputs()
	return containerAppsInputs{
		ResourceGroupName:  pulumi.String("rg-aksdemo-x7k2p9"),
		Location:           pulumi.String("westus3"),
		StorageAccountName: in.StorageAccountName,
		QueueName:          in.QueueName,
		TableName:          in.TableName,
		Image:              in.Image,
		RegistryServer:     pulumi.String("acraksdemox7k2p9.azurecr.io"),
		IdentityID:         pulumi.String(testIdentityID),
		ClientID:           in.ClientID,
		EnvironmentID:      pulumi.String("/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/cae-aksdemo-x7k2p9"),
		Tags:               map[string]string{"owner": "aksdemo"},
	}
}

const testIdentityID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-aksdemo-consumer-x7k2p9"

// resolveArgs resolves an azure-native args struct (whose fields carry no wire names) into a map
// keyed by the wire names (the fields' names, first letter lowered); nested types resolve as
// resolve does. Nil fields are left out.
func resolveArgs(t *testing.T, args any) map[string]any {
	t.Helper()
	v := reflect.ValueOf(args)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	require.Equal(t, reflect.Struct, v.Kind(), "resolveArgs wants a struct, got %T", args)
	out := map[string]any{}
	for i := 0; i < v.NumField(); i++ {
		f, fv := v.Type().Field(i), v.Field(i)
		if !f.IsExported() || isNil(fv) {
			continue
		}
		if r := resolve(t, fv.Interface()); r != nil {
			out[lowerFirst(f.Name)] = r
		}
	}
	return out
}

// at walks a resolved value (maps and slices) along a dotted path ("template.scale.rules.0").
func at(t *testing.T, v any, path string) any {
	t.Helper()
	cur := v
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[p]
			require.Truef(t, ok, "%s: no %q in %v", path, p, keysOf(c))
			cur = next
		case []any:
			i, err := strconv.Atoi(p)
			require.NoErrorf(t, err, "%s: %q is not an index", path, p)
			require.Lessf(t, i, len(c), "%s: index %d of %d", path, i, len(c))
			cur = c[i]
		default:
			t.Fatalf("%s: cannot walk into %T at %q", path, cur, p)
		}
	}
	return cur
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// envOf is a resolved container's env as name -> value.
func envOf(t *testing.T, container any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range at(t, container, "env").([]any) {
		m := e.(map[string]any)
		_, secret := m["secretRef"]
		require.Falsef(t, secret, "env %v comes from a secret: the consumer needs none", m["name"])
		out[m["name"].(string)] = fmt.Sprint(m["value"])
	}
	return out
}

func TestContainerAppsSizeFor(t *testing.T) {
	tests := []struct {
		name             string
		cpu, mem         string
		wantCPU          float64
		wantMem          string
		wantErrKeys      []string
		wantGoMemLimitMi int64
	}{
		{name: "defaults take the smallest size", cpu: "250m", mem: "64Mi", wantCPU: 0.25, wantMem: "0.5Gi"},
		{name: "cpu just over a step rounds up", cpu: "300m", mem: "64Mi", wantCPU: 0.5, wantMem: "1Gi"},
		{name: "memory decides", cpu: "250m", mem: "1Gi", wantCPU: 0.5, wantMem: "1Gi"},
		{name: "memory just over a step", cpu: "100m", mem: "1025Mi", wantCPU: 0.75, wantMem: "1.5Gi"},
		{name: "the largest size", cpu: "4", mem: "8Gi", wantCPU: 4, wantMem: "8Gi"},
		{name: "too much cpu", cpu: "4100m", mem: "1Gi", wantErrKeys: []string{"cpuRequest"}},
		{name: "too much memory", cpu: "1", mem: "9Gi", wantErrKeys: []string{"memoryRequest"}},
		{name: "both too much", cpu: "5", mem: "9Gi", wantErrKeys: []string{"cpuRequest", "memoryRequest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.CPURequest, s.MemoryRequest = tt.cpu, tt.mem
			got, err := ContainerAppsSizeFor(s)
			if len(tt.wantErrKeys) > 0 {
				require.Error(t, err)
				for _, k := range tt.wantErrKeys {
					assert.Contains(t, err.Error(), k)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantCPU, got.CPU, "cpu")
			assert.Equal(t, tt.wantMem, got.Memory(), "memory")
			// Container Apps' Consumption sizes have 2 GiB per vCPU.
			assert.Equal(t, int64(got.CPU*2048), got.MemoryMiB, "memory follows cpu")
		})
	}
}

func TestValidateForContainerApps(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*ConsumerSettings)
		wantKey string
	}{
		{"defaults", func(*ConsumerSettings) {}, ""},
		{"a thousand replicas", func(s *ConsumerSettings) { s.MaxReplicas = ContainerAppsMaxReplicas }, ""},
		{"more replicas than an app scales to", func(s *ConsumerSettings) { s.MaxReplicas = ContainerAppsMaxReplicas + 1 }, "maxReplicas"},
		{"grace at the ceiling", func(s *ConsumerSettings) { s.TerminationGracePeriodSeconds = ContainerAppsMaxGraceSeconds }, ""},
		{"grace over the ceiling", func(s *ConsumerSettings) { s.TerminationGracePeriodSeconds = ContainerAppsMaxGraceSeconds + 1 }, "terminationGracePeriodSeconds"},
		{"request over the largest size", func(s *ConsumerSettings) { s.MemoryRequest = "16Gi" }, "memoryRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			err := s.ValidateForContainerApps()
			if tt.wantKey == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tt.wantKey+" "), "error names %s first: %v", tt.wantKey, err)
		})
	}
}

// TestContainerAppScaleRule: the app's scale rule is KEDA's azure-queue scaler with exactly the
// metadata of the AKS trigger (which make e2e runs under the real KEDA operator), authenticated by
// the user-assigned identity, with no auth secrets; and the app scales like the ScaledObject.
func TestContainerAppScaleRule(t *testing.T) {
	s := DefaultConsumerSettings()
	s.MinReplicas, s.MaxReplicas, s.QueueLength, s.ActivationQueueLength = 1, 7, 1234, 5
	s.PollingInterval, s.CooldownPeriod = 15, 120
	in := testContainerAppsInputs()
	size, err := ContainerAppsSizeFor(s)
	require.NoError(t, err)
	got := resolveArgs(t, containerAppArgs(s, in, pulumi.String("ca-aksdemo-x7k2p9"), size))

	assert.Equal(t, "ca-aksdemo-x7k2p9", at(t, got, "containerAppName"))
	assert.Equal(t, string(in.EnvironmentID.(pulumi.String)), at(t, got, "environmentId"))
	assert.Equal(t, ContainerAppsWorkloadProfile, at(t, got, "workloadProfileName"))
	assert.Equal(t, map[string]any{"type": "UserAssigned", "userAssignedIdentities": []any{testIdentityID}}, at(t, got, "identity"))

	scale := at(t, got, "template.scale")
	assert.Equal(t, 1, at(t, scale, "minReplicas"))
	assert.Equal(t, 7, at(t, scale, "maxReplicas"))
	assert.Equal(t, 15, at(t, scale, "pollingInterval"))
	assert.Equal(t, 120, at(t, scale, "cooldownPeriod"))
	rules := at(t, scale, "rules").([]any)
	require.Len(t, rules, 1)
	rule := rules[0].(map[string]any)
	assert.Equal(t, "azure-queue", rule["name"])
	for _, other := range []string{"azureQueue", "http", "tcp"} {
		assert.NotContains(t, rule, other, "only the custom azure-queue rule: the built-in azureQueue rule has no activation or queueLengthStrategy")
	}
	custom := at(t, rule, "custom").(map[string]any)
	assert.Equal(t, AzureQueueScalerType, custom["type"])
	assert.Equal(t, testIdentityID, custom["identity"], "the scale rule authenticates with the user-assigned identity")
	assert.NotContains(t, custom, "auth", "no secrets: the identity is the scale rule's only credential")

	// The same metadata as the AKS ScaledObject's trigger.
	aks := resolve(t, scaledObjectArgs(s, testInputs(), pulumi.String("aqs-app")).OtherFields["spec"])
	assert.Equal(t, at(t, aks, "triggers.0.metadata"), custom["metadata"], "scale rule metadata = the AKS trigger's")
	assert.Equal(t, "1234", at(t, custom, "metadata.queueLength"))
	assert.Equal(t, "5", at(t, custom, "metadata.activationQueueLength"))
	assert.Equal(t, QueueLengthStrategy, at(t, custom, "metadata.queueLengthStrategy"))

	// Registry pulled with the identity, no password; no ingress; no secrets at all.
	assert.Equal(t, []any{map[string]any{"server": "acraksdemox7k2p9.azurecr.io", "identity": testIdentityID}}, at(t, got, "configuration.registries"))
	conf := at(t, got, "configuration").(map[string]any)
	assert.NotContains(t, conf, "ingress", "the consumer takes no traffic")
	assert.NotContains(t, conf, "secrets")
	assert.Equal(t, float64(s.TerminationGracePeriodSeconds), at(t, got, "template.terminationGracePeriodSeconds"))
}

// TestContainerAppsContainer: the consumer container on Container Apps has AKS's environment (plus
// AZURE_CLIENT_ID, which AKS's webhook injects), its probes, and the size for its requests.
func TestContainerAppsContainer(t *testing.T) {
	for _, mode := range []string{ScaleModeScaledObject, ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ScaleMode = mode
			s.CPURequest, s.MemoryRequest = "500m", "256Mi"
			in := testContainerAppsInputs()
			size, err := ContainerAppsSizeFor(s)
			require.NoError(t, err)
			c := resolve(t, containerAppsContainer(s, in, mode, size))

			assert.Equal(t, "consumer", at(t, c, "name"))
			assert.Equal(t, string(in.Image.(pulumi.String)), at(t, c, "image"))
			assert.Equal(t, 0.5, at(t, c, "resources.cpu"))
			assert.Equal(t, "1Gi", at(t, c, "resources.memory"))

			env := envOf(t, c)
			var aks []string
			for _, v := range consumerEnvVars(s, in.QueueName, in.StorageAccountName, in.TableName, mode, s.MemoryLimit) {
				aks = append(aks, v.Name)
			}
			for _, name := range aks {
				assert.Contains(t, env, name, "env %s, as on AKS", name)
			}
			assert.Equal(t, string(in.ClientID.(pulumi.String)), env["AZURE_CLIENT_ID"], "DefaultAzureCredential picks the user-assigned identity by it")
			assert.Equal(t, "921MiB", env["GOMEMLIMIT"], "90%% of the container's 1Gi, not of AKS's memoryLimit")
			grace := s.TerminationGracePeriodSeconds
			if mode == ScaleModeScaledJob {
				grace = ContainerAppsJobGraceSeconds
				assert.Equal(t, "true", env["CONSUMER_EXIT_WHEN_EMPTY"])
			} else {
				assert.NotContains(t, env, "CONSUMER_EXIT_WHEN_EMPTY")
			}
			assert.Equal(t, DrainTimeout(grace).String(), env["CONSUMER_DRAIN_TIMEOUT"], "drain fits the grace period the replica gets")

			probes := at(t, c, "probes").([]any)
			types := map[string]any{}
			for _, p := range probes {
				types[at(t, p, "type").(string)] = p
			}
			require.Contains(t, types, "Liveness")
			assert.Equal(t, "/healthz", at(t, types["Liveness"], "httpGet.path"))
			assert.Equal(t, httpPort, at(t, types["Liveness"], "httpGet.port"))
			if mode == ScaleModeScaledJob {
				assert.Len(t, probes, 1, "a job's replica needs no readiness")
			} else {
				require.Contains(t, types, "Readiness")
				assert.Equal(t, "/readyz", at(t, types["Readiness"], "httpGet.path"))
			}
		})
	}
}

// TestContainerAppsJob: ScaledJob mode is an event-driven job with the ScaledJob's numbers.
func TestContainerAppsJob(t *testing.T) {
	s := DefaultConsumerSettings()
	s.ScaleMode = ScaleModeScaledJob
	s.JobQueueLength, s.JobMaxReplicas, s.PollingInterval = 40, 5, 5
	s.JobActiveDeadlineSeconds, s.JobBackoffLimit, s.ActivationQueueLength = 900, 1, 3
	in := testContainerAppsInputs()
	size, err := ContainerAppsSizeFor(s)
	require.NoError(t, err)
	got := resolveArgs(t, containerAppsJobArgs(s, in, pulumi.String("caj-aksdemo-x7k2p9"), size))

	assert.Equal(t, "caj-aksdemo-x7k2p9", at(t, got, "jobName"))
	assert.Equal(t, "Event", at(t, got, "configuration.triggerType"))
	assert.Equal(t, 900, at(t, got, "configuration.replicaTimeout"))
	assert.Equal(t, 1, at(t, got, "configuration.replicaRetryLimit"))
	assert.Equal(t, []any{map[string]any{"server": "acraksdemox7k2p9.azurecr.io", "identity": testIdentityID}}, at(t, got, "configuration.registries"))
	assert.Equal(t, map[string]any{"type": "UserAssigned", "userAssignedIdentities": []any{testIdentityID}}, at(t, got, "identity"))
	ev := at(t, got, "configuration.eventTriggerConfig")
	assert.Equal(t, 1, at(t, ev, "parallelism"))
	assert.Equal(t, 1, at(t, ev, "replicaCompletionCount"))
	assert.Equal(t, 0, at(t, ev, "scale.minExecutions"))
	assert.Equal(t, 5, at(t, ev, "scale.maxExecutions"))
	assert.Equal(t, 5, at(t, ev, "scale.pollingInterval"))
	rule := at(t, ev, "scale.rules.0").(map[string]any)
	assert.Equal(t, AzureQueueScalerType, rule["type"])
	assert.Equal(t, testIdentityID, rule["identity"])
	assert.NotContains(t, rule, "auth")
	aks := resolve(t, scaledJobArgs(s, testInputs()).OtherFields["spec"])
	assert.Equal(t, at(t, aks, "triggers.0.metadata"), rule["metadata"], "job rule metadata = the AKS ScaledJob trigger's")
	assert.Equal(t, "40", at(t, rule, "metadata.queueLength"))
	assert.NotContains(t, at(t, got, "configuration").(map[string]any), "secrets")
	assert.Equal(t, "true", envOf(t, at(t, got, "template.containers.0"))["CONSUMER_EXIT_WHEN_EMPTY"])
}

// TestManagedEnvironment: Consumption profile, logs to Azure Monitor (the diagnostic setting takes
// them to the workspace: no workspace key handed over), in the subnet when given.
func TestManagedEnvironment(t *testing.T) {
	rg, loc, name := pulumi.String("rg"), pulumi.String("westus3"), pulumi.String("cae-aksdemo-x7k2p9")
	t.Run("in the stack's subnet", func(t *testing.T) {
		got := resolveArgs(t, managedEnvironmentArgs(rg, loc, name, pulumi.String("/subnets/snet-aca"), nil))
		assert.Equal(t, []any{map[string]any{"name": "Consumption", "workloadProfileType": "Consumption"}}, at(t, got, "workloadProfiles"))
		assert.Equal(t, map[string]any{"destination": "azure-monitor"}, at(t, got, "appLogsConfiguration"), "no log-analytics sharedKey")
		assert.Equal(t, "/subnets/snet-aca", at(t, got, "vnetConfiguration.infrastructureSubnetId"))
		assert.Equal(t, true, at(t, got, "vnetConfiguration.internal"))
	})
	t.Run("without a subnet", func(t *testing.T) {
		got := resolveArgs(t, managedEnvironmentArgs(rg, loc, name, nil, nil))
		assert.NotContains(t, got, "vnetConfiguration")
	})
	ds := resolveArgs(t, environmentDiagnosticSettingArgs(pulumi.String("/env"), pulumi.String("/workspace")))
	assert.Equal(t, "/env", at(t, ds, "resourceUri"))
	assert.Equal(t, "/workspace", at(t, ds, "workspaceId"))
	assert.Equal(t, []any{map[string]any{"categoryGroup": "allLogs", "enabled": true}}, at(t, ds, "logs"))
}
