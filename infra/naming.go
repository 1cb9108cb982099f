package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/components"
)

// Names are the Azure resource names of one stack, following the original deploy script with a
// stable random suffix per stack.
type Names struct {
	Suffix              pulumi.StringOutput
	ResourceGroup       pulumi.StringOutput
	StorageAccount      pulumi.StringOutput
	Registry            pulumi.StringOutput
	ClusterIdentity     pulumi.StringOutput
	Cluster             pulumi.StringOutput
	NodeResourceGroup   pulumi.StringOutput
	WorkloadIdentity    pulumi.StringOutput
	FederatedCredential pulumi.StringOutput
	KedaCredential      pulumi.StringOutput
	VirtualNetwork      pulumi.StringOutput
	AksSubnet           pulumi.StringOutput
	LogAnalytics        pulumi.StringOutput
	// ContainerAppsSubnet, ConsumerIdentity, ContainerAppsEnvironment, ContainerAppName and
	// ContainerAppsJobName are used only with platform containerapps.
	ContainerAppsSubnet      pulumi.StringOutput
	ConsumerIdentity         pulumi.StringOutput
	ContainerAppsEnvironment pulumi.StringOutput
	ContainerAppName         pulumi.StringOutput
	ContainerAppsJobName     pulumi.StringOutput
	// MonitorWorkspace, AlertRuleGroup and ActionGroup are used only with managedPrometheus.
	MonitorWorkspace pulumi.StringOutput
	AlertRuleGroup   pulumi.StringOutput
	ActionGroup      pulumi.StringOutput
}

// suffixArgs is the random suffix: 6 lowercase letters and digits, stable for the stack's life.
func suffixArgs() *random.RandomStringArgs {
	return &random.RandomStringArgs{
		Length:  pulumi.Int(SuffixLength),
		Upper:   pulumi.Bool(false),
		Special: pulumi.Bool(false),
		Numeric: pulumi.Bool(true),
		Lower:   pulumi.Bool(true),
	}
}

// NewNames creates the suffix and derives every name from it.
func NewNames(ctx *pulumi.Context, cfg Config) (*Names, error) {
	sfx, err := random.NewRandomString(ctx, "suffix", suffixArgs())
	if err != nil {
		return nil, fmt.Errorf("creating the random name suffix: %w", err)
	}
	return namesFrom(cfg, sfx.Result), nil
}

// namesFrom derives the names from a suffix (pure, so tests can check the scheme).
func namesFrom(cfg Config, sfx pulumi.StringOutput) *Names {
	p := cfg.Prefix
	n := &Names{
		Suffix:              sfx,
		ResourceGroup:       pulumi.Sprintf("rg-%s-%s", p, sfx),
		StorageAccount:      pulumi.Sprintf("stor%s%s", p, sfx),
		Registry:            pulumi.Sprintf("acr%s%s", p, sfx),
		ClusterIdentity:     pulumi.Sprintf("mi-%s-%s", p, sfx),
		Cluster:             pulumi.Sprintf("aks-%s-%s", p, sfx),
		WorkloadIdentity:    pulumi.Sprintf("mi-aks-workload-identity-%s", sfx),
		FederatedCredential: pulumi.Sprintf("federated-credential-%s", sfx),
		KedaCredential:      pulumi.Sprintf("fed-cred-%s-kedasvc-%s", p, sfx),
		VirtualNetwork:      pulumi.Sprintf("vnet-%s-%s", p, sfx),
		AksSubnet:           pulumi.String("snet-aks").ToStringOutput(),
		ContainerAppsSubnet: pulumi.String("snet-aca").ToStringOutput(),
		ConsumerIdentity:    pulumi.Sprintf("mi-%s-consumer-%s", p, sfx),
		// Container Apps names: 2-32 lowercase letters, digits and hyphens (Validate checks the length).
		ContainerAppsEnvironment: pulumi.Sprintf("cae-%s-%s", p, sfx),
		ContainerAppName:         pulumi.Sprintf("ca-%s-%s", p, sfx),
		ContainerAppsJobName:     pulumi.Sprintf("caj-%s-%s", p, sfx),
		LogAnalytics:             pulumi.Sprintf("log-%s-%s", p, sfx),
		MonitorWorkspace:         pulumi.Sprintf("amw-%s-%s", p, sfx),
		AlertRuleGroup:           pulumi.Sprintf("prom-alerts-%s-%s", p, sfx),
		ActionGroup:              pulumi.Sprintf("ag-%s-%s", p, sfx),
	}
	if cfg.StorageAccountName != "" {
		n.StorageAccount = pulumi.String(cfg.StorageAccountName).ToStringOutput()
	}
	n.NodeResourceGroup = pulumi.Sprintf("MC_%s_%s_%s", n.ResourceGroup, n.Cluster, cfg.Location)
	return n
}

// ActionGroupShortName is the action group's short name, shown in its notifications: the prefix,
// cut to Azure's 12 characters.
func ActionGroupShortName(prefix string) string {
	if len(prefix) > 12 {
		return prefix[:12]
	}
	return prefix
}

// ContainerApp is the name of the consumer on Container Apps: the app in ScaledObject mode, the
// job in ScaledJob mode.
func (n *Names) ContainerApp(scaleMode string) pulumi.StringOutput {
	if scaleMode == components.ScaleModeScaledJob {
		return n.ContainerAppsJobName
	}
	return n.ContainerAppName
}

// ContainerAppsNameMax is the longest name Azure allows a Container App, a job or an environment.
const ContainerAppsNameMax = 32
