package components

import (
	"errors"
	"fmt"
	"math"

	app "github.com/pulumi/pulumi-azure-native-sdk/app/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/monitor/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The pure builders of the Container Apps target: settings and inputs in, azure-native args out,
// table-tested without the engine (containerapps_objects_test.go). docs/cloud-notes.md
// ("Azure Container Apps") has the sources for each fact below.

// Fixed facts of the Container Apps target.
const (
	// ContainerAppsWorkloadProfile is the serverless profile every workload-profiles environment
	// has: billed per second of vCPU and memory a replica holds, nothing while scaled to zero.
	ContainerAppsWorkloadProfile = "Consumption"
	// containerAppsCPUStep is the Consumption profile's CPU granularity (0.25 vCPU), and each
	// step comes with containerAppsMiBPerStep of memory (2 GiB per vCPU).
	containerAppsCPUStep    = 0.25
	containerAppsMiBPerStep = 512
	// containerAppsMaxSteps is the largest Consumption size: 4 vCPU, 8 GiB.
	containerAppsMaxSteps = 16
	// ContainerAppsMaxReplicas is the most replicas a Container App may scale to.
	ContainerAppsMaxReplicas = 1000
	// ContainerAppsMaxGraceSeconds is the longest termination grace period an app may have.
	ContainerAppsMaxGraceSeconds = 600
	// ContainerAppsJobGraceSeconds is the grace period a Container Apps job's replica gets
	// (jobs have no setting for it): the consumer's drain is sized for it in ScaledJob mode.
	ContainerAppsJobGraceSeconds = 30
	// containerAppsScaleRuleName names the one scale rule of the app or job.
	containerAppsScaleRuleName = "azure-queue"
	// envAzureClientID makes DefaultAzureCredential use the user-assigned identity (on AKS the
	// workload identity webhook sets it).
	envAzureClientID = "AZURE_CLIENT_ID"
	// ContainerAppsSubnetDelegation is the service an environment's infrastructure subnet is
	// delegated to (workload-profiles environments).
	ContainerAppsSubnetDelegation = "Microsoft.App/environments"
	// userAssigned is the managed identity type of the app and the job.
	userAssigned = "UserAssigned"
)

// ContainerAppsSize is the consumer container's size on the Consumption profile: the smallest
// size Container Apps offers (0.25 vCPU steps with 2 GiB per vCPU, at most 4 vCPU and 8 GiB)
// that covers cpuRequest and memoryRequest. A container's size there is both its reservation and
// its cap, so the limits (cpuLimit, memoryLimit) have no counterpart.
type ContainerAppsSize struct {
	// CPU is in vCPU (0.25 to 4).
	CPU float64
	// MemoryMiB is the container's memory in MiB (512 to 8192).
	MemoryMiB int64
}

// Memory is the size's memory as Container Apps writes it ("0.5Gi", "1Gi", ...).
func (z ContainerAppsSize) Memory() string {
	return fmt.Sprintf("%gGi", float64(z.MemoryMiB)/1024)
}

// String is "0.25 vCPU / 0.5Gi".
func (z ContainerAppsSize) String() string { return fmt.Sprintf("%g vCPU / %s", z.CPU, z.Memory()) }

// ContainerAppsSizeFor returns the container size for the settings' requests, or an error naming
// cpuRequest or memoryRequest when they need more than the largest Consumption size.
func ContainerAppsSizeFor(s ConsumerSettings) (ContainerAppsSize, error) {
	cpu, err := resource.ParseQuantity(s.CPURequest)
	if err != nil {
		return ContainerAppsSize{}, fmt.Errorf("cpuRequest (%q) must be a Kubernetes quantity: %v", s.CPURequest, err)
	}
	mem, err := resource.ParseQuantity(s.MemoryRequest)
	if err != nil {
		return ContainerAppsSize{}, fmt.Errorf("memoryRequest (%q) must be a Kubernetes quantity: %v", s.MemoryRequest, err)
	}
	cpuSteps := int64(math.Ceil(float64(cpu.MilliValue()) / (containerAppsCPUStep * 1000)))
	memSteps := int64(math.Ceil(float64(mem.Value()) / (containerAppsMiBPerStep << 20)))
	var errs []error
	if cpuSteps > containerAppsMaxSteps {
		errs = append(errs, fmt.Errorf("cpuRequest (%s) is more than the 4 vCPU a Container Apps Consumption replica can have", s.CPURequest))
	}
	if memSteps > containerAppsMaxSteps {
		errs = append(errs, fmt.Errorf("memoryRequest (%s) is more than the 8Gi a Container Apps Consumption replica can have", s.MemoryRequest))
	}
	if len(errs) > 0 {
		return ContainerAppsSize{}, errors.Join(errs...)
	}
	steps := max(cpuSteps, memSteps, 1)
	return ContainerAppsSize{CPU: float64(steps) * containerAppsCPUStep, MemoryMiB: steps * containerAppsMiBPerStep}, nil
}

// ValidateForContainerApps returns the settings' problems that only the Container Apps target has
// (each naming its key): the container size, the replica ceiling and the grace period.
func (s ConsumerSettings) ValidateForContainerApps() error {
	var errs []error
	if _, err := ContainerAppsSizeFor(s); err != nil {
		errs = append(errs, err)
	}
	if s.MaxReplicas > ContainerAppsMaxReplicas {
		errs = append(errs, fmt.Errorf("maxReplicas (%d) must be <= %d, the most replicas a Container App scales to", s.MaxReplicas, ContainerAppsMaxReplicas))
	}
	if s.TerminationGracePeriodSeconds > ContainerAppsMaxGraceSeconds {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds (%d) must be <= %d on Container Apps", s.TerminationGracePeriodSeconds, ContainerAppsMaxGraceSeconds))
	}
	return errors.Join(errs...)
}

// containerAppsInputs are the deploy-time values of the Container Apps target.
type containerAppsInputs struct {
	ResourceGroupName, Location   pulumi.StringInput
	StorageAccountName, QueueName pulumi.StringInput
	TableName                     pulumi.StringInput
	Image                         pulumi.StringInput
	RegistryServer                pulumi.StringInput
	IdentityID, ClientID          pulumi.StringInput
	EnvironmentID                 pulumi.StringInput
	Tags                          map[string]string
}

// managedEnvironmentArgs: a workload-profiles environment with only the Consumption profile. Its
// logs go to Azure Monitor, and a diagnostic setting routes them to the stack's Log Analytics
// workspace (environmentDiagnosticSettingArgs), so no workspace key is ever handed to it. With
// an infrastructure subnet it runs in the stack's VNet, internal: the consumer takes no inbound
// traffic.
func managedEnvironmentArgs(rg, location, name pulumi.StringInput, subnetID pulumi.StringInput, tags map[string]string) *app.ManagedEnvironmentArgs {
	args := &app.ManagedEnvironmentArgs{
		ResourceGroupName: rg,
		Location:          location,
		EnvironmentName:   name,
		WorkloadProfiles: app.WorkloadProfileArray{
			app.WorkloadProfileArgs{Name: pulumi.String(ContainerAppsWorkloadProfile), WorkloadProfileType: pulumi.String(ContainerAppsWorkloadProfile)},
		},
		AppLogsConfiguration: &app.AppLogsConfigurationArgs{Destination: pulumi.String("azure-monitor")},
		Tags:                 tagsInput(tags),
	}
	if subnetID != nil {
		args.VnetConfiguration = &app.VnetConfigurationArgs{InfrastructureSubnetId: subnetID, Internal: pulumi.Bool(true)}
	}
	return args
}

// environmentDiagnosticSettingArgs sends every log category of the environment (the consumer's
// console logs and the platform's system logs, scaling events included) to the workspace, in
// resource-specific tables.
func environmentDiagnosticSettingArgs(environmentID, workspaceID pulumi.StringInput) *monitor.DiagnosticSettingArgs {
	return &monitor.DiagnosticSettingArgs{
		ResourceUri:                 environmentID,
		WorkspaceId:                 workspaceID,
		LogAnalyticsDestinationType: pulumi.String("Dedicated"),
		Logs: monitor.LogSettingsArray{
			monitor.LogSettingsArgs{CategoryGroup: pulumi.String("allLogs"), Enabled: pulumi.Bool(true)},
		},
	}
}

// containerAppsIdentity attaches the stack's user-assigned identity to the app or job: the
// consumer, the scale rule and the registry pull all use it.
func containerAppsIdentity(in containerAppsInputs) *app.ManagedServiceIdentityArgs {
	return &app.ManagedServiceIdentityArgs{
		Type:                   pulumi.String(userAssigned),
		UserAssignedIdentities: pulumi.StringArray{in.IdentityID},
	}
}

// containerAppsRegistries pulls from the stack's registry with the identity (AcrPull), no
// password.
func containerAppsRegistries(in containerAppsInputs) app.RegistryCredentialsArray {
	return app.RegistryCredentialsArray{
		app.RegistryCredentialsArgs{Server: in.RegistryServer, Identity: in.IdentityID},
	}
}

// containerAppsContainer is the consumer container: the same image, environment and probes as
// on AKS, sized by ContainerAppsSizeFor. Container Apps has no security context, node selection
// or volumes of AKS's kind to set: its replicas run in its own sandbox.
func containerAppsContainer(s ConsumerSettings, in containerAppsInputs, mode string, size ContainerAppsSize) app.ContainerArgs {
	if mode == ScaleModeScaledJob {
		// A job's replica gets the platform's grace period, whatever terminationGracePeriodSeconds says.
		s.TerminationGracePeriodSeconds = ContainerAppsJobGraceSeconds
	}
	env := app.EnvironmentVarArray{
		app.EnvironmentVarArgs{Name: pulumi.String(envAzureClientID), Value: in.ClientID},
	}
	for _, v := range consumerEnvVars(s, in.QueueName, in.StorageAccountName, in.TableName, mode, fmt.Sprintf("%dMi", size.MemoryMiB)) {
		env = append(env, app.EnvironmentVarArgs{Name: pulumi.String(v.Name), Value: v.Value})
	}
	probes := app.ContainerAppProbeArray{
		app.ContainerAppProbeArgs{
			Type:             pulumi.String("Liveness"),
			HttpGet:          &app.ContainerAppProbeHttpGetArgs{Path: pulumi.String(livenessPath), Port: pulumi.Int(httpPort)},
			PeriodSeconds:    pulumi.Int(10),
			TimeoutSeconds:   pulumi.Int(2),
			FailureThreshold: pulumi.Int(3),
		},
	}
	if mode != ScaleModeScaledJob {
		probes = append(probes, app.ContainerAppProbeArgs{
			Type:             pulumi.String("Readiness"),
			HttpGet:          &app.ContainerAppProbeHttpGetArgs{Path: pulumi.String(readinessPath), Port: pulumi.Int(httpPort)},
			PeriodSeconds:    pulumi.Int(5),
			TimeoutSeconds:   pulumi.Int(2),
			FailureThreshold: pulumi.Int(2),
		})
	}
	return app.ContainerArgs{
		Name:      pulumi.String(consumerContainerName),
		Image:     in.Image,
		Env:       env,
		Probes:    probes,
		Resources: &app.ContainerResourcesArgs{Cpu: pulumi.Float64(size.CPU), Memory: pulumi.String(size.Memory())},
	}
}

// containerAppArgs: the consumer as a Container App (ScaledObject mode). Its scale rule is KEDA's
// azure-queue scaler with the AKS trigger's metadata, authenticated by the identity (the rule's
// `identity`; no auth secrets), and the same min/max, polling and cooldown. No ingress: the
// consumer takes no traffic.
func containerAppArgs(s ConsumerSettings, in containerAppsInputs, name pulumi.StringInput, size ContainerAppsSize) *app.ContainerAppArgs {
	return &app.ContainerAppArgs{
		ResourceGroupName:   in.ResourceGroupName,
		Location:            in.Location,
		ContainerAppName:    name,
		EnvironmentId:       in.EnvironmentID,
		WorkloadProfileName: pulumi.String(ContainerAppsWorkloadProfile),
		Identity:            containerAppsIdentity(in),
		Configuration: &app.ConfigurationArgs{
			ActiveRevisionsMode: pulumi.String("Single"),
			Registries:          containerAppsRegistries(in),
		},
		Template: &app.TemplateArgs{
			Containers:                    app.ContainerArray{containerAppsContainer(s, in, ScaleModeScaledObject, size)},
			TerminationGracePeriodSeconds: pulumi.Float64(float64(s.TerminationGracePeriodSeconds)),
			Scale: &app.ScaleArgs{
				MinReplicas:     pulumi.Int(s.MinReplicas),
				MaxReplicas:     pulumi.Int(s.MaxReplicas),
				PollingInterval: pulumi.Int(s.PollingInterval),
				CooldownPeriod:  pulumi.Int(s.CooldownPeriod),
				Rules: app.ScaleRuleArray{
					app.ScaleRuleArgs{
						Name: pulumi.String(containerAppsScaleRuleName),
						Custom: &app.CustomScaleRuleArgs{
							Type:     pulumi.String(AzureQueueScalerType),
							Metadata: azureQueueMetadata(s, in.QueueName, in.StorageAccountName, s.QueueLength),
							Identity: in.IdentityID,
						},
					},
				},
			},
		},
		Tags: tagsInput(in.Tags),
	}
}

// containerAppsJobArgs: the consumer as an event-driven Container Apps job (ScaledJob mode). Each
// execution runs one replica that drains the queue and exits (CONSUMER_EXIT_WHEN_EMPTY), as a
// ScaledJob's job does; executions start per jobQueueLength messages, at most jobMaxReplicas at
// once; jobActiveDeadlineSeconds and jobBackoffLimit become the replica's timeout and retries.
func containerAppsJobArgs(s ConsumerSettings, in containerAppsInputs, name pulumi.StringInput, size ContainerAppsSize) *app.JobArgs {
	return &app.JobArgs{
		ResourceGroupName:   in.ResourceGroupName,
		Location:            in.Location,
		JobName:             name,
		EnvironmentId:       in.EnvironmentID,
		WorkloadProfileName: pulumi.String(ContainerAppsWorkloadProfile),
		Identity:            containerAppsIdentity(in),
		Configuration: &app.JobConfigurationArgs{
			TriggerType:       pulumi.String("Event"),
			ReplicaTimeout:    pulumi.Int(s.JobActiveDeadlineSeconds),
			ReplicaRetryLimit: pulumi.Int(s.JobBackoffLimit),
			Registries:        containerAppsRegistries(in),
			EventTriggerConfig: &app.JobConfigurationEventTriggerConfigArgs{
				Parallelism:            pulumi.Int(1),
				ReplicaCompletionCount: pulumi.Int(1),
				Scale: &app.JobScaleArgs{
					MinExecutions:   pulumi.Int(0),
					MaxExecutions:   pulumi.Int(s.JobMaxReplicas),
					PollingInterval: pulumi.Int(s.PollingInterval),
					Rules: app.JobScaleRuleArray{
						app.JobScaleRuleArgs{
							Name:     pulumi.String(containerAppsScaleRuleName),
							Type:     pulumi.String(AzureQueueScalerType),
							Metadata: azureQueueMetadata(s, in.QueueName, in.StorageAccountName, s.JobQueueLength),
							Identity: in.IdentityID,
						},
					},
				},
			},
		},
		Template: &app.JobTemplateArgs{
			Containers: app.ContainerArray{containerAppsContainer(s, in, ScaleModeScaledJob, size)},
		},
		Tags: tagsInput(in.Tags),
	}
}
