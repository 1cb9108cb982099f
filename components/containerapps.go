package components

import (
	"errors"
	"fmt"
	"time"

	app "github.com/pulumi/pulumi-azure-native-sdk/app/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/monitor/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/operationalinsights/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ContainerAppsConsumerType is the component's type token.
const ContainerAppsConsumerType = "aks-edw:azure:ContainerAppsConsumer"

// ContainerAppsConsumerArgs are the inputs of NewContainerAppsConsumer: the same consumer
// settings as QueueConsumer's, and where the environment goes. Every field is required unless
// its comment says optional.
type ContainerAppsConsumerArgs struct {
	// Settings are the workload settings (start from DefaultConsumerSettings); the keys that only
	// mean something on AKS are ignored here (infra refuses them with this target).
	Settings ConsumerSettings
	// ResourceGroupName and Location place the workspace, the environment and the app or job.
	ResourceGroupName, Location pulumi.StringInput
	// WorkspaceName is the Log Analytics workspace the environment's logs go to.
	WorkspaceName pulumi.StringInput
	// LogRetentionDays is the workspace's retention (optional; 0 means 30).
	LogRetentionDays int
	// EnvironmentName is the Container Apps managed environment's name.
	EnvironmentName pulumi.StringInput
	// AppName names the Container App (ScaledObject mode) or the Container Apps job (ScaledJob mode).
	AppName pulumi.StringInput
	// InfrastructureSubnetID puts the environment in that subnet of the stack's VNet, delegated to
	// Microsoft.App/environments (optional; nil: the environment is not in a VNet of ours).
	InfrastructureSubnetID pulumi.StringInput
	// StorageAccountName, QueueName and TableName locate the queue and the table.
	StorageAccountName, QueueName, TableName pulumi.StringInput
	// IdentityID is the user-assigned identity's resource id: attached to the app or job, used by
	// the scale rule and for the registry pull.
	IdentityID pulumi.StringInput
	// ClientID is the same identity's client id, the consumer's AZURE_CLIENT_ID.
	ClientID pulumi.StringInput
	// RegistryServer is the stack's registry login server, pulled from with the identity.
	RegistryServer pulumi.StringInput
	// Image is the full consumer image reference.
	Image pulumi.StringInput
	// DependsOn are what the app or job needs before it is created: the identity's AcrPull
	// (Container Apps pulls the image while it creates the revision) and data roles, and the image
	// build when the stack builds it (optional; the stack passes all of them).
	DependsOn []pulumi.Resource
	// AcrPullCreatedOn, when set, is when the identity got AcrPull: the app or job waits until
	// AcrPullPropagation has passed since, as nothing retries a refused image pull (optional; the
	// stack sets it).
	AcrPullCreatedOn pulumi.StringOutput
	// AcrPullPropagation is that wait (optional; 0 means RolePropagation).
	AcrPullPropagation time.Duration
	// Tags are optional.
	Tags map[string]string
}

// ContainerAppsConsumer is the queue consumer on Azure Container Apps: a Log Analytics workspace,
// a Consumption managed environment whose logs go there, and the consumer as a Container App with
// an azure-queue scale rule (ScaledObject mode) or as an event-driven Container Apps job
// (ScaledJob mode), both scaled by Container Apps' built-in KEDA with the stack's identity.
type ContainerAppsConsumer struct {
	pulumi.ResourceState

	// EnvironmentName is the managed environment's name.
	EnvironmentName pulumi.StringOutput
	// EnvironmentID is the managed environment's resource id.
	EnvironmentID pulumi.StringOutput
	// AppName is the Container App's or the job's name.
	AppName pulumi.StringOutput
	// AppID is the Container App's or the job's resource id.
	AppID pulumi.StringOutput
	// AppKind is "ContainerApp" (ScaledObject mode) or "Job" (ScaledJob mode).
	AppKind string
	// WorkspaceID is the Log Analytics workspace's resource id.
	WorkspaceID pulumi.StringOutput
	// Size is the consumer container's CPU and memory.
	Size ContainerAppsSize
}

// The Container Apps resource kinds of AppKind.
const (
	ContainerAppsKindApp = "ContainerApp"
	ContainerAppsKindJob = "Job"
)

// validate reports every missing input and every settings problem at once.
func (a *ContainerAppsConsumerArgs) validate() error {
	var errs []error
	for _, in := range []struct {
		name string
		v    pulumi.StringInput
	}{
		{"ResourceGroupName", a.ResourceGroupName}, {"Location", a.Location}, {"WorkspaceName", a.WorkspaceName},
		{"EnvironmentName", a.EnvironmentName}, {"AppName", a.AppName}, {"StorageAccountName", a.StorageAccountName},
		{"QueueName", a.QueueName}, {"TableName", a.TableName}, {"IdentityID", a.IdentityID}, {"ClientID", a.ClientID},
		{"RegistryServer", a.RegistryServer}, {"Image", a.Image},
	} {
		if in.v == nil {
			errs = append(errs, fmt.Errorf("%s is required", in.name))
		}
	}
	if err := a.Settings.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := a.Settings.ValidateForContainerApps(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewContainerAppsConsumer creates the workspace, the environment and its diagnostic setting, and
// the Container App or the job.
func NewContainerAppsConsumer(ctx *pulumi.Context, name string, args *ContainerAppsConsumerArgs, opts ...pulumi.ResourceOption) (*ContainerAppsConsumer, error) {
	if args == nil {
		return nil, fmt.Errorf("container apps consumer %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("container apps consumer %q: %w", name, err)
	}
	size, _ := ContainerAppsSizeFor(args.Settings) // validated above
	c := &ContainerAppsConsumer{Size: size}
	if err := ctx.RegisterComponentResource(ContainerAppsConsumerType, name, c, opts...); err != nil {
		return nil, fmt.Errorf("registering container apps consumer %q: %w", name, err)
	}
	workspace, err := operationalinsights.NewWorkspace(ctx, name+"-logs",
		logAnalyticsWorkspaceArgs(args.ResourceGroupName, args.Location, args.WorkspaceName, args.LogRetentionDays, args.Tags),
		pulumi.Parent(c))
	if err != nil {
		return nil, fmt.Errorf("creating Log Analytics workspace %q: %w", name, err)
	}
	env, err := app.NewManagedEnvironment(ctx, name+"-env",
		managedEnvironmentArgs(args.ResourceGroupName, args.Location, args.EnvironmentName, args.InfrastructureSubnetID, args.Tags),
		pulumi.Parent(c))
	if err != nil {
		return nil, fmt.Errorf("creating container apps environment %q: %w", name, err)
	}
	if _, err := monitor.NewDiagnosticSetting(ctx, name+"-env-logs",
		environmentDiagnosticSettingArgs(env.ID().ToStringOutput(), workspace.ID().ToStringOutput()), pulumi.Parent(c)); err != nil {
		return nil, fmt.Errorf("creating the diagnostic setting of container apps environment %q: %w", name, err)
	}
	in := containerAppsInputs{
		ResourceGroupName: args.ResourceGroupName, Location: args.Location,
		StorageAccountName: args.StorageAccountName, QueueName: args.QueueName, TableName: args.TableName,
		Image: args.Image, RegistryServer: args.RegistryServer, IdentityID: args.IdentityID, ClientID: args.ClientID,
		EnvironmentID: env.ID().ToStringOutput(), Tags: args.Tags,
	}
	deps := []pulumi.ResourceOption{pulumi.Parent(c), pulumi.DependsOn(args.DependsOn)}
	if args.AcrPullCreatedOn.OutputState != nil {
		wait := args.AcrPullPropagation
		if wait <= 0 {
			wait = RolePropagation
		}
		deps = append(deps, pulumi.DependsOnInputs(PropagationWait(ctx, args.AcrPullCreatedOn, wait)))
	}
	if args.Settings.ScaleMode == ScaleModeScaledJob {
		job, err := app.NewJob(ctx, name+"-job", containerAppsJobArgs(args.Settings, in, args.AppName, size), deps...)
		if err != nil {
			return nil, fmt.Errorf("creating container apps job %q: %w", name, err)
		}
		c.AppName, c.AppID, c.AppKind = job.Name, job.ID().ToStringOutput(), ContainerAppsKindJob
	} else {
		ca, err := app.NewContainerApp(ctx, name+"-app", containerAppArgs(args.Settings, in, args.AppName, size), deps...)
		if err != nil {
			return nil, fmt.Errorf("creating container app %q: %w", name, err)
		}
		c.AppName, c.AppID, c.AppKind = ca.Name, ca.ID().ToStringOutput(), ContainerAppsKindApp
	}
	c.EnvironmentName = env.Name
	c.EnvironmentID = env.ID().ToStringOutput()
	c.WorkspaceID = workspace.ID().ToStringOutput()
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"environmentName": c.EnvironmentName, "environmentId": c.EnvironmentID, "appName": c.AppName, "appId": c.AppID,
		"appKind": pulumi.String(c.AppKind), "workspaceId": c.WorkspaceID,
	}); err != nil {
		return nil, fmt.Errorf("registering container apps consumer %q outputs: %w", name, err)
	}
	return c, nil
}
