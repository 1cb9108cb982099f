package components

import (
	"fmt"
	"strconv"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The pure builders: settings and inputs in, Pulumi resource args out. No context, no resources
// registered; they hold the decisions and are table-tested without the engine.

// Fixed facts of the consumer container and of the platform it runs on.
const (
	consumerContainerName = "consumer"
	httpPortName          = "http"
	httpPort              = 8080
	livenessPath          = "/healthz"
	readinessPath         = "/readyz"
	// nonRootUID is distroless's "nonroot" user, the one the consumer image runs as.
	nonRootUID = 65532

	// workloadIdentityUseLabel makes the Azure workload identity webhook inject the federated token.
	workloadIdentityUseLabel = "azure.workload.identity/use"
	// workloadIdentityClientIDAnnotation on the service account names the identity to federate.
	workloadIdentityClientIDAnnotation = "azure.workload.identity/client-id"

	// karpenterNodePoolLabel is the label Karpenter puts on every node of a NodePool.
	karpenterNodePoolLabel = "karpenter.sh/nodepool"
	// appPoolTaintKey is the key of the app pool's taint `deployment=<pool>:NoSchedule`.
	appPoolTaintKey = "deployment"

	kedaAPIVersion = "keda.sh/v1alpha1"
	// AzureQueueScalerType is KEDA's scaler for Azure Storage queues, on both targets.
	AzureQueueScalerType = "azure-queue"
	karpenterAPIVersion  = "karpenter.sh/v1"
)

// Environment variables the consumer program reads. Renamed here, in one place, if the program's
// names change.
const (
	envQueueName          = "AZURE_QUEUE_NAME"
	envStorageAccountName = "AZURE_STORAGE_ACCOUNT_NAME"
	envTableName          = "AZURE_TABLE_NAME"
	envConcurrency        = "CONSUMER_CONCURRENCY"
	envBatchSize          = "CONSUMER_BATCH_SIZE"
	envVisibilityTimeout  = "CONSUMER_VISIBILITY_TIMEOUT"
	envMaxDeliveries      = "CONSUMER_MAX_DELIVERIES"
	// envHTTPAddr is where the consumer serves /healthz, /readyz and /metrics: the container port.
	envHTTPAddr = "CONSUMER_HTTP_ADDR"
	// envDrainTimeout bounds the consumer's drain after SIGTERM; derived from the grace period.
	envDrainTimeout = "CONSUMER_DRAIN_TIMEOUT"
	// envExitWhenEmpty makes the consumer drain the queue and exit 0 (ScaledJob mode).
	envExitWhenEmpty = "CONSUMER_EXIT_WHEN_EMPTY"
	// envGoMemLimit is the Go runtime's soft memory limit, set below the container limit.
	envGoMemLimit = "GOMEMLIMIT"
)

// consumerInputs are the values only known at deploy time (outputs of other resources).
type consumerInputs struct {
	// Namespace is the Namespace resource's output name, so namespaced objects follow it.
	Namespace          pulumi.StringInput
	StorageAccountName pulumi.StringInput
	QueueName          pulumi.StringInput
	TableName          pulumi.StringInput
	// ClientID is the workload identity's client (application) id.
	ClientID pulumi.StringInput
	Image    pulumi.StringInput
	// ServiceAccountName is the ServiceAccount resource's output name.
	ServiceAccountName pulumi.StringInput
	// TriggerAuthenticationName is the TriggerAuthentication's output name.
	TriggerAuthenticationName pulumi.StringInput
}

// commonLabels go on every object the component creates.
func commonLabels() pulumi.StringMap {
	return pulumi.StringMap{
		"app.kubernetes.io/name":       pulumi.String("aqs-consumer"),
		"app.kubernetes.io/part-of":    pulumi.String("aks-edw"),
		"app.kubernetes.io/managed-by": pulumi.String("pulumi"),
	}
}

// namespaceArgs: the workload's namespace, enforcing the restricted Pod Security Standard (the
// consumer pod meets it, so a regression in its security context fails at admission).
func namespaceArgs(s ConsumerSettings) *corev1.NamespaceArgs {
	labels := commonLabels()
	labels["pod-security.kubernetes.io/enforce"] = pulumi.String("restricted")
	labels["pod-security.kubernetes.io/enforce-version"] = pulumi.String("latest")
	return &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:   pulumi.String(s.Namespace),
			Labels: labels,
		},
	}
}

// serviceAccountArgs: the pods' identity, federated with the workload identity through the
// client-id annotation (the client id, not the principal id).
func serviceAccountArgs(s ConsumerSettings, namespace, clientID pulumi.StringInput) *corev1.ServiceAccountArgs {
	return &corev1.ServiceAccountArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.ServiceAccountName),
			Namespace: namespace,
			Labels:    commonLabels(),
			Annotations: pulumi.StringMap{
				workloadIdentityClientIDAnnotation: clientID,
			},
		},
	}
}

// podLabels are the consumer pods' labels: the selector label plus the workload identity opt-in.
func podLabels(s ConsumerSettings) pulumi.StringMap {
	labels := commonLabels()
	labels["app"] = pulumi.String(s.AppLabel)
	labels[workloadIdentityUseLabel] = pulumi.String("true")
	return labels
}

// selectorLabels select the consumer pods (immutable on a Deployment: keep it to the seed's label).
func selectorLabels(s ConsumerSettings) pulumi.StringMap {
	return pulumi.StringMap{"app": pulumi.String(s.AppLabel)}
}

// envVar is one environment variable of the consumer container, in neither platform's types:
// consumerEnvVars decides the list, and each target turns it into its own container spec.
type envVar struct {
	Name  string
	Value pulumi.StringInput
}

// consumerEnvVars is the consumer container's environment on either target. memoryLimit is the
// container's memory cap (GOMEMLIMIT is 90% of it): the pod's limit on AKS, the container's
// size on Container Apps.
func consumerEnvVars(s ConsumerSettings, queueName, accountName, tableName pulumi.StringInput, mode, memoryLimit string) []envVar {
	env := []envVar{
		{envQueueName, queueName},
		{envStorageAccountName, accountName},
		{envTableName, tableName},
		{envConcurrency, pulumi.String(strconv.Itoa(s.ConsumerConcurrency))},
		{envBatchSize, pulumi.String(strconv.Itoa(s.ConsumerBatchSize))},
		{envVisibilityTimeout, pulumi.String(s.ConsumerVisibilityTimeout)},
		{envMaxDeliveries, pulumi.String(strconv.Itoa(s.ConsumerMaxDeliveries))},
		{envHTTPAddr, pulumi.String(fmt.Sprintf(":%d", httpPort))},
		{envDrainTimeout, pulumi.String(DrainTimeout(s.TerminationGracePeriodSeconds).String())},
	}
	if limit, ok := goMemLimit(memoryLimit); ok {
		env = append(env, envVar{envGoMemLimit, pulumi.String(limit)})
	}
	if mode == ScaleModeScaledJob {
		env = append(env, envVar{envExitWhenEmpty, pulumi.String("true")})
	}
	return env
}

// consumerEnv is the consumer container's environment on AKS.
func consumerEnv(s ConsumerSettings, in consumerInputs, mode string) corev1.EnvVarArray {
	var env corev1.EnvVarArray
	for _, v := range consumerEnvVars(s, in.QueueName, in.StorageAccountName, in.TableName, mode, s.MemoryLimit) {
		env = append(env, corev1.EnvVarArgs{Name: pulumi.String(v.Name), Value: v.Value})
	}
	return env
}

// DrainTimeout is how long the consumer may finish in-flight messages after SIGTERM: the pod's
// grace period less a margin for flushing logs and exiting before the kubelet's SIGKILL (10 s, or
// half of a short grace period), at most the consumer's 10-minute ceiling.
func DrainTimeout(graceSeconds int) time.Duration {
	margin := 10
	if graceSeconds < 2*margin {
		margin = graceSeconds / 2
	}
	d := time.Duration(graceSeconds-margin) * time.Second
	if graceSeconds == 1 {
		d = 500 * time.Millisecond
	}
	return min(d, 10*time.Minute)
}

// goMemLimit is 90% of the container memory limit in MiB, the usual headroom that lets the Go
// garbage collector work harder before the kernel OOM-kills the pod.
func goMemLimit(memoryLimit string) (string, bool) {
	q, err := resource.ParseQuantity(memoryLimit)
	if err != nil || q.Value() <= 0 {
		return "", false
	}
	mib := q.Value() * 9 / 10 / (1 << 20)
	if mib < 1 {
		return "", false
	}
	return fmt.Sprintf("%dMiB", mib), true
}

// ConsumerContainerName is the consumer container's name in its pods (the alert rules select
// its kube-state-metrics series by it).
const ConsumerContainerName = consumerContainerName

// spotTaintKey is the taint AKS puts on spot nodes (kubernetes.azure.com/scalesetpriority=spot).
const spotTaintKey = "kubernetes.azure.com/scalesetpriority"

// consumerPodTemplate is the consumer pod, shared by the Deployment and the ScaledJob's jobs.
func consumerPodTemplate(s ConsumerSettings, in consumerInputs, mode string) *corev1.PodTemplateSpecArgs {
	container := corev1.ContainerArgs{
		Name:  pulumi.String(consumerContainerName),
		Image: in.Image,
		Env:   consumerEnv(s, in, mode),
		Ports: corev1.ContainerPortArray{
			corev1.ContainerPortArgs{Name: pulumi.String(httpPortName), ContainerPort: pulumi.Int(httpPort), Protocol: pulumi.String("TCP")},
		},
		LivenessProbe: &corev1.ProbeArgs{
			HttpGet:          &corev1.HTTPGetActionArgs{Path: pulumi.String(livenessPath), Port: pulumi.String(httpPortName)},
			PeriodSeconds:    pulumi.Int(10),
			TimeoutSeconds:   pulumi.Int(2),
			FailureThreshold: pulumi.Int(3),
		},
		Resources: &corev1.ResourceRequirementsArgs{
			Requests: pulumi.StringMap{"cpu": pulumi.String(s.CPURequest), "memory": pulumi.String(s.MemoryRequest)},
			Limits:   pulumi.StringMap{"cpu": pulumi.String(s.CPULimit), "memory": pulumi.String(s.MemoryLimit)},
		},
		SecurityContext: &corev1.SecurityContextArgs{
			RunAsNonRoot:             pulumi.Bool(true),
			RunAsUser:                pulumi.Int(nonRootUID),
			RunAsGroup:               pulumi.Int(nonRootUID),
			ReadOnlyRootFilesystem:   pulumi.Bool(true),
			AllowPrivilegeEscalation: pulumi.Bool(false),
			Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
			SeccompProfile:           &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
		},
		VolumeMounts: corev1.VolumeMountArray{
			corev1.VolumeMountArgs{Name: pulumi.String("tmp"), MountPath: pulumi.String("/tmp")},
		},
	}
	// A job's pod is not behind anything that routes to ready pods; readiness only matters for
	// the Deployment (rollouts, PDB).
	if mode != ScaleModeScaledJob {
		container.ReadinessProbe = &corev1.ProbeArgs{
			HttpGet:          &corev1.HTTPGetActionArgs{Path: pulumi.String(readinessPath), Port: pulumi.String(httpPortName)},
			PeriodSeconds:    pulumi.Int(5),
			TimeoutSeconds:   pulumi.Int(2),
			FailureThreshold: pulumi.Int(2),
		}
	}

	spread := func(topologyKey string) corev1.TopologySpreadConstraintArgs {
		c := corev1.TopologySpreadConstraintArgs{
			MaxSkew:     pulumi.Int(1),
			TopologyKey: pulumi.String(topologyKey),
			// ScheduleAnyway: DoNotSchedule leaves pods pending on a single-zone dev cluster.
			WhenUnsatisfiable: pulumi.String("ScheduleAnyway"),
			LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: selectorLabels(s)},
		}
		if mode != ScaleModeScaledJob {
			// Spread each rollout's pods on their own, not against the old ReplicaSet's.
			c.MatchLabelKeys = pulumi.StringArray{pulumi.String("pod-template-hash")}
		}
		return c
	}

	podSpec := &corev1.PodSpecArgs{
		ServiceAccountName: in.ServiceAccountName,
		// The workload identity webhook projects its token itself; the default (true) is kept
		// explicit so nobody "hardens" it to false and breaks the projected-token setup.
		AutomountServiceAccountToken:  pulumi.Bool(true),
		TerminationGracePeriodSeconds: pulumi.Int(s.TerminationGracePeriodSeconds),
		SecurityContext: &corev1.PodSecurityContextArgs{
			RunAsNonRoot:   pulumi.Bool(true),
			RunAsUser:      pulumi.Int(nonRootUID),
			RunAsGroup:     pulumi.Int(nonRootUID),
			FsGroup:        pulumi.Int(nonRootUID),
			SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
		},
		Containers: corev1.ContainerArray{container},
		Volumes: corev1.VolumeArray{
			corev1.VolumeArgs{
				Name:     pulumi.String("tmp"),
				EmptyDir: &corev1.EmptyDirVolumeSourceArgs{SizeLimit: pulumi.String("16Mi")},
			},
		},
		// Only the app NodePool's nodes: Karpenter labels each node with its pool's name and
		// provisions from that pool for pods that select it.
		NodeSelector: pulumi.StringMap{
			karpenterNodePoolLabel: pulumi.String(s.NodePoolName),
			"kubernetes.io/os":     pulumi.String("linux"),
		},
		Tolerations: corev1.TolerationArray{
			corev1.TolerationArgs{
				Key: pulumi.String(appPoolTaintKey), Operator: pulumi.String("Equal"),
				Value: pulumi.String(s.NodePoolName), Effect: pulumi.String("NoSchedule"),
			},
			// Fail over quickly when a node dies (Kubernetes' default is 300 s).
			corev1.TolerationArgs{
				Key: pulumi.String("node.kubernetes.io/unreachable"), Operator: pulumi.String("Exists"),
				Effect: pulumi.String("NoExecute"), TolerationSeconds: pulumi.Int(s.NodeFailureTolerationSeconds),
			},
			corev1.TolerationArgs{
				Key: pulumi.String("node.kubernetes.io/not-ready"), Operator: pulumi.String("Exists"),
				Effect: pulumi.String("NoExecute"), TolerationSeconds: pulumi.Int(s.NodeFailureTolerationSeconds),
			},
		},
		// Across zones only. Karpenter treats a ScheduleAnyway spread as required until a pod
		// cannot be placed otherwise, and a new node always can: a spread on the hostname makes
		// it launch one node per pod (make e2e saw 5 NodeClaims for a burst of 5 pods, 4 of them
		// left empty; docs/cloud-notes.md). On the zone it launches one node per zone.
		TopologySpreadConstraints: corev1.TopologySpreadConstraintArray{
			spread("topology.kubernetes.io/zone"),
		},
	}
	if s.AllowsSpot() {
		// AKS taints the spot nodes of its own node pools with this; whether NAP does on its
		// spot machines is unconfirmed (docs/cloud-notes.md). Tolerating it costs nothing.
		podSpec.Tolerations = append(podSpec.Tolerations.(corev1.TolerationArray), corev1.TolerationArgs{
			Key: pulumi.String(spotTaintKey), Operator: pulumi.String("Equal"),
			Value: pulumi.String("spot"), Effect: pulumi.String("NoSchedule"),
		})
	}
	if mode == ScaleModeScaledJob {
		// The Job controller retries failed pods (backoffLimit); the pod itself must not restart.
		podSpec.RestartPolicy = pulumi.String("Never")
	}
	meta := &metav1.ObjectMetaArgs{Labels: podLabels(s)}
	if mode == ScaleModeScaledJob {
		// A Job's pod drains its share of the queue and exits; consolidating its node would
		// cut it off mid-batch and have KEDA count the Job again. Karpenter leaves the node of
		// a do-not-disrupt pod out of consolidation and drift (not out of a spot eviction or an
		// expiry: docs/cloud-notes.md).
		meta.Annotations = pulumi.StringMap{DoNotDisruptAnnotation: pulumi.String("true")}
	}
	return &corev1.PodTemplateSpecArgs{Metadata: meta, Spec: podSpec}
}

// DoNotDisruptAnnotation keeps Karpenter from disrupting the node of a pod that carries it.
const DoNotDisruptAnnotation = "karpenter.sh/do-not-disrupt"

// deploymentArgs: the long-running consumer (ScaledObject mode). spec.replicas is left out on
// purpose: KEDA's HPA owns it, and a value here would reset the scale on every `pulumi up`.
func deploymentArgs(s ConsumerSettings, in consumerInputs) *appsv1.DeploymentArgs {
	return &appsv1.DeploymentArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.DeploymentName),
			Namespace: in.Namespace,
			Labels:    commonLabels(),
		},
		Spec: &appsv1.DeploymentSpecArgs{
			Selector: &metav1.LabelSelectorArgs{MatchLabels: selectorLabels(s)},
			Strategy: &appsv1.DeploymentStrategyArgs{
				Type: pulumi.String("RollingUpdate"),
				RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{
					// Never drop below the scale KEDA asked for while rolling.
					MaxUnavailable: pulumi.Int(0),
					MaxSurge:       pulumi.String("25%"),
				},
			},
			Template: consumerPodTemplate(s, in, ScaleModeScaledObject),
		},
	}
}

// podDisruptionBudgetArgs: at most one consumer pod evicted at a time (node drains, Karpenter
// consolidation). maxUnavailable rather than minAvailable so it also works at 0 replicas.
// AlwaysAllow lets a drain evict pods that are not ready (crash-looping) instead of blocking.
func podDisruptionBudgetArgs(s ConsumerSettings, namespace pulumi.StringInput) *policyv1.PodDisruptionBudgetArgs {
	return &policyv1.PodDisruptionBudgetArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.DeploymentName + "-pdb"),
			Namespace: namespace,
			Labels:    commonLabels(),
		},
		Spec: &policyv1.PodDisruptionBudgetSpecArgs{
			MaxUnavailable:             pulumi.Int(1),
			Selector:                   &metav1.LabelSelectorArgs{MatchLabels: selectorLabels(s)},
			UnhealthyPodEvictionPolicy: pulumi.String("AlwaysAllow"),
		},
	}
}

// triggerAuthenticationArgs: KEDA reads the queue depth as the workload identity, through the
// KEDA operator's own federated credential. identityId must be the client id.
func triggerAuthenticationArgs(s ConsumerSettings, namespace, clientID pulumi.StringInput) *apiextensions.CustomResourceArgs {
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(kedaAPIVersion),
		Kind:       pulumi.String("TriggerAuthentication"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.TriggerAuthenticationName),
			Namespace: namespace,
			Labels:    commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": pulumi.Map{
				"podIdentity": pulumi.Map{
					"provider":   pulumi.String("azure-workload"),
					"identityId": clientID,
				},
			},
		},
	}
}

// azureQueueMetadata is KEDA's azure-queue scaler metadata on the consumer's queue, the same on
// AKS (a trigger of the ScaledObject or ScaledJob) and Container Apps (a custom scale rule).
// queueLength is the target messages per replica (ScaledObject) or per job (ScaledJob).
func azureQueueMetadata(s ConsumerSettings, queueName, accountName pulumi.StringInput, queueLength int) pulumi.StringMap {
	return pulumi.StringMap{
		"queueName":             queueName,
		"accountName":           accountName,
		"queueLength":           pulumi.String(strconv.Itoa(queueLength)),
		"activationQueueLength": pulumi.String(strconv.Itoa(s.ActivationQueueLength)),
		// "all" (KEDA's default, explicit so nobody flips it): the depth counts in-flight
		// (invisible) messages, so a replica stays active while it works, and the ScaledJob's
		// "default" strategy, which subtracts running jobs, counts each message once. With
		// "visibleonly" both go wrong; docs/cloud-notes.md has KEDA's source for each.
		"queueLengthStrategy": pulumi.String(QueueLengthStrategy),
		"cloud":               pulumi.String("AzurePublicCloud"),
	}
}

// azureQueueTrigger is KEDA's azure-queue trigger on the consumer's queue, authenticated by the
// TriggerAuthentication.
func azureQueueTrigger(s ConsumerSettings, in consumerInputs, queueLength int) pulumi.Map {
	return pulumi.Map{
		"type":              pulumi.String(AzureQueueScalerType),
		"metadata":          azureQueueMetadata(s, in.QueueName, in.StorageAccountName, queueLength),
		"authenticationRef": pulumi.Map{"name": in.TriggerAuthenticationName},
	}
}

// scaledObjectArgs: KEDA scales the Deployment on queue depth. deploymentName is the
// Deployment's output name, so the ScaledObject follows the Deployment.
func scaledObjectArgs(s ConsumerSettings, in consumerInputs, deploymentName pulumi.StringInput) *apiextensions.CustomResourceArgs {
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(kedaAPIVersion),
		Kind:       pulumi.String("ScaledObject"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.ScaledObjectName),
			Namespace: in.Namespace,
			Labels:    commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": pulumi.Map{
				"scaleTargetRef": pulumi.Map{
					"apiVersion": pulumi.String("apps/v1"),
					"kind":       pulumi.String("Deployment"),
					"name":       deploymentName,
				},
				"minReplicaCount": pulumi.Int(s.MinReplicas),
				"maxReplicaCount": pulumi.Int(s.MaxReplicas),
				"pollingInterval": pulumi.Int(s.PollingInterval),
				"cooldownPeriod":  pulumi.Int(s.CooldownPeriod),
				"advanced": pulumi.Map{
					"horizontalPodAutoscalerConfig": pulumi.Map{"behavior": HPABehavior(s)},
				},
				"triggers": pulumi.Array{azureQueueTrigger(s, in, s.QueueLength)},
			},
		},
	}
}

// scaledJobArgs: KEDA starts one Job per jobQueueLength messages; each job drains the queue
// (CONSUMER_EXIT_WHEN_EMPTY) and exits. The "default" scaling strategy subtracts running jobs
// from the queue's count, right for Azure queues, whose depth includes in-flight messages.
// Rollout "gradual" keeps running jobs when the ScaledJob changes instead of killing them.
func scaledJobArgs(s ConsumerSettings, in consumerInputs) *apiextensions.CustomResourceArgs {
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(kedaAPIVersion),
		Kind:       pulumi.String("ScaledJob"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.ScaledJobName),
			Namespace: in.Namespace,
			Labels:    commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": pulumi.Map{
				"jobTargetRef": &batchv1.JobSpecArgs{
					Parallelism:           pulumi.Int(1),
					Completions:           pulumi.Int(1),
					BackoffLimit:          pulumi.Int(s.JobBackoffLimit),
					ActiveDeadlineSeconds: pulumi.Int(s.JobActiveDeadlineSeconds),
					Template:              consumerPodTemplate(s, in, ScaleModeScaledJob),
				},
				"pollingInterval":            pulumi.Int(s.PollingInterval),
				"minReplicaCount":            pulumi.Int(0),
				"maxReplicaCount":            pulumi.Int(s.JobMaxReplicas),
				"successfulJobsHistoryLimit": pulumi.Int(s.JobSuccessfulHistoryLimit),
				"failedJobsHistoryLimit":     pulumi.Int(s.JobFailedHistoryLimit),
				"scalingStrategy":            pulumi.Map{"strategy": pulumi.String(s.JobScalingStrategy)},
				"rollout":                    pulumi.Map{"strategy": pulumi.String("gradual")},
				"triggers":                   pulumi.Array{azureQueueTrigger(s, in, s.JobQueueLength)},
			},
		},
	}
}

// nodePoolArgs: the Karpenter (AKS node autoprovisioning) NodePool the consumer runs on. Its
// own name, never AKS's "default"; tainted so only the consumer lands there; cluster-scoped.
func nodePoolArgs(s ConsumerSettings, window *MaintenanceWindow) *apiextensions.CustomResourceArgs {
	disruption := pulumi.Map{
		"consolidationPolicy": pulumi.String("WhenEmptyOrUnderutilized"),
		"consolidateAfter":    pulumi.String(s.NodePoolConsolidateAfter),
	}
	if budgets := DisruptionBudgets(window); budgets != nil {
		arr := pulumi.Array{}
		for _, b := range budgets {
			m := pulumi.Map{"nodes": pulumi.String(b.Nodes)}
			if b.Schedule != "" {
				m["schedule"], m["duration"] = pulumi.String(b.Schedule), pulumi.String(b.Duration)
			}
			if len(b.Reasons) > 0 {
				m["reasons"] = pulumi.ToStringArray(b.Reasons)
			}
			arr = append(arr, m)
		}
		disruption["budgets"] = arr
	}
	requirement := func(key string, values ...string) pulumi.Map {
		vs := pulumi.StringArray{}
		for _, v := range values {
			vs = append(vs, pulumi.String(v))
		}
		return pulumi.Map{"key": pulumi.String(key), "operator": pulumi.String("In"), "values": vs}
	}
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(karpenterAPIVersion),
		Kind:       pulumi.String("NodePool"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:   pulumi.String(s.NodePoolName),
			Labels: commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": pulumi.Map{
				"template": pulumi.Map{
					"metadata": pulumi.Map{
						"labels": pulumi.StringMap{"aks-edw/workload": pulumi.String("queue-consumer")},
					},
					"spec": pulumi.Map{
						"taints": pulumi.Array{pulumi.Map{
							"key":    pulumi.String(appPoolTaintKey),
							"value":  pulumi.String(s.NodePoolName),
							"effect": pulumi.String("NoSchedule"),
						}},
						"requirements": pulumi.Array{
							requirement("kubernetes.io/os", "linux"),
							requirement("kubernetes.io/arch", "amd64"),
							requirement("karpenter.sh/capacity-type", s.AppCapacityTypes...),
							requirement("karpenter.azure.com/sku-family", s.NodePoolSKUFamily),
						},
						"nodeClassRef": pulumi.Map{
							"group": pulumi.String("karpenter.azure.com"),
							"kind":  pulumi.String("AKSNodeClass"),
							"name":  pulumi.String("default"),
						},
					},
				},
				"limits":     pulumi.Map{"cpu": pulumi.String(s.NodePoolCPULimit)},
				"disruption": disruption,
			},
		},
	}
}
