package components

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestDefaultConsumerSettings(t *testing.T) {
	s := DefaultConsumerSettings()
	require.NoError(t, s.Validate())

	// The names and values the seed script had.
	assert.Equal(t, "aqs-demo", s.Namespace)
	assert.Equal(t, "aqs-app-service-account", s.ServiceAccountName)
	assert.Equal(t, "aqs-app", s.DeploymentName)
	assert.Equal(t, "aqs-reader", s.AppLabel)
	assert.Equal(t, "aws2az-queue-scaleobj", s.ScaledObjectName)
	assert.Equal(t, "keda-az-credentials", s.TriggerAuthenticationName)
	assert.Equal(t, ScaleModeScaledObject, s.ScaleMode)
	assert.Equal(t, 0, s.MinReplicas)
	assert.Equal(t, 30, s.PollingInterval)
	assert.Equal(t, 10, s.CooldownPeriod)
	assert.Equal(t, "500m", s.CPURequest)
	assert.Equal(t, "64Mi", s.MemoryRequest)
	assert.Equal(t, "500m", s.CPULimit)
	assert.Equal(t, "128Mi", s.MemoryLimit)
	assert.Equal(t, "aqs-app-pool", s.NodePoolName)
	assert.Equal(t, "D", s.NodePoolSKUFamily)
	assert.Empty(t, s.Image, "the image is derived from the registry by default")

	// The throughput-derived defaults follow the per-replica rate.
	assert.Equal(t, messagesPerSecondPerReplica*backlogSecondsPerReplica, s.QueueLength)
	assert.Equal(t, 8000, s.QueueLength)
	assert.GreaterOrEqual(t, s.MaxReplicas*messagesPerSecondPerReplica, AzureQueueMessagesPerSecond,
		"maxReplicas must reach the queue's target at the per-replica rate")
	assert.Less(t, (s.MaxReplicas-1)*messagesPerSecondPerReplica, AzureQueueMessagesPerSecond,
		"maxReplicas must not exceed what the queue's target can feed")
	assert.Equal(t, 3, s.MaxReplicas)
	assert.Less(t, s.JobQueueLength/messagesPerSecondPerReplica, s.JobActiveDeadlineSeconds,
		"a job must finish its batch well within its deadline")
}

// TestSizingFollowsTheBench checks the arithmetic from the benchmark's figures to the rate and
// the CPU request: the rate is the lower of the network's and the CPU limit's bounds, rounded
// down to a hundred, and the request covers the CPU the rate costs.
func TestSizingFollowsTheBench(t *testing.T) {
	s := DefaultConsumerSettings()
	network := benchFractionOfBound * float64(s.ConsumerConcurrency) / (assumedRequestMillis / 1000.0 * benchSlotRequestsPerMessage)
	limit := resource.MustParse(s.CPULimit)
	cpu := float64(limit.MilliValue()) / 1000 / (benchCPUMicrosPerMessage / 1e6)
	bound := min(network, cpu)
	t.Logf("network bound %.0f msg/s, CPU limit bound %.0f msg/s", network, cpu)
	assert.InDelta(t, 1203, network, 1)
	assert.InDelta(t, 833, cpu, 1)
	assert.LessOrEqual(t, float64(messagesPerSecondPerReplica), bound, "the rate is within both bounds")
	assert.Greater(t, float64(messagesPerSecondPerReplica), bound-100, "rounded down to a hundred, no more")
	req := resource.MustParse(s.CPURequest)
	used := float64(messagesPerSecondPerReplica) * benchCPUMicrosPerMessage / 1000 // millicores
	assert.GreaterOrEqual(t, float64(req.MilliValue()), used, "the request covers the CPU the rate costs")
	assert.Less(t, float64(req.MilliValue()), used+100, "and not much more")
	assert.LessOrEqual(t, req.MilliValue(), limit.MilliValue())
	assert.InDelta(t, bound, ReplicaRate(s.ConsumerConcurrency, limit.MilliValue()), 0.01)
	assert.InDelta(t, 601, ReplicaRate(8, 1000), 1, "network-bound with fewer slots")
}

func TestConsumerSettingsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
		want   []string // substrings of the error; each names the key
	}{
		{"max below min", func(s *ConsumerSettings) { s.MinReplicas, s.MaxReplicas = 5, 3 }, []string{"maxReplicas (3) must be >= minReplicas (5)"}},
		{"negative min", func(s *ConsumerSettings) { s.MinReplicas = -1 }, []string{"minReplicas (-1)"}},
		{"zero max", func(s *ConsumerSettings) { s.MaxReplicas = 0 }, []string{"maxReplicas (0) must be >= 1"}},
		{"zero queueLength", func(s *ConsumerSettings) { s.QueueLength = 0 }, []string{"queueLength (0) must be > 0"}},
		{"negative queueLength", func(s *ConsumerSettings) { s.QueueLength = -5 }, []string{"queueLength (-5)"}},
		{"negative activation", func(s *ConsumerSettings) { s.ActivationQueueLength = -1 }, []string{"activationQueueLength"}},
		{"zero polling", func(s *ConsumerSettings) { s.PollingInterval = 0 }, []string{"pollingInterval"}},
		{"negative cooldown", func(s *ConsumerSettings) { s.CooldownPeriod = -1 }, []string{"cooldownPeriod"}},
		{"negative scale-up window", func(s *ConsumerSettings) { s.ScaleUpStabilizationSeconds = -1 }, []string{"scaleUpStabilizationSeconds (-1) must be between 0 and 3600"}},
		{"scale-down window above the HPA's hour", func(s *ConsumerSettings) { s.ScaleDownStabilizationSeconds = 3601 }, []string{"scaleDownStabilizationSeconds (3601) must be between 0 and 3600"}},
		{"unknown scaleMode", func(s *ConsumerSettings) { s.ScaleMode = "Deployment" }, []string{`scaleMode ("Deployment")`}},
		{"scaleMode case", func(s *ConsumerSettings) { s.ScaleMode = "scaledjob" }, []string{"scaleMode"}},
		{"bad cpu request", func(s *ConsumerSettings) { s.CPURequest = "250 millicores" }, []string{`cpuRequest ("250 millicores")`}},
		{"bad memory request", func(s *ConsumerSettings) { s.MemoryRequest = "64MB!" }, []string{"memoryRequest"}},
		{"empty cpu limit", func(s *ConsumerSettings) { s.CPULimit = "" }, []string{"cpuLimit"}},
		{"zero memory limit", func(s *ConsumerSettings) { s.MemoryLimit = "0" }, []string{`memoryLimit ("0") must be > 0`}},
		{"request above limit", func(s *ConsumerSettings) { s.CPURequest, s.CPULimit = "1", "500m" }, []string{"cpuRequest (1) must be <= cpuLimit (500m)"}},
		{"memory request above limit", func(s *ConsumerSettings) { s.MemoryRequest = "1Gi" }, []string{"memoryRequest (1Gi) must be <= memoryLimit (128Mi)"}},
		{"empty namespace", func(s *ConsumerSettings) { s.Namespace = "" }, []string{`namespace ("")`}},
		{"uppercase namespace", func(s *ConsumerSettings) { s.Namespace = "AQS-Demo" }, []string{`namespace ("AQS-Demo") must be a DNS-1123 label`}},
		{"dotted namespace", func(s *ConsumerSettings) { s.Namespace = "aqs.demo" }, []string{"namespace"}},
		{"long namespace", func(s *ConsumerSettings) { s.Namespace = strings.Repeat("a", 64) }, []string{"namespace"}},
		{"empty service account", func(s *ConsumerSettings) { s.ServiceAccountName = "" }, []string{"serviceAccountName"}},
		{"bad service account", func(s *ConsumerSettings) { s.ServiceAccountName = "aqs_app" }, []string{"serviceAccountName"}},
		{"bad deployment name", func(s *ConsumerSettings) { s.DeploymentName = "-aqs" }, []string{"deploymentName"}},
		{"bad scaled object name", func(s *ConsumerSettings) { s.ScaledObjectName = "Scale Obj" }, []string{"scaledObjectName"}},
		{"bad scaled job name", func(s *ConsumerSettings) { s.ScaledJobName = "" }, []string{"scaledJobName"}},
		{"bad trigger auth name", func(s *ConsumerSettings) { s.TriggerAuthenticationName = "keda/creds" }, []string{"triggerAuthenticationName"}},
		{"empty app label", func(s *ConsumerSettings) { s.AppLabel = "" }, []string{"appLabel must not be empty"}},
		{"bad app label", func(s *ConsumerSettings) { s.AppLabel = "aqs reader" }, []string{"appLabel"}},
		{"default node pool", func(s *ConsumerSettings) { s.NodePoolName = "default" }, []string{`nodePoolName ("default") is owned by AKS`}},
		{"system-surge node pool", func(s *ConsumerSettings) { s.NodePoolName = "system-surge" }, []string{"nodePoolName"}},
		{"empty node pool", func(s *ConsumerSettings) { s.NodePoolName = "" }, []string{"nodePoolName"}},
		{"bad node pool", func(s *ConsumerSettings) { s.NodePoolName = "App_Pool" }, []string{"nodePoolName"}},
		{"empty sku family", func(s *ConsumerSettings) { s.NodePoolSKUFamily = "" }, []string{"nodePoolSkuFamily must not be empty"}},
		{"bad sku family", func(s *ConsumerSettings) { s.NodePoolSKUFamily = "D v5" }, []string{"nodePoolSkuFamily"}},
		{"bad pool cpu", func(s *ConsumerSettings) { s.NodePoolCPULimit = "lots" }, []string{"nodePoolCpuLimit"}},
		{"pool cpu below pod", func(s *ConsumerSettings) { s.NodePoolCPULimit = "100m" }, []string{"nodePoolCpuLimit (100m) must be >= cpuRequest (500m)"}},
		{"bad consolidateAfter", func(s *ConsumerSettings) { s.NodePoolConsolidateAfter = "1.5m" }, []string{"nodePoolConsolidateAfter"}},
		{"consolidateAfter ms", func(s *ConsumerSettings) { s.NodePoolConsolidateAfter = "500ms" }, []string{"nodePoolConsolidateAfter"}},
		{"no capacity type", func(s *ConsumerSettings) { s.AppCapacityTypes = nil }, []string{"appCapacityTypes must name at least one"}},
		{"unknown capacity type", func(s *ConsumerSettings) { s.AppCapacityTypes = []string{"reserved"} }, []string{`appCapacityTypes: "reserved" is not a capacity type`}},
		{"capacity type twice", func(s *ConsumerSettings) { s.AppCapacityTypes = []string{"spot", "spot"} }, []string{`appCapacityTypes: "spot" is listed twice`}},
		{"visibility within the drain", func(s *ConsumerSettings) { s.TerminationGracePeriodSeconds = 120 }, []string{
			"consumerVisibilityTimeout (60s) must be longer than the drain after SIGTERM (1m50s, terminationGracePeriodSeconds 120 less its margin)"}},
		{"visibility equal to the drain", func(s *ConsumerSettings) { s.TerminationGracePeriodSeconds, s.ConsumerVisibilityTimeout = 30, "20s" }, []string{
			"consumerVisibilityTimeout (20s) must be longer than the drain after SIGTERM (20s"}},
		{"image with scheme", func(s *ConsumerSettings) { s.Image = "https://acr.azurecr.io/x:1" }, []string{"image ("}},
		{"image with space", func(s *ConsumerSettings) { s.Image = "acr.azurecr.io/x :1" }, []string{"image ("}},
		{"zero grace", func(s *ConsumerSettings) { s.TerminationGracePeriodSeconds = 0 }, []string{"terminationGracePeriodSeconds"}},
		{"negative toleration", func(s *ConsumerSettings) { s.NodeFailureTolerationSeconds = -1 }, []string{"nodeFailureTolerationSeconds"}},
		{"zero concurrency", func(s *ConsumerSettings) { s.ConsumerConcurrency = 0 }, []string{"consumerConcurrency"}},
		{"batch too big", func(s *ConsumerSettings) { s.ConsumerBatchSize = 33 }, []string{"consumerBatchSize (33)"}},
		{"batch zero", func(s *ConsumerSettings) { s.ConsumerBatchSize = 0 }, []string{"consumerBatchSize (0)"}},
		{"visibility not a duration", func(s *ConsumerSettings) { s.ConsumerVisibilityTimeout = "60" }, []string{`consumerVisibilityTimeout ("60")`}},
		{"visibility too long", func(s *ConsumerSettings) { s.ConsumerVisibilityTimeout = "200h" }, []string{"consumerVisibilityTimeout"}},
		{"visibility too short", func(s *ConsumerSettings) { s.ConsumerVisibilityTimeout = "10ms" }, []string{"consumerVisibilityTimeout"}},
		{"visibility not whole seconds", func(s *ConsumerSettings) { s.ConsumerVisibilityTimeout = "1500ms" }, []string{"consumerVisibilityTimeout (\"1500ms\") must be whole seconds"}},
		{"zero max deliveries", func(s *ConsumerSettings) { s.ConsumerMaxDeliveries = 0 }, []string{"consumerMaxDeliveries"}},
		{"zero job queue length", func(s *ConsumerSettings) { s.JobQueueLength = 0 }, []string{"jobQueueLength"}},
		{"zero job max", func(s *ConsumerSettings) { s.JobMaxReplicas = 0 }, []string{"jobMaxReplicas"}},
		{"negative job history", func(s *ConsumerSettings) { s.JobSuccessfulHistoryLimit = -1 }, []string{"jobSuccessfulHistoryLimit"}},
		{"negative failed history", func(s *ConsumerSettings) { s.JobFailedHistoryLimit = -1 }, []string{"jobFailedHistoryLimit"}},
		{"custom strategy", func(s *ConsumerSettings) { s.JobScalingStrategy = "custom" }, []string{`jobScalingStrategy ("custom")`}},
		{"zero deadline", func(s *ConsumerSettings) { s.JobActiveDeadlineSeconds = 0 }, []string{"jobActiveDeadlineSeconds"}},
		{"negative backoff", func(s *ConsumerSettings) { s.JobBackoffLimit = -1 }, []string{"jobBackoffLimit"}},
		{"every problem at once", func(s *ConsumerSettings) {
			s.MinReplicas, s.MaxReplicas, s.QueueLength, s.ScaleMode, s.CPURequest = 5, 3, 0, "Nope", "x"
		}, []string{"maxReplicas (3) must be >= minReplicas (5)", "queueLength (0)", "scaleMode", "cpuRequest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			err := s.Validate()
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestConsumerSettingsValidAlternatives(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"scaled job", func(s *ConsumerSettings) { s.ScaleMode = ScaleModeScaledJob }},
		{"prebuilt image by digest", func(s *ConsumerSettings) { s.Image = "ghcr.io/org/consumer@sha256:abc" }},
		{"min equals max", func(s *ConsumerSettings) { s.MinReplicas, s.MaxReplicas = 3, 3 }},
		{"never consolidate", func(s *ConsumerSettings) { s.NodePoolConsolidateAfter = "Never" }},
		{"compound consolidate", func(s *ConsumerSettings) { s.NodePoolConsolidateAfter = "1h30m" }},
		{"request equals limit", func(s *ConsumerSettings) { s.CPURequest, s.MemoryRequest = "500m", "128Mi" }},
		{"accurate strategy", func(s *ConsumerSettings) { s.JobScalingStrategy = "accurate" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			assert.NoError(t, s.Validate())
		})
	}
}

// settingsKeys returns the json keys of ConsumerSettings in declaration order.
func settingsKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	typ := reflect.TypeOf(ConsumerSettings{})
	for i := 0; i < typ.NumField(); i++ {
		tag := typ.Field(i).Tag.Get("json")
		require.NotEmpty(t, tag, "field %s has no json tag (its Pulumi config key)", typ.Field(i).Name)
		keys = append(keys, tag)
	}
	return keys
}

// The json tags are the Pulumi config keys: lowerCamel, unique, and round-trip through JSON
// (what config.TryObject and structured config produce).
func TestConsumerSettingsJSONKeys(t *testing.T) {
	seen := map[string]bool{}
	lowerCamel := regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)
	for _, k := range settingsKeys(t) {
		assert.Regexp(t, lowerCamel, k, "config key %q", k)
		assert.False(t, seen[k], "duplicate config key %q", k)
		seen[k] = true
	}

	want := DefaultConsumerSettings()
	data, err := json.Marshal(want)
	require.NoError(t, err)
	var got ConsumerSettings
	require.NoError(t, json.Unmarshal(data, &got))
	assert.Equal(t, want, got)
}

// docs/configuration.md (generated from Pulumi.yaml by make docs) lists every workload key with
// the type and default the Go defaults have, so the reference cannot drift from the code.
func TestConsumerSettingsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err, "docs/configuration.md is the reference (make docs)")
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9]+)` \\| (string|integer|array)[^|]* \\| `([^`]*)` \\| [^|]+ \\| .+ \\|$")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = [2]string{m[2], m[3]}
	}

	defaults := map[string]any{}
	data, err := json.Marshal(DefaultConsumerSettings())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &defaults))
	for _, k := range settingsKeys(t) {
		got, ok := documented[k]
		if !assert.True(t, ok, "docs/configuration.md is missing %q", k) {
			continue
		}
		wantType, wantDefault := "string", fmt.Sprint(defaults[k])
		if _, isNumber := defaults[k].(float64); isNumber {
			wantType = "integer"
		}
		if list, isList := defaults[k].([]any); isList {
			raw, err := json.Marshal(list)
			require.NoError(t, err)
			wantType, wantDefault = "array", string(raw)
		}
		if wantDefault == "" {
			wantDefault = `""`
		}
		assert.Equal(t, [2]string{wantType, wantDefault}, got, "docs/configuration.md row for %q (type, default)", k)
	}
}

// Issue 23 item 4: a spot eviction on NAP does not drain (a 1 s grace), so spot no longer caps
// the grace period, which serves graceful stops only.
func TestSpotDoesNotLimitTheGracePeriod(t *testing.T) {
	s := DefaultConsumerSettings()
	s.AppCapacityTypes = []string{CapacityTypeSpot, CapacityTypeOnDemand}
	s.TerminationGracePeriodSeconds = 60
	require.NoError(t, s.Validate(), "spot with the default 60 s grace")
}
