package components

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/containerservice/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/monitor/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/operationalinsights/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// SystemPoolName is the name of the one inline (system) agent pool.
const SystemPoolName = "systempool"

// SystemPoolTaint keeps application pods off the system pool; they land on NAP nodes.
const SystemPoolTaint = "CriticalAddonsOnly=true:NoSchedule"

// ClusterSpec holds the plain (known at preview) cluster settings.
type ClusterSpec struct {
	// KubernetesVersion is optional; empty takes the AKS default at creation.
	KubernetesVersion string
	// SystemNodeCount is required (>= 1): the fixed size of the system pool (no autoscaler: NAP
	// does not allow a pool with the cluster autoscaler on).
	SystemNodeCount int
	// SystemNodeVMSize is required.
	SystemNodeVMSize string
	// SystemNodeZones is optional.
	SystemNodeZones []string
	// UpgradeChannel is optional (AKS default when empty).
	UpgradeChannel string
	// NodeOSUpgradeChannel is optional (AKS default when empty).
	NodeOSUpgradeChannel string
	// PodCidr, ServiceCidr and DNSServiceIP are required (overlay networking).
	PodCidr, ServiceCidr, DNSServiceIP string
	// APIServerAuthorizedIPRanges is optional; empty leaves the API server reachable from anywhere
	// (authenticated), which `pulumi up` from a laptop or hosted CI needs.
	APIServerAuthorizedIPRanges []string
	// LogRetentionDays is optional, default 30.
	LogRetentionDays int
	// Tier is the AKS pricing tier: Free (default) or Standard (uptime SLA, for prod).
	Tier string
	// ManagedPrometheus turns on the Azure Monitor metrics add-on (managed Prometheus); optional,
	// default false (no azureMonitorProfile at all). The add-on's data collection rule and
	// association are the ManagedPrometheus component's.
	ManagedPrometheus bool
	// LocalAccounts keeps AKS's local accounts (the static admin credential). False (both stacks):
	// Entra-only access, disableLocalAccounts with AKS-managed Entra ID and Azure RBAC for
	// Kubernetes, and the stack's kubeconfig is the user credential in kubelogin's exec format.
	LocalAccounts bool
	// MaintenanceWindow is optional: when set, AKS's auto-upgrades and node OS upgrades happen
	// only in this weekly window (one planned maintenance configuration per channel in use).
	MaintenanceWindow *MaintenanceWindow
}

// ClusterArgs configures the AKS cluster component.
type ClusterArgs struct {
	// ResourceGroupName is required.
	ResourceGroupName pulumi.StringInput
	// Location is required.
	Location pulumi.StringInput
	// ClusterName is required.
	ClusterName pulumi.StringInput
	// IdentityName is required: the user-assigned control-plane identity's name.
	IdentityName pulumi.StringInput
	// WorkspaceName is required: the Log Analytics workspace for Container Insights.
	WorkspaceName pulumi.StringInput
	// NodeResourceGroup is required: the AKS-managed node resource group's name.
	NodeResourceGroup pulumi.StringInput
	// SubnetID is required: the node subnet (our own VNet).
	SubnetID pulumi.StringInput
	// RegistryID is required: the kubelet identity gets AcrPull on it.
	RegistryID pulumi.StringInput
	// SubscriptionID is required (role definition ids).
	SubscriptionID pulumi.StringInput
	// Spec is required.
	Spec ClusterSpec
	// Tags are optional.
	Tags map[string]string
	// Protect marks the cluster protected against deletion; optional, default false.
	Protect bool
}

// Cluster is an AKS cluster with node autoprovisioning, KEDA, OIDC issuer and workload identity,
// its control-plane identity, its monitoring workspace and its AcrPull grant.
type Cluster struct {
	pulumi.ResourceState

	// ManagedCluster is the cluster resource (the target of DeletedWith for Kubernetes objects).
	ManagedCluster *containerservice.ManagedCluster
	// Name is the cluster's name.
	Name pulumi.StringOutput
	// IdentityName is the control-plane identity's name.
	IdentityName pulumi.StringOutput
	// OIDCIssuerURL is the issuer URL exactly as AKS reports it (trailing slash included).
	OIDCIssuerURL pulumi.StringOutput
	// KubeletObjectID is the kubelet identity's object (principal) id.
	KubeletObjectID pulumi.StringOutput
	// Kubeconfig is the cluster user kubeconfig, always a secret.
	Kubeconfig pulumi.StringOutput
	// AcrPull is the kubelet identity's AcrPull grant on the registry: pods that pull from the
	// registry depend on it.
	AcrPull pulumi.Resource
}

func (a *ClusterArgs) validate() error {
	var errs []error
	if a.ResourceGroupName == nil || a.Location == nil || a.ClusterName == nil || a.IdentityName == nil ||
		a.WorkspaceName == nil || a.NodeResourceGroup == nil || a.SubnetID == nil || a.RegistryID == nil ||
		a.SubscriptionID == nil {
		errs = append(errs, errors.New("ResourceGroupName, Location, ClusterName, IdentityName, WorkspaceName, NodeResourceGroup, SubnetID, RegistryID and SubscriptionID are required"))
	}
	if a.Spec.SystemNodeCount < 1 {
		errs = append(errs, fmt.Errorf("Spec.SystemNodeCount must be >= 1, got %d", a.Spec.SystemNodeCount))
	}
	if a.Spec.SystemNodeVMSize == "" {
		errs = append(errs, errors.New("Spec.SystemNodeVMSize is required"))
	}
	if err := ValidateVersionPin(a.Spec.KubernetesVersion, a.Spec.UpgradeChannel); err != nil {
		errs = append(errs, fmt.Errorf("Spec.KubernetesVersion: %w", err))
	}
	if a.Spec.PodCidr == "" || a.Spec.ServiceCidr == "" || a.Spec.DNSServiceIP == "" {
		errs = append(errs, errors.New("Spec.PodCidr, Spec.ServiceCidr and Spec.DNSServiceIP are required"))
	}
	if w := a.Spec.MaintenanceWindow; w != nil {
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("Spec.MaintenanceWindow: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ValidateVersionPin refuses a Kubernetes version pin that the auto-upgrade channel will move
// past: after an auto-upgrade, AKS refuses the old version as a downgrade, so the next
// `pulumi up` that touches the cluster would fail (docs/cloud-notes.md). The message names the
// kubernetesVersion key.
func ValidateVersionPin(version, channel string) error {
	if version == "" {
		return nil
	}
	switch containerservice.UpgradeChannel(channel) {
	case containerservice.UpgradeChannelStable, containerservice.UpgradeChannelRapid:
		return fmt.Errorf("kubernetesVersion %q is pinned while upgradeChannel %q moves the cluster to newer minor versions: "+
			"after the first auto-upgrade every `pulumi up` would ask AKS for a downgrade, which it refuses. "+
			"Leave kubernetesVersion empty (the channel chooses and moves the version), or keep the pin with upgradeChannel "+
			"patch (major.minor only), node-image or none and raise it yourself before it leaves support (about 12 months per minor)",
			version, channel)
	case containerservice.UpgradeChannelPatch:
		if strings.Count(version, ".") > 1 {
			minor := version[:strings.LastIndex(version, ".")]
			return fmt.Errorf("kubernetesVersion %q pins a patch release while upgradeChannel \"patch\" moves patch releases: "+
				"after the first auto-upgrade every `pulumi up` would ask AKS for a downgrade. Pin the minor version only (%q)",
				version, minor)
		}
	}
	return nil
}

func optString(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}

func upgradeChannel(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return containerservice.UpgradeChannel(s)
}

func nodeOSUpgradeChannel(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return containerservice.NodeOSUpgradeChannel(s)
}

// managedClusterArgs is the pure builder of the ManagedCluster: every decision about the
// cluster's shape is here.
func managedClusterArgs(a *ClusterArgs, identityID, workspaceID pulumi.StringInput) *containerservice.ManagedClusterArgs {
	spec := a.Spec
	tier := spec.Tier
	if tier == "" {
		tier = string(containerservice.ManagedClusterSKUTierFree)
	}
	var zones pulumi.StringArrayInput
	if len(spec.SystemNodeZones) > 0 {
		zones = pulumi.ToStringArray(spec.SystemNodeZones)
	}
	var apiAccess *containerservice.ManagedClusterAPIServerAccessProfileArgs
	if len(spec.APIServerAuthorizedIPRanges) > 0 {
		apiAccess = &containerservice.ManagedClusterAPIServerAccessProfileArgs{
			AuthorizedIPRanges: pulumi.ToStringArray(spec.APIServerAuthorizedIPRanges),
		}
	}
	var autoUpgrade *containerservice.ManagedClusterAutoUpgradeProfileArgs
	if spec.UpgradeChannel != "" || spec.NodeOSUpgradeChannel != "" {
		autoUpgrade = &containerservice.ManagedClusterAutoUpgradeProfileArgs{
			UpgradeChannel:       upgradeChannel(spec.UpgradeChannel),
			NodeOSUpgradeChannel: nodeOSUpgradeChannel(spec.NodeOSUpgradeChannel),
		}
	}
	return &containerservice.ManagedClusterArgs{
		ResourceGroupName: a.ResourceGroupName,
		Location:          a.Location,
		ResourceName:      a.ClusterName,
		DnsPrefix:         a.ClusterName,
		NodeResourceGroup: a.NodeResourceGroup,
		KubernetesVersion: optString(spec.KubernetesVersion),
		Sku: &containerservice.ManagedClusterSKUArgs{
			Name: containerservice.ManagedClusterSKUNameBase,
			Tier: containerservice.ManagedClusterSKUTier(tier),
		},
		Identity: &containerservice.ManagedClusterIdentityArgs{
			Type:                   containerservice.ResourceIdentityTypeUserAssigned,
			UserAssignedIdentities: pulumi.StringArray{identityID},
		},
		EnableRBAC: pulumi.Bool(true),
		// Entra-only: no static credential, authorization by Azure RBAC (AVM's default).
		DisableLocalAccounts: pulumi.Bool(!spec.LocalAccounts),
		AadProfile:           aadProfile(spec.LocalAccounts),
		// Exactly one pool inline, the system pool: editing inline pools later re-rolls them
		// all, so any further pool is its own AgentPool resource, or NAP provisions the nodes.
		AgentPoolProfiles: containerservice.ManagedClusterAgentPoolProfileArray{
			&containerservice.ManagedClusterAgentPoolProfileArgs{
				Name:              pulumi.String(SystemPoolName),
				Mode:              containerservice.AgentPoolModeSystem,
				Type:              containerservice.AgentPoolTypeVirtualMachineScaleSets,
				OsType:            containerservice.OSTypeLinux,
				OsSKU:             containerservice.OSSKUAzureLinux,
				Count:             pulumi.Int(spec.SystemNodeCount),
				VmSize:            pulumi.String(spec.SystemNodeVMSize),
				AvailabilityZones: zones,
				EnableAutoScaling: pulumi.Bool(false),
				NodeTaints:        pulumi.StringArray{pulumi.String(SystemPoolTaint)},
				VnetSubnetID:      a.SubnetID,
			},
		},
		// Node autoprovisioning (Karpenter) requires Azure CNI overlay with the Cilium dataplane
		// and network policy, IPv4 only.
		NodeProvisioningProfile: &containerservice.ManagedClusterNodeProvisioningProfileArgs{
			Mode: containerservice.NodeProvisioningModeAuto,
		},
		NetworkProfile: &containerservice.ContainerServiceNetworkProfileArgs{
			NetworkPlugin:     containerservice.NetworkPluginAzure,
			NetworkPluginMode: containerservice.NetworkPluginModeOverlay,
			NetworkDataplane:  containerservice.NetworkDataplaneCilium,
			NetworkPolicy:     containerservice.NetworkPolicyCilium,
			IpFamilies:        pulumi.StringArray{pulumi.String(string(containerservice.IpFamilyIPv4))},
			PodCidr:           pulumi.String(spec.PodCidr),
			ServiceCidr:       pulumi.String(spec.ServiceCidr),
			DnsServiceIP:      pulumi.String(spec.DNSServiceIP),
			LoadBalancerSku:   containerservice.LoadBalancerSkuStandard,
			OutboundType:      containerservice.OutboundTypeLoadBalancer,
		},
		WorkloadAutoScalerProfile: &containerservice.ManagedClusterWorkloadAutoScalerProfileArgs{
			Keda: &containerservice.ManagedClusterWorkloadAutoScalerProfileKedaArgs{Enabled: pulumi.Bool(true)},
		},
		OidcIssuerProfile: &containerservice.ManagedClusterOIDCIssuerProfileArgs{Enabled: pulumi.Bool(true)},
		SecurityProfile: &containerservice.ManagedClusterSecurityProfileArgs{
			WorkloadIdentity: &containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs{Enabled: pulumi.Bool(true)},
		},
		AddonProfiles: containerservice.ManagedClusterAddonProfileMap{
			"omsagent": &containerservice.ManagedClusterAddonProfileArgs{
				Enabled: pulumi.Bool(true),
				Config: pulumi.StringMap{
					"logAnalyticsWorkspaceResourceID": workspaceID,
					"useAADAuth":                      pulumi.String("true"),
				},
			},
		},
		AzureMonitorProfile:    azureMonitorProfile(spec.ManagedPrometheus),
		AutoUpgradeProfile:     autoUpgrade,
		ApiServerAccessProfile: apiAccess,
		Tags:                   tagsInput(a.Tags),
	}
}

// aadProfile is AKS-managed Entra ID with Azure RBAC for Kubernetes authorization, in the
// subscription's tenant (tenantID left to AKS), or nil with local accounts.
func aadProfile(localAccounts bool) *containerservice.ManagedClusterAADProfileArgs {
	if localAccounts {
		return nil
	}
	return &containerservice.ManagedClusterAADProfileArgs{
		Managed:         pulumi.Bool(true),
		EnableAzureRBAC: pulumi.Bool(true),
	}
}

// CredentialFormat is the user kubeconfig's format: "exec" (kubelogin, the only form client-go
// accepts since Kubernetes 1.26) on an Entra-only cluster, else AKS's default.
func CredentialFormat(localAccounts bool) string {
	if localAccounts {
		return ""
	}
	return "exec"
}

// azureMonitorProfile turns the managed Prometheus metrics add-on on, with kube-state-metrics
// label and annotation allow-lists empty (the default of Microsoft's templates:
// github.com/Azure/prometheus-collector AddonArmTemplate/FullAzureMonitorMetricsProfile.json,
// nested_azuremonitormetrics_profile_clusterResourceId.bicep; mind the casing, metricLabelsAllowlist
// but metricAnnotationsAllowList). Off: nil, so the cluster has no azureMonitorProfile.
func azureMonitorProfile(on bool) *containerservice.ManagedClusterAzureMonitorProfileArgs {
	if !on {
		return nil
	}
	return &containerservice.ManagedClusterAzureMonitorProfileArgs{
		Metrics: &containerservice.ManagedClusterAzureMonitorProfileMetricsArgs{
			Enabled: pulumi.Bool(true),
			KubeStateMetrics: &containerservice.ManagedClusterAzureMonitorProfileKubeStateMetricsArgs{
				MetricLabelsAllowlist:      pulumi.String(""),
				MetricAnnotationsAllowList: pulumi.String(""),
			},
		},
	}
}

// Container Insights data collection, as Microsoft's own ARM and Terraform onboarding templates
// create it (docs/cloud-notes.md): the omsagent add-on with useAADAuth sends nothing until a data
// collection rule with the ContainerInsights extension is associated with the cluster.
const (
	// ContainerInsightsStream is the stream group of Container Insights' default data.
	ContainerInsightsStream = "Microsoft-ContainerInsights-Group-Default"
	// ContainerInsightsAssociationName is the association's name in Microsoft's templates.
	ContainerInsightsAssociationName = "ContainerInsightsExtension"
	containerInsightsDestination     = "ciworkspace"
)

// containerInsightsRuleName is MSCI-<region>-<cluster>, at most 64 characters, as `az aks
// enable-addons monitoring` and Microsoft's templates name the rule.
func containerInsightsRuleName(location, cluster string) string {
	n := "MSCI-" + location + "-" + cluster
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// dataCollectionRuleArgs is the pure builder of the Container Insights data collection rule:
// the ContainerInsights extension's default streams, into the stack's workspace.
func dataCollectionRuleArgs(a *ClusterArgs, workspaceID pulumi.StringInput) *monitor.DataCollectionRuleArgs {
	streams := pulumi.StringArray{pulumi.String(ContainerInsightsStream)}
	return &monitor.DataCollectionRuleArgs{
		ResourceGroupName: a.ResourceGroupName,
		Location:          a.Location,
		DataCollectionRuleName: pulumi.All(a.Location, a.ClusterName).ApplyT(func(v []any) string {
			return containerInsightsRuleName(v[0].(string), v[1].(string))
		}).(pulumi.StringOutput),
		Kind:        monitor.KnownDataCollectionRuleResourceKindLinux,
		Description: pulumi.String("Container Insights for the AKS cluster: the ContainerInsights extension's default streams into the stack's Log Analytics workspace."),
		DataSources: &monitor.DataCollectionRuleDataSourcesArgs{
			Extensions: monitor.ExtensionDataSourceArray{
				&monitor.ExtensionDataSourceArgs{
					Name:          pulumi.String(ContainerInsightsAssociationName),
					ExtensionName: pulumi.String("ContainerInsights"),
					Streams:       streams,
					ExtensionSettings: pulumi.Map{
						"dataCollectionSettings": pulumi.Map{
							"interval":               pulumi.String("1m"),
							"namespaceFilteringMode": pulumi.String("Off"),
							"enableContainerLogV2":   pulumi.Bool(true),
						},
					},
				},
			},
		},
		Destinations: &monitor.DataCollectionRuleDestinationsArgs{
			LogAnalytics: monitor.LogAnalyticsDestinationArray{
				&monitor.LogAnalyticsDestinationArgs{
					Name:                pulumi.String(containerInsightsDestination),
					WorkspaceResourceId: workspaceID,
				},
			},
		},
		DataFlows: monitor.DataFlowArray{
			&monitor.DataFlowArgs{
				Streams:      streams,
				Destinations: pulumi.StringArray{pulumi.String(containerInsightsDestination)},
			},
		},
		Tags: tagsInput(a.Tags),
	}
}

// dataCollectionRuleAssociationArgs associates the rule with the cluster.
func dataCollectionRuleAssociationArgs(clusterID, ruleID pulumi.StringInput) *monitor.DataCollectionRuleAssociationArgs {
	return &monitor.DataCollectionRuleAssociationArgs{
		ResourceUri:          clusterID,
		AssociationName:      pulumi.String(ContainerInsightsAssociationName),
		DataCollectionRuleId: ruleID,
		Description:          pulumi.String("Association of the Container Insights data collection rule. Deleting it stops data collection for this cluster."),
	}
}

// kubeletObjectID extracts the kubelet identity's object id from the cluster's identity profile.
func kubeletObjectID(mc *containerservice.ManagedCluster) pulumi.StringOutput {
	return mc.IdentityProfile.ApplyT(func(p map[string]containerservice.UserAssignedIdentityResponseV1) (string, error) {
		k, ok := p["kubeletidentity"]
		if !ok || k.ObjectId == nil || *k.ObjectId == "" {
			return "", errors.New("cluster identityProfile has no kubeletidentity objectId")
		}
		return *k.ObjectId, nil
	}).(pulumi.StringOutput)
}

// NewCluster creates the control-plane identity (with Network Contributor on the subnet), the
// Log Analytics workspace, the cluster, AcrPull for the kubelet identity, and reads the kubeconfig.
func NewCluster(ctx *pulumi.Context, name string, args *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if args == nil {
		return nil, fmt.Errorf("cluster %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", name, err)
	}
	c := &Cluster{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:Cluster", name, c, opts...); err != nil {
		return nil, fmt.Errorf("registering cluster %q: %w", name, err)
	}
	identity, err := newIdentity(ctx, name+"-identity", args.ResourceGroupName, args.Location, args.IdentityName, args.Tags, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	// With our own VNet the control plane manages load balancers and routes in the subnet.
	netRole, err := newRoleAssignment(ctx, name+"-network-contributor", roleAssignment{
		PrincipalID:    identity.PrincipalId,
		SubscriptionID: args.SubscriptionID,
		RoleGUID:       RoleNetworkContributor,
		Scope:          args.SubnetID,
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	workspace, err := operationalinsights.NewWorkspace(ctx, name+"-logs",
		logAnalyticsWorkspaceArgs(args.ResourceGroupName, args.Location, args.WorkspaceName, args.Spec.LogRetentionDays, args.Tags),
		pulumi.Parent(c))
	if err != nil {
		return nil, fmt.Errorf("creating Log Analytics workspace %q: %w", name, err)
	}
	mc, err := containerservice.NewManagedCluster(ctx, name+"-aks",
		managedClusterArgs(args, identity.ID().ToStringOutput(), workspace.ID().ToStringOutput()),
		pulumi.Parent(c), pulumi.Protect(args.Protect),
		// The subnet role must exist before AKS validates the subnet; no data flows from it.
		pulumi.DependsOn([]pulumi.Resource{netRole}))
	if err != nil {
		return nil, fmt.Errorf("creating managed cluster %q: %w", name, err)
	}
	c.ManagedCluster = mc
	c.Name = mc.Name
	c.IdentityName = identity.Name
	c.OIDCIssuerURL = mc.OidcIssuerProfile.ApplyT(func(p *containerservice.ManagedClusterOIDCIssuerProfileResponse) (string, error) {
		if p == nil || p.IssuerURL == "" {
			return "", errors.New("cluster reports no OIDC issuer URL")
		}
		return p.IssuerURL, nil
	}).(pulumi.StringOutput)
	c.KubeletObjectID = kubeletObjectID(mc)

	for _, schedule := range maintenanceSchedules(args.Spec) {
		if _, err := containerservice.NewMaintenanceConfiguration(ctx, name+"-"+schedule,
			maintenanceConfigurationArgs(args, mc.Name, schedule, *args.Spec.MaintenanceWindow), pulumi.Parent(c)); err != nil {
			return nil, fmt.Errorf("creating maintenance configuration %s of cluster %q: %w", schedule, name, err)
		}
	}

	rule, err := monitor.NewDataCollectionRule(ctx, name+"-insights-rule",
		dataCollectionRuleArgs(args, workspace.ID().ToStringOutput()), pulumi.Parent(c))
	if err != nil {
		return nil, fmt.Errorf("creating Container Insights data collection rule %q: %w", name, err)
	}
	if _, err := monitor.NewDataCollectionRuleAssociation(ctx, name+"-insights-association",
		dataCollectionRuleAssociationArgs(mc.ID().ToStringOutput(), rule.ID().ToStringOutput()), pulumi.Parent(c)); err != nil {
		return nil, fmt.Errorf("associating the Container Insights data collection rule with cluster %q: %w", name, err)
	}

	// AcrPull goes to the kubelet identity, the one that pulls images, not the control plane's.
	acrPull, err := newRoleAssignment(ctx, name+"-kubelet-acrpull", roleAssignment{
		PrincipalID:    c.KubeletObjectID,
		SubscriptionID: args.SubscriptionID,
		RoleGUID:       RoleAcrPull,
		Scope:          args.RegistryID,
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.AcrPull = acrPull

	creds := containerservice.ListManagedClusterUserCredentialsOutput(ctx, containerservice.ListManagedClusterUserCredentialsOutputArgs{
		ResourceGroupName: args.ResourceGroupName,
		ResourceName:      mc.Name,
		Format:            optString(CredentialFormat(args.Spec.LocalAccounts)),
	}, pulumi.Parent(c))
	c.Kubeconfig = pulumi.ToSecret(creds.Kubeconfigs().ApplyT(func(kcs []containerservice.CredentialResultResponse) (string, error) {
		if len(kcs) == 0 {
			return "", errors.New("the cluster returned no kubeconfig")
		}
		raw, err := base64.StdEncoding.DecodeString(kcs[0].Value)
		if err != nil {
			return "", fmt.Errorf("decoding kubeconfig: %w", err)
		}
		return string(raw), nil
	})).(pulumi.StringOutput)

	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"name": c.Name, "identityName": c.IdentityName, "oidcIssuerUrl": c.OIDCIssuerURL,
		"kubeletObjectId": c.KubeletObjectID, "kubeconfig": c.Kubeconfig,
	}); err != nil {
		return nil, fmt.Errorf("registering cluster %q outputs: %w", name, err)
	}
	return c, nil
}

// logAnalyticsWorkspaceArgs is the pure builder of the stack's Log Analytics workspace, the same
// on either target: the cluster's Container Insights or the Container Apps environment's logs go
// there. retentionDays 0 means 30.
func logAnalyticsWorkspaceArgs(rg, location, name pulumi.StringInput, retentionDays int, tags map[string]string) *operationalinsights.WorkspaceArgs {
	if retentionDays == 0 {
		retentionDays = 30
	}
	return &operationalinsights.WorkspaceArgs{
		ResourceGroupName: rg,
		Location:          location,
		WorkspaceName:     name,
		Sku:               &operationalinsights.WorkspaceSkuArgs{Name: operationalinsights.WorkspaceSkuNameEnumPerGB2018},
		RetentionInDays:   pulumi.Int(retentionDays),
		Tags:              tagsInput(tags),
	}
}
