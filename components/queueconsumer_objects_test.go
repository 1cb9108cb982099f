package components

import (
	"context"
	"strconv"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	k8smetav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
)

// Table tests of the pure builders: settings and literal inputs in, args out, rendered to JSON
// and decoded strictly into the real API types. No engine, no mocks.

func renderDeployment(t *testing.T, s ConsumerSettings) appsv1.Deployment {
	t.Helper()
	return decodeStrict[appsv1.Deployment](t, "deployment", renderArgs(t, "apps/v1", "Deployment", deploymentArgs(s, testInputs())))
}

func renderScaledJob(t *testing.T, s ConsumerSettings) kedav1alpha1.ScaledJob {
	t.Helper()
	return decodeStrict[kedav1alpha1.ScaledJob](t, "scaled job", renderArgs(t, kedaAPIVersion, "ScaledJob", scaledJobArgs(s, testInputs())))
}

// decodePodTemplate renders the consumer pod template of a mode through its owner's builder.
func decodePodTemplate(t *testing.T, s ConsumerSettings, mode string) corev1.PodTemplateSpec {
	t.Helper()
	if mode == ScaleModeScaledJob {
		return renderScaledJob(t, s).Spec.JobTargetRef.Template
	}
	return renderDeployment(t, s).Spec.Template
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func toleration(ts []corev1.Toleration, key string) *corev1.Toleration {
	for i := range ts {
		if ts[i].Key == key {
			return &ts[i]
		}
	}
	return nil
}

// assertConsumerPod checks what every consumer pod needs, in both scale modes.
func assertConsumerPod(t *testing.T, s ConsumerSettings, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	spec := tmpl.Spec

	// Workload identity (SPEC §7.10): label on the pod, the federated service account.
	assert.Equal(t, "true", tmpl.Labels[workloadIdentityUseLabel], "pod label %s", workloadIdentityUseLabel)
	assert.Equal(t, s.AppLabel, tmpl.Labels["app"], "pod label app")
	assert.Equal(t, s.ServiceAccountName, spec.ServiceAccountName, "serviceAccountName")
	require.NotNil(t, spec.AutomountServiceAccountToken, "automountServiceAccountToken")
	assert.True(t, *spec.AutomountServiceAccountToken, "automountServiceAccountToken must stay true for workload identity")

	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	assert.Equal(t, "acraksdemox7k2p9.azurecr.io/aws2azure/aqs-consumer:v1", c.Image)
	env := envMap(c)
	want := map[string]string{
		"AZURE_QUEUE_NAME":            "aws2azmsgs",
		"AZURE_STORAGE_ACCOUNT_NAME":  "storaksdemox7k2p9",
		"AZURE_TABLE_NAME":            "aws2azpmts",
		"CONSUMER_CONCURRENCY":        strconv.Itoa(s.ConsumerConcurrency),
		"CONSUMER_BATCH_SIZE":         strconv.Itoa(s.ConsumerBatchSize),
		"CONSUMER_VISIBILITY_TIMEOUT": s.ConsumerVisibilityTimeout,
		"CONSUMER_MAX_DELIVERIES":     strconv.Itoa(s.ConsumerMaxDeliveries),
		"CONSUMER_HTTP_ADDR":          ":8080",
		"CONSUMER_DRAIN_TIMEOUT":      DrainTimeout(s.TerminationGracePeriodSeconds).String(),
	}
	for k, v := range want {
		assert.Equal(t, v, env[k], "env %s", k)
	}

	// Port, probes.
	require.Len(t, c.Ports, 1)
	assert.Equal(t, corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, c.Ports[0])
	require.NotNil(t, c.LivenessProbe, "liveness probe")
	require.NotNil(t, c.LivenessProbe.HTTPGet, "liveness probe httpGet")
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, intstr.FromString("http"), c.LivenessProbe.HTTPGet.Port)

	// Resources.
	assert.True(t, resource.MustParse(s.CPURequest).Equal(c.Resources.Requests[corev1.ResourceCPU]), "cpu request")
	assert.True(t, resource.MustParse(s.MemoryRequest).Equal(c.Resources.Requests[corev1.ResourceMemory]), "memory request")
	assert.True(t, resource.MustParse(s.CPULimit).Equal(c.Resources.Limits[corev1.ResourceCPU]), "cpu limit")
	assert.True(t, resource.MustParse(s.MemoryLimit).Equal(c.Resources.Limits[corev1.ResourceMemory]), "memory limit")

	// Security context: container and pod.
	sc := c.SecurityContext
	require.NotNil(t, sc, "container securityContext")
	assert.Equal(t, ptrTo(true), sc.RunAsNonRoot, "runAsNonRoot")
	assert.Equal(t, ptrTo(int64(65532)), sc.RunAsUser, "runAsUser")
	assert.Equal(t, ptrTo(true), sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
	assert.Equal(t, ptrTo(false), sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation")
	require.NotNil(t, sc.Capabilities)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "capabilities.drop")
	require.NotNil(t, sc.SeccompProfile)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
	psc := spec.SecurityContext
	require.NotNil(t, psc, "pod securityContext")
	assert.Equal(t, ptrTo(true), psc.RunAsNonRoot)
	assert.Equal(t, ptrTo(int64(65532)), psc.RunAsUser)
	require.NotNil(t, psc.SeccompProfile)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)

	// The read-only root filesystem gets a writable /tmp.
	require.Len(t, c.VolumeMounts, 1)
	assert.Equal(t, "/tmp", c.VolumeMounts[0].MountPath)
	require.Len(t, spec.Volumes, 1)
	require.NotNil(t, spec.Volumes[0].EmptyDir, "tmp volume is an emptyDir")

	// Tolerations: quick failover off dead nodes, and the app pool's taint.
	for _, key := range []string{"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"} {
		tol := toleration(spec.Tolerations, key)
		require.NotNil(t, tol, "toleration %s", key)
		assert.Equal(t, corev1.TolerationOpExists, tol.Operator, "toleration %s operator", key)
		assert.Equal(t, corev1.TaintEffectNoExecute, tol.Effect, "toleration %s effect", key)
		assert.Equal(t, ptrTo(int64(s.NodeFailureTolerationSeconds)), tol.TolerationSeconds, "toleration %s seconds", key)
	}
	pool := toleration(spec.Tolerations, "deployment")
	require.NotNil(t, pool, "toleration of the app pool taint")
	assert.Equal(t, corev1.Toleration{Key: "deployment", Operator: corev1.TolerationOpEqual, Value: s.NodePoolName, Effect: corev1.TaintEffectNoSchedule}, *pool)

	// On the app NodePool's nodes only.
	assert.Equal(t, s.NodePoolName, spec.NodeSelector["karpenter.sh/nodepool"], "nodeSelector karpenter.sh/nodepool")
	assert.Equal(t, "linux", spec.NodeSelector["kubernetes.io/os"], "nodeSelector kubernetes.io/os")

	// Spread across zones, never blocking scheduling; not across nodes: Karpenter would launch a
	// node per pod for a hostname spread, ScheduleAnyway or not (docs/cloud-notes.md).
	keys := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, c := range spec.TopologySpreadConstraints {
		keys[c.TopologyKey] = c.WhenUnsatisfiable
		require.NotNil(t, c.LabelSelector, "spread %s labelSelector", c.TopologyKey)
		assert.Equal(t, map[string]string{"app": s.AppLabel}, c.LabelSelector.MatchLabels, "spread %s selector", c.TopologyKey)
		assert.EqualValues(t, 1, c.MaxSkew)
	}
	assert.Equal(t, map[string]corev1.UnsatisfiableConstraintAction{
		"topology.kubernetes.io/zone": corev1.ScheduleAnyway,
	}, keys, "topologySpreadConstraints")

	assert.Equal(t, ptrTo(int64(s.TerminationGracePeriodSeconds)), spec.TerminationGracePeriodSeconds, "terminationGracePeriodSeconds")
}

func ptrTo[T any](v T) *T { return &v }

func TestNamespaceArgs(t *testing.T) {
	for _, name := range []string{"aqs-demo", "team-b"} {
		t.Run(name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.Namespace = name
			ns := decodeStrict[corev1.Namespace](t, "namespace", renderArgs(t, "v1", "Namespace", namespaceArgs(s)))
			assert.Equal(t, name, ns.Name)
			assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
		})
	}
}

func TestServiceAccountArgs(t *testing.T) {
	for _, name := range []string{"aqs-app-service-account", "other-sa"} {
		t.Run(name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ServiceAccountName = name
			in := testInputs()
			sa := decodeStrict[corev1.ServiceAccount](t, "service account",
				renderArgs(t, "v1", "ServiceAccount", serviceAccountArgs(s, in.Namespace, in.ClientID)))
			assert.Equal(t, name, sa.Name)
			assert.Equal(t, "aqs-demo", sa.Namespace)
			assert.Equal(t, "11111111-2222-3333-4444-555555555555", sa.Annotations["azure.workload.identity/client-id"])
		})
	}
}

func TestDeploymentArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"defaults", func(*ConsumerSettings) {}},
		{"custom pool", func(s *ConsumerSettings) { s.NodePoolName = "consumer-pool" }},
		{"custom resources", func(s *ConsumerSettings) {
			s.CPURequest, s.CPULimit, s.MemoryRequest, s.MemoryLimit = "1", "2", "256Mi", "512Mi"
		}},
		{"custom timings", func(s *ConsumerSettings) {
			s.TerminationGracePeriodSeconds, s.NodeFailureTolerationSeconds, s.ConsumerVisibilityTimeout = 120, 10, "2m"
		}},
		{"custom tuning", func(s *ConsumerSettings) {
			s.ConsumerConcurrency, s.ConsumerBatchSize, s.ConsumerVisibilityTimeout, s.ConsumerMaxDeliveries = 4, 8, "5m", 3
		}},
		{"custom names", func(s *ConsumerSettings) {
			s.DeploymentName, s.AppLabel = "reader", "reader-app"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			require.NoError(t, s.Validate())
			d := renderDeployment(t, s)

			assert.Equal(t, s.DeploymentName, d.Name)
			assert.Equal(t, "aqs-demo", d.Namespace)
			require.NotNil(t, d.Spec.Selector)
			assert.Equal(t, map[string]string{"app": s.AppLabel}, d.Spec.Selector.MatchLabels, "selector")
			assert.Nil(t, d.Spec.Replicas, "replicas belong to KEDA's HPA, not to the Deployment spec")
			require.NotNil(t, d.Spec.Strategy.RollingUpdate)
			assert.Equal(t, intstr.FromInt32(0), *d.Spec.Strategy.RollingUpdate.MaxUnavailable)
			assertConsumerPod(t, s, d.Spec.Template)

			c := d.Spec.Template.Spec.Containers[0]
			require.NotNil(t, c.ReadinessProbe, "readiness probe")
			require.NotNil(t, c.ReadinessProbe.HTTPGet)
			assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			assert.Equal(t, intstr.FromString("http"), c.ReadinessProbe.HTTPGet.Port)
			assert.NotContains(t, envMap(c), "CONSUMER_EXIT_WHEN_EMPTY", "a Deployment's consumer runs until stopped")
			assert.Empty(t, d.Spec.Template.Spec.RestartPolicy, "Deployment pods keep the default restart policy")
		})
	}
}

func TestDrainTimeout(t *testing.T) {
	tests := []struct {
		grace int
		want  string
	}{
		{60, "50s"},
		{30, "20s"}, // dev's grace: what cmd/consumer's TestSIGTERMDrainsWithinTheGracePeriod drains within
		{120, "1m50s"},
		{20, "10s"},
		{10, "5s"},
		{3, "2s"},
		{1, "500ms"},
		{3600, "10m0s"}, // the consumer's ceiling
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.grace), func(t *testing.T) {
			got := DrainTimeout(tt.grace).String()
			assert.Equal(t, tt.want, got)
			d, err := time.ParseDuration(got)
			require.NoError(t, err)
			assert.Less(t, d, time.Duration(tt.grace)*time.Second, "the drain ends before the kubelet's SIGKILL")
		})
	}
}

func TestGoMemLimit(t *testing.T) {
	tests := []struct {
		limit string
		want  string
		ok    bool
	}{
		{"128Mi", "115MiB", true},
		{"512Mi", "460MiB", true},
		{"1Gi", "921MiB", true},
		{"1M", "", false}, // under 1 MiB after headroom: leave the runtime default
		{"bogus", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.limit, func(t *testing.T) {
			got, ok := goMemLimit(tt.limit)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
	// And it reaches the container.
	d := renderDeployment(t, DefaultConsumerSettings())
	assert.Equal(t, "115MiB", envMap(d.Spec.Template.Spec.Containers[0])["GOMEMLIMIT"])
}

func TestPodDisruptionBudgetArgs(t *testing.T) {
	s := DefaultConsumerSettings()
	pdb := decodeStrict[policyv1.PodDisruptionBudget](t, "pdb",
		renderArgs(t, "policy/v1", "PodDisruptionBudget", podDisruptionBudgetArgs(s, testInputs().Namespace)))
	assert.Equal(t, "aqs-app-pdb", pdb.Name)
	assert.Equal(t, "aqs-demo", pdb.Namespace)
	require.NotNil(t, pdb.Spec.MaxUnavailable)
	assert.Equal(t, intstr.FromInt32(1), *pdb.Spec.MaxUnavailable, "maxUnavailable 1 works with minReplicas 0")
	assert.Nil(t, pdb.Spec.MinAvailable, "minAvailable would block drains at low replica counts")
	require.NotNil(t, pdb.Spec.Selector)
	assert.Equal(t, map[string]string{"app": "aqs-reader"}, pdb.Spec.Selector.MatchLabels)
	require.NotNil(t, pdb.Spec.UnhealthyPodEvictionPolicy)
	assert.Equal(t, policyv1.AlwaysAllow, *pdb.Spec.UnhealthyPodEvictionPolicy)
}

func TestTriggerAuthenticationArgs(t *testing.T) {
	s := DefaultConsumerSettings()
	in := testInputs()
	ta := decodeStrict[kedav1alpha1.TriggerAuthentication](t, "trigger authentication",
		renderArgs(t, kedaAPIVersion, "TriggerAuthentication", triggerAuthenticationArgs(s, in.Namespace, in.ClientID)))
	assert.Equal(t, "keda-az-credentials", ta.Name)
	assert.Equal(t, "aqs-demo", ta.Namespace)
	require.NotNil(t, ta.Spec.PodIdentity, "podIdentity")
	assert.Equal(t, kedav1alpha1.PodIdentityProviderAzureWorkload, ta.Spec.PodIdentity.Provider)
	require.NotNil(t, ta.Spec.PodIdentity.IdentityID, "identityId")
	assert.Equal(t, "11111111-2222-3333-4444-555555555555", *ta.Spec.PodIdentity.IdentityID)
	_, err := ta.ValidateCreate(nil) // KEDA's admission webhook logic
	assert.NoError(t, err)
}

func TestScaledObjectArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"defaults", func(*ConsumerSettings) {}},
		{"seed values", func(s *ConsumerSettings) {
			s.MinReplicas, s.MaxReplicas, s.QueueLength, s.PollingInterval, s.CooldownPeriod = 0, 15, 5, 30, 10
		}},
		{"always on", func(s *ConsumerSettings) {
			s.MinReplicas, s.MaxReplicas, s.ActivationQueueLength = 2, 4, 50
		}},
		{"renamed", func(s *ConsumerSettings) {
			s.ScaledObjectName, s.DeploymentName = "consumer-scaler", "consumer"
		}},
		{"tuned HPA windows", func(s *ConsumerSettings) {
			s.ScaleUpStabilizationSeconds, s.ScaleDownStabilizationSeconds = 30, 600
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			require.NoError(t, s.Validate())
			so := decodeStrict[kedav1alpha1.ScaledObject](t, "scaled object", renderArgs(t, kedaAPIVersion, "ScaledObject",
				scaledObjectArgs(s, testInputs(), pulumi.String(s.DeploymentName))))
			assertHPABehavior(t, so, s)

			assert.Equal(t, s.ScaledObjectName, so.Name)
			assert.Equal(t, "aqs-demo", so.Namespace)
			require.NotNil(t, so.Spec.ScaleTargetRef)
			assert.Equal(t, kedav1alpha1.ScaleTarget{Name: s.DeploymentName, Kind: "Deployment", APIVersion: "apps/v1"}, *so.Spec.ScaleTargetRef)
			assert.Equal(t, ptrTo(int32(s.MinReplicas)), so.Spec.MinReplicaCount, "minReplicaCount")
			assert.Equal(t, ptrTo(int32(s.MaxReplicas)), so.Spec.MaxReplicaCount, "maxReplicaCount")
			assert.Equal(t, ptrTo(int32(s.PollingInterval)), so.Spec.PollingInterval, "pollingInterval")
			assert.Equal(t, ptrTo(int32(s.CooldownPeriod)), so.Spec.CooldownPeriod, "cooldownPeriod")
			assertAzureQueueTrigger(t, so.Spec.Triggers, s.QueueLength, s.ActivationQueueLength)
		})
	}
}

// assertHPABehavior checks the HPA behaviour the ScaledObject hands to the HPA KEDA creates:
// both windows from the settings, and the fixed policies (double or +4 pods per 15 s up, all
// surplus per 15 s down), each period one HPA sync.
func assertHPABehavior(t *testing.T, so kedav1alpha1.ScaledObject, s ConsumerSettings) {
	t.Helper()
	require.NotNil(t, so.Spec.Advanced, "advanced")
	require.NotNil(t, so.Spec.Advanced.HorizontalPodAutoscalerConfig, "advanced.horizontalPodAutoscalerConfig")
	b := so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior
	require.NotNil(t, b, "behavior: unset, the HPA keeps N replicas 300 s after the backlog is gone")
	maxPolicy := autoscalingv2.MaxChangePolicySelect
	assert.Equal(t, &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptrTo(int32(s.ScaleUpStabilizationSeconds)),
		SelectPolicy:               &maxPolicy,
		Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		},
	}, b.ScaleUp, "scaleUp")
	assert.Equal(t, &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptrTo(int32(s.ScaleDownStabilizationSeconds)),
		SelectPolicy:               &maxPolicy,
		Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}},
	}, b.ScaleDown, "scaleDown")
}

// assertAzureQueueTrigger checks the one azure-queue trigger (SPEC §7.6: accountName present).
func assertAzureQueueTrigger(t *testing.T, triggers []kedav1alpha1.ScaleTriggers, queueLength, activation int) {
	t.Helper()
	require.Len(t, triggers, 1)
	tr := triggers[0]
	assert.Equal(t, "azure-queue", tr.Type)
	assert.Equal(t, map[string]string{
		"queueName":             "aws2azmsgs",
		"accountName":           "storaksdemox7k2p9",
		"queueLength":           strconv.Itoa(queueLength),
		"activationQueueLength": strconv.Itoa(activation),
		"queueLengthStrategy":   "all",
		"cloud":                 "AzurePublicCloud",
	}, tr.Metadata, "trigger metadata")
	require.NotNil(t, tr.AuthenticationRef, "authenticationRef")
	assert.Equal(t, "keda-az-credentials", tr.AuthenticationRef.Name)
	assert.NoError(t, kedav1alpha1.ValidateTriggers(triggers))
}

func TestScaledJobArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"defaults", func(*ConsumerSettings) {}},
		{"custom job tuning", func(s *ConsumerSettings) {
			s.JobQueueLength, s.JobMaxReplicas, s.JobSuccessfulHistoryLimit, s.JobFailedHistoryLimit = 200, 3, 0, 1
			s.JobScalingStrategy, s.JobActiveDeadlineSeconds, s.JobBackoffLimit = "eager", 1800, 0
		}},
		{"custom pool", func(s *ConsumerSettings) { s.NodePoolName = "batch" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ScaleMode = ScaleModeScaledJob
			tt.mutate(&s)
			require.NoError(t, s.Validate())
			sj := renderScaledJob(t, s)

			assert.Equal(t, s.ScaledJobName, sj.Name)
			assert.Equal(t, "aqs-demo", sj.Namespace)
			spec := sj.Spec
			assert.Equal(t, ptrTo(int32(0)), spec.MinReplicaCount)
			assert.Equal(t, ptrTo(int32(s.JobMaxReplicas)), spec.MaxReplicaCount, "maxReplicaCount")
			assert.Equal(t, ptrTo(int32(s.PollingInterval)), spec.PollingInterval, "pollingInterval")
			assert.Equal(t, ptrTo(int32(s.JobSuccessfulHistoryLimit)), spec.SuccessfulJobsHistoryLimit)
			assert.Equal(t, ptrTo(int32(s.JobFailedHistoryLimit)), spec.FailedJobsHistoryLimit)
			assert.Equal(t, s.JobScalingStrategy, spec.ScalingStrategy.Strategy, "scalingStrategy")
			assert.Equal(t, "gradual", spec.Rollout.Strategy, "rollout keeps running jobs")
			assertAzureQueueTrigger(t, spec.Triggers, s.JobQueueLength, s.ActivationQueueLength)

			job := spec.JobTargetRef
			require.NotNil(t, job, "jobTargetRef")
			assert.Equal(t, ptrTo(int32(1)), job.Parallelism)
			assert.Equal(t, ptrTo(int32(1)), job.Completions)
			assert.Equal(t, ptrTo(int32(s.JobBackoffLimit)), job.BackoffLimit)
			assert.Equal(t, ptrTo(int64(s.JobActiveDeadlineSeconds)), job.ActiveDeadlineSeconds)
			assertConsumerPod(t, s, job.Template)
			assert.Equal(t, corev1.RestartPolicyNever, job.Template.Spec.RestartPolicy)
			c := job.Template.Spec.Containers[0]
			assert.Equal(t, "true", envMap(c)["CONSUMER_EXIT_WHEN_EMPTY"], "job pods drain and exit")
			assert.Nil(t, c.ReadinessProbe, "job pods need no readiness")
			for _, tsc := range job.Template.Spec.TopologySpreadConstraints {
				assert.Empty(t, tsc.MatchLabelKeys, "job pods have no pod-template-hash")
			}
		})
	}
}

func TestNodePoolArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"defaults", func(*ConsumerSettings) {}},
		{"custom", func(s *ConsumerSettings) {
			s.NodePoolName, s.NodePoolSKUFamily, s.NodePoolCPULimit, s.NodePoolConsolidateAfter = "consumer-pool", "E", "40", "5m"
		}},
		{"never consolidate", func(s *ConsumerSettings) { s.NodePoolConsolidateAfter = "Never" }},
		{"spot with on-demand fallback", func(s *ConsumerSettings) {
			s.AppCapacityTypes, s.TerminationGracePeriodSeconds = []string{CapacityTypeSpot, CapacityTypeOnDemand}, 30
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			require.NoError(t, s.Validate())
			np := decodeStrict[karpv1.NodePool](t, "node pool", renderArgs(t, karpenterAPIVersion, "NodePool", nodePoolArgs(s, nil)))
			assertNodePool(t, s, np)
			assert.Empty(t, np.Spec.Disruption.Budgets, "no maintenance window: Karpenter's default budget")
		})
	}
}

// assertNodePool checks the app NodePool against its settings.
func assertNodePool(t *testing.T, s ConsumerSettings, np karpv1.NodePool) {
	t.Helper()
	assert.Equal(t, s.NodePoolName, np.Name)
	assert.NotEqual(t, "default", np.Name, "never rewrite AKS's default NodePool")
	assert.Empty(t, np.Namespace, "NodePool is cluster-scoped")

	tmpl := np.Spec.Template.Spec
	assert.Equal(t, []corev1.Taint{{Key: "deployment", Value: s.NodePoolName, Effect: corev1.TaintEffectNoSchedule}}, tmpl.Taints)
	reqs := map[string][]string{}
	for _, r := range tmpl.Requirements {
		assert.Equal(t, corev1.NodeSelectorOpIn, r.Operator, "requirement %s operator", r.Key)
		reqs[r.Key] = r.Values
	}
	assert.Equal(t, map[string][]string{
		"kubernetes.io/os":               {"linux"},
		"kubernetes.io/arch":             {"amd64"},
		"karpenter.sh/capacity-type":     s.AppCapacityTypes,
		"karpenter.azure.com/sku-family": {s.NodePoolSKUFamily},
	}, reqs, "requirements")
	require.NotNil(t, tmpl.NodeClassRef)
	assert.Equal(t, karpv1.NodeClassReference{Group: "karpenter.azure.com", Kind: "AKSNodeClass", Name: "default"}, *tmpl.NodeClassRef)

	cpu := np.Spec.Limits[corev1.ResourceCPU]
	assert.True(t, resource.MustParse(s.NodePoolCPULimit).Equal(cpu), "limits.cpu = %s", cpu.String())
	assert.Equal(t, karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized, np.Spec.Disruption.ConsolidationPolicy)
	if s.NodePoolConsolidateAfter == "Never" {
		assert.Nil(t, np.Spec.Disruption.ConsolidateAfter.Duration)
	} else {
		want, err := time.ParseDuration(s.NodePoolConsolidateAfter)
		require.NoError(t, err)
		require.NotNil(t, np.Spec.Disruption.ConsolidateAfter.Duration, "consolidateAfter")
		assert.Equal(t, want, *np.Spec.Disruption.ConsolidateAfter.Duration)
	}
	// Karpenter's own runtime validation (labels, taints, requirements).
	assert.NoError(t, np.RuntimeValidate(context.Background()))
}

// With spot allowed, the pod tolerates AKS's spot taint (in both modes); on-demand only, it
// does not, and nothing else in the pod changes.
func TestSpotToleration(t *testing.T) {
	spot := corev1.Toleration{Key: "kubernetes.azure.com/scalesetpriority", Operator: corev1.TolerationOpEqual, Value: "spot", Effect: corev1.TaintEffectNoSchedule}
	for _, mode := range []string{ScaleModeScaledObject, ScaleModeScaledJob} {
		s := DefaultConsumerSettings()
		onDemand := decodePodTemplate(t, s, mode)
		assert.NotContains(t, onDemand.Spec.Tolerations, spot, "%s, on-demand: no spot toleration", mode)

		s.AppCapacityTypes, s.TerminationGracePeriodSeconds = []string{CapacityTypeSpot, CapacityTypeOnDemand}, 30
		require.NoError(t, s.Validate())
		withSpot := decodePodTemplate(t, s, mode)
		assert.Contains(t, withSpot.Spec.Tolerations, spot, "%s, spot: tolerates the spot taint", mode)
		assert.Len(t, withSpot.Spec.Tolerations, len(onDemand.Spec.Tolerations)+1)
		assert.Equal(t, int64(30), *withSpot.Spec.TerminationGracePeriodSeconds)
	}
}

// Issue 23 item 4: with a maintenance window, voluntary disruption (drift, such as a new node
// image NAP picked up in the window, and consolidating underutilized nodes) is blocked from the
// window's end to its next start; Karpenter's own validation accepts the budgets.
func TestNodePoolDisruptionBudgets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		window   MaintenanceWindow
		schedule string // of the blocking budget, UTC
		duration string
	}{
		{"prod: Sunday 02:00-06:00 UTC", MaintenanceWindow{DayOfWeek: "Sunday", StartTime: "02:00", DurationHours: 4, UtcOffset: "+00:00", IntervalWeeks: 1}, "0 6 * * 0", "164h"},
		{"ahead of UTC, across midnight", MaintenanceWindow{DayOfWeek: "Monday", StartTime: "23:30", DurationHours: 5, UtcOffset: "+02:00"}, "30 2 * * 2", "163h"},
		{"behind UTC, into the next week", MaintenanceWindow{DayOfWeek: "Saturday", StartTime: "22:00", DurationHours: 24, UtcOffset: "-05:00"}, "0 3 * * 1", "144h"},
		{"no offset, Saturday", MaintenanceWindow{DayOfWeek: "Saturday", StartTime: "20:15", DurationHours: 6}, "15 2 * * 0", "162h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.window.Validate())
			s := DefaultConsumerSettings()
			np := decodeStrict[karpv1.NodePool](t, "node pool", renderArgs(t, karpenterAPIVersion, "NodePool", nodePoolArgs(s, &tc.window)))
			assertNodePool(t, s, np)
			require.Len(t, np.Spec.Disruption.Budgets, 2)
			block, rest := np.Spec.Disruption.Budgets[0], np.Spec.Disruption.Budgets[1]
			assert.Equal(t, "0", block.Nodes)
			assert.Equal(t, []karpv1.DisruptionReason{karpv1.DisruptionReasonDrifted, karpv1.DisruptionReasonUnderutilized}, block.Reasons)
			require.NotNil(t, block.Schedule)
			assert.Equal(t, tc.schedule, *block.Schedule)
			require.NotNil(t, block.Duration)
			assert.Equal(t, tc.duration, block.Duration.Duration.String()[:len(tc.duration)])
			assert.Equal(t, "10%", rest.Nodes, "Karpenter's own default, in the window and for empty nodes")
			assert.Nil(t, rest.Schedule)
			assert.Empty(t, rest.Reasons)

			// The window's end plus the blocking duration lands on its next start: 7 days in all.
			assert.Equal(t, 7*24*time.Hour, block.Duration.Duration+time.Duration(tc.window.DurationHours)*time.Hour)
		})
	}
}

// A ScaledJob's pods are marked do-not-disrupt, so consolidation does not cut a Job off mid-batch;
// the Deployment's are not (they drain on SIGTERM, and consolidation must be able to move them).
func TestScaledJobPodsAreNotDisrupted(t *testing.T) {
	s := DefaultConsumerSettings()
	job := consumerPodTemplate(s, testInputs(), ScaleModeScaledJob)
	dep := consumerPodTemplate(s, testInputs(), ScaleModeScaledObject)
	assert.Equal(t, pulumi.StringMap{DoNotDisruptAnnotation: pulumi.String("true")}, job.Metadata.(*k8smetav1.ObjectMetaArgs).Annotations)
	assert.Nil(t, dep.Metadata.(*k8smetav1.ObjectMetaArgs).Annotations)
}
