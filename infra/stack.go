package infra

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/authorization/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/resources/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/components"
)

// Stack is the Azure side of one environment: the shared resources, and the cluster side (AKS:
// Cluster, WorkloadIdentity, ...) or the Container Apps side (ConsumerIdentity, ContainerApps);
// the other platform's fields are nil.
type Stack struct {
	Config           Config
	Names            *Names
	ResourceGroup    *resources.ResourceGroup
	Network          *components.Network
	Storage          *components.Storage
	Registry         *components.Registry
	Cluster          *components.Cluster
	WorkloadIdentity *components.WorkloadIdentity
	// ImageBuild is the ACR task run building the consumer image; nil when a prebuilt image is set.
	ImageBuild *components.ImageBuild
	// KubernetesAccess is what the deployer needs before it can reach the Kubernetes API (its AKS
	// RBAC Cluster Admin role on an Entra-only cluster); empty with local accounts.
	KubernetesAccess []pulumi.Resource
	// ConsumerImage is the image the consumer runs: the prebuilt image, or the built one.
	ConsumerImage pulumi.StringOutput
	// Prometheus is managed Prometheus and the alerts; nil when managedPrometheus is off.
	Prometheus *components.ManagedPrometheus

	// ConsumerIdentity is the consumer's identity on Container Apps; nil on AKS (WorkloadIdentity).
	ConsumerIdentity *components.ConsumerIdentity
	// ContainerApps is the consumer on Container Apps (environment, app or job); nil on AKS.
	ContainerApps *components.ContainerAppsConsumer

	subscriptionID pulumi.StringOutput
	// deployerID is the deploying principal's object id (getClientConfig).
	deployerID string
}

// DeployAKS composes the Azure side of an AKS stack: the shared resources, then the cluster, its
// monitoring, the workload identity and the deployer's access to the Kubernetes API. The
// Kubernetes side (package workload) follows it.
func DeployAKS(ctx *pulumi.Context, cfg Config) (*Stack, error) {
	s, err := deployShared(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.deployCluster(ctx); err != nil {
		return nil, err
	}
	return s, s.deployDeployerGrants(ctx)
}

// DeployContainerApps composes a Container Apps stack: the shared resources, then the consumer's
// identity and the consumer on Container Apps (workspace, environment, app or job). It creates no
// cluster and no Kubernetes provider or object.
func DeployContainerApps(ctx *pulumi.Context, cfg Config) (*Stack, error) {
	s, err := deployShared(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.StoragePublicNetworkAccess {
		// docs/cloud-notes.md, "Azure Container Apps": the app's containers reach storage through
		// the subnet's service endpoint, but nothing shows that Container Apps' own KEDA does.
		if err := ctx.Log.Warn(ContainerAppsFirewallWarning, nil); err != nil {
			return nil, fmt.Errorf("logging the storage firewall warning: %w", err)
		}
	}
	location := pulumi.String(cfg.Location)
	id, err := components.NewConsumerIdentity(ctx, "consumer-identity", &components.ConsumerIdentityArgs{
		ResourceGroupName: s.ResourceGroup.Name,
		Location:          location,
		IdentityName:      s.Names.ConsumerIdentity,
		SubscriptionID:    s.subscriptionID,
		QueueID:           s.Storage.QueueID,
		PoisonQueueID:     s.Storage.PoisonQueueID,
		TableID:           s.Storage.TableID,
		RegistryID:        s.Registry.ID,
		Tags:              cfg.Tags,
	})
	if err != nil {
		return nil, err
	}
	s.ConsumerIdentity = id
	deps := append([]pulumi.Resource{}, id.Grants...)
	if s.ImageBuild != nil {
		deps = append(deps, s.ImageBuild.TaskRun)
	}
	var subnetID pulumi.StringInput
	if s.Network != nil {
		subnetID = s.Network.SubnetID
	}
	aca, err := components.NewContainerAppsConsumer(ctx, "consumer", &components.ContainerAppsConsumerArgs{
		Settings:               cfg.Consumer,
		ResourceGroupName:      s.ResourceGroup.Name,
		Location:               location,
		WorkspaceName:          s.Names.LogAnalytics,
		LogRetentionDays:       cfg.LogRetentionDays,
		EnvironmentName:        s.Names.ContainerAppsEnvironment,
		AppName:                s.Names.ContainerApp(cfg.Consumer.ScaleMode),
		InfrastructureSubnetID: subnetID,
		StorageAccountName:     s.Storage.AccountName,
		QueueName:              s.Storage.QueueName,
		TableName:              s.Storage.TableName,
		IdentityID:             id.ID,
		ClientID:               id.ClientID,
		RegistryServer:         s.Registry.LoginServer,
		Image:                  s.ConsumerImage,
		DependsOn:              deps,
		AcrPullCreatedOn:       id.AcrPullCreatedOn,
		Tags:                   cfg.Tags,
	})
	if err != nil {
		return nil, err
	}
	s.ContainerApps = aca
	return s, s.deployDeployerGrants(ctx)
}

// ContainerAppsFirewallWarning is logged when a Container Apps stack keeps the storage firewall
// closed (storagePublicNetworkAccess false) with minReplicas 1 or more (with 0, or a job, the
// config is refused).
const ContainerAppsFirewallWarning = Project + ":storagePublicNetworkAccess is false on platform containerapps: the consumer reaches " +
	"the queue through the environment's subnet (service endpoint), but Container Apps' built-in KEDA scaler is not known to run " +
	"inside that subnet; if it does not, it cannot read the queue depth and the app stays at minReplicas, never scaling out. " +
	"Check the environment's system logs for KEDA errors after the first burst (see docs/container-apps.md)"

// deployShared creates what both targets have: the name suffix, the resource group, the network,
// the storage account with its queues and table, the registry and the consumer image build.
func deployShared(ctx *pulumi.Context, cfg Config) (*Stack, error) {
	names, err := NewNames(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// A plain invoke (it runs in previews too): who deploys decides resource options below
	// (takeOver), which cannot wait for an output.
	client, err := authorization.GetClientConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the deploying principal (getClientConfig): %w", err)
	}
	location := pulumi.String(cfg.Location)

	rg, err := resources.NewResourceGroup(ctx, "rg", &resources.ResourceGroupArgs{
		ResourceGroupName: names.ResourceGroup,
		Location:          location,
		Tags:              pulumi.ToStringMap(cfg.Tags),
	})
	if err != nil {
		return nil, fmt.Errorf("creating resource group: %w", err)
	}

	net, err := components.NewNetwork(ctx, "network", networkArgs(cfg, names, rg.Name))
	if err != nil {
		return nil, err
	}

	store, err := components.NewStorage(ctx, "storage", &components.StorageArgs{
		ResourceGroupName:   rg.Name,
		Location:            location,
		AccountName:         names.StorageAccount,
		Sku:                 cfg.StorageSku,
		QueueName:           cfg.QueueName,
		TableName:           cfg.TableName,
		AllowedSubnetIDs:    []pulumi.StringInput{net.SubnetID},
		AllowedIPRanges:     cfg.OperatorIPRanges,
		PublicNetworkAccess: cfg.StoragePublicNetworkAccess,
		Tags:                cfg.Tags,
		Protect:             cfg.Protect,
	})
	if err != nil {
		return nil, err
	}

	registry, err := components.NewRegistry(ctx, "registry", &components.RegistryArgs{
		ResourceGroupName: rg.Name,
		Location:          location,
		Name:              names.Registry,
		Sku:               cfg.RegistrySku,
		Tags:              cfg.Tags,
		Protect:           cfg.Protect,
	})
	if err != nil {
		return nil, err
	}

	image := pulumi.String(cfg.Consumer.Image).ToStringOutput()
	var build *components.ImageBuild
	if cfg.BuildsImage() {
		src := cfg.ImageSource()
		build, err = components.NewImageBuild(ctx, "consumer-image", &components.ImageBuildArgs{
			ResourceGroupName: rg.Name,
			RegistryName:      registry.Name,
			LoginServer:       registry.LoginServer,
			Location:          location,
			Repository:        ConsumerImageRepository,
			Source:            src,
			TimeoutSeconds:    cfg.ImageBuildTimeoutSeconds,
		})
		if err != nil {
			return nil, err
		}
		image = build.Image
		if !src.IsCommit() {
			if err := ctx.Log.Warn(fmt.Sprintf("%s:imageSourceRef %q is a branch or tag, not a commit: the image tag %q will not change when it moves, "+
				"so a later `pulumi up` neither rebuilds nor rolls out; set it to the commit to deploy (CI passes the commit SHA)",
				Project, src.Ref, components.ImageTag(src.Ref)), nil); err != nil {
				return nil, fmt.Errorf("logging the image source warning: %w", err)
			}
		}
	}
	return &Stack{
		Config: cfg, Names: names, ResourceGroup: rg, Network: net, Storage: store, Registry: registry,
		ImageBuild: build, ConsumerImage: image,
		subscriptionID: pulumi.String(client.SubscriptionId).ToStringOutput(), deployerID: client.ObjectId,
	}, nil
}

// networkArgs is the stack's VNet with the platform's subnet: the AKS node subnet, or the
// Container Apps environment's infrastructure subnet (delegated to Microsoft.App/environments).
func networkArgs(cfg Config, names *Names, rg pulumi.StringInput) *components.NetworkArgs {
	args := &components.NetworkArgs{
		ResourceGroupName: rg,
		Location:          pulumi.String(cfg.Location),
		VnetName:          names.VirtualNetwork,
		SubnetName:        names.AksSubnet,
		AddressSpace:      cfg.VnetAddressSpace,
		SubnetPrefix:      cfg.AksSubnetPrefix,
		Tags:              cfg.Tags,
	}
	if cfg.OnContainerApps() {
		args.SubnetName, args.SubnetPrefix = names.ContainerAppsSubnet, cfg.ContainerAppsSubnetPrefix
		args.SubnetKey, args.Delegation = "aca", components.ContainerAppsSubnetDelegation
	}
	return args
}

// deployCluster creates the AKS side: the cluster, managed Prometheus when on, the workload
// identity, and (Entra-only cluster) the deployer's AKS RBAC Cluster Admin.
func (s *Stack) deployCluster(ctx *pulumi.Context) error {
	cfg, names := s.Config, s.Names
	location := pulumi.String(cfg.Location)
	cluster, err := components.NewCluster(ctx, "cluster", &components.ClusterArgs{
		ResourceGroupName: s.ResourceGroup.Name,
		Location:          location,
		ClusterName:       names.Cluster,
		IdentityName:      names.ClusterIdentity,
		WorkspaceName:     names.LogAnalytics,
		NodeResourceGroup: names.NodeResourceGroup,
		SubnetID:          s.Network.SubnetID,
		RegistryID:        s.Registry.ID,
		SubscriptionID:    s.subscriptionID,
		Spec: components.ClusterSpec{
			KubernetesVersion:           cfg.KubernetesVersion,
			SystemNodeCount:             cfg.SystemNodeCount,
			SystemNodeVMSize:            cfg.SystemNodeVMSize,
			SystemNodeZones:             cfg.SystemNodeZones,
			UpgradeChannel:              cfg.UpgradeChannel,
			NodeOSUpgradeChannel:        cfg.NodeOSUpgradeChannel,
			PodCidr:                     cfg.PodCidr,
			ServiceCidr:                 cfg.ServiceCidr,
			DNSServiceIP:                cfg.DNSServiceIP,
			APIServerAuthorizedIPRanges: cfg.APIServerAuthorizedIPRanges,
			LogRetentionDays:            cfg.LogRetentionDays,
			Tier:                        cfg.ClusterTier,
			ManagedPrometheus:           cfg.ManagedPrometheus,
			MaintenanceWindow:           cfg.MaintenanceWindowOrNil(),
			LocalAccounts:               cfg.LocalAccounts,
		},
		Tags:    cfg.Tags,
		Protect: cfg.Protect,
	})
	if err != nil {
		return err
	}
	s.Cluster = cluster

	prometheus, err := deployMonitoring(ctx, cfg, names, s.ResourceGroup.Name, cluster)
	if err != nil {
		return err
	}
	s.Prometheus = prometheus

	wi, err := components.NewWorkloadIdentity(ctx, "workload-identity", &components.WorkloadIdentityArgs{
		ResourceGroupName:  s.ResourceGroup.Name,
		Location:           location,
		IdentityName:       names.WorkloadIdentity,
		SubscriptionID:     s.subscriptionID,
		QueueID:            s.Storage.QueueID,
		PoisonQueueID:      s.Storage.PoisonQueueID,
		TableID:            s.Storage.TableID,
		IssuerURL:          cluster.OIDCIssuerURL,
		Namespace:          cfg.Consumer.Namespace,
		ServiceAccountName: cfg.Consumer.ServiceAccountName,
		CredentialName:     names.FederatedCredential,
		KedaCredentialName: names.KedaCredential,
		Tags:               cfg.Tags,
	})
	if err != nil {
		return err
	}
	s.WorkloadIdentity = wi

	// Entra-only cluster: whoever runs `pulumi up` reaches the Kubernetes API through Azure RBAC
	// for Kubernetes; every Kubernetes object waits for the grants (workload.Args.KubernetesAccess)
	// and then for the API server to accept the deployer (the role takes minutes to propagate).
	if !cfg.LocalAccounts {
		grants, err := s.grantClusterAdmins(ctx, cluster.ManagedCluster.ID().ToStringOutput())
		if err != nil {
			return err
		}
		s.KubernetesAccess = append(s.KubernetesAccess, grants...)
	}
	return nil
}

// ClusterAdminsUnsetWarning is logged when an Entra-only cluster's admins follow the deployer.
const ClusterAdminsUnsetWarning = Project + ":clusterAdmins is unset: Azure Kubernetes Service RBAC Cluster Admin on the cluster goes to " +
	"whoever runs `pulumi up`. When a different principal runs `up` next (CI after a laptop, or back), Pulumi replaces that grant: " +
	"the previous deployer loses access to the Kubernetes API, and the new one is refused (403) until its own grant has propagated, " +
	"so `pulumi refresh` and previews fail meanwhile. Set clusterAdmins to the object ids of the people, groups and pipelines that " +
	"deploy this stack (docs/deploy.md, \"Who is cluster admin\"; `make preflight STACK=<stack>` says whether you are one of them)"

// grantClusterAdmins gives AKS RBAC Cluster Admin on the cluster (scope) to each of clusterAdmins,
// each grant named by its object id so that who runs `up` changes none of them; with the key
// unset, to the deploying principal, with a warning that it follows the deployer.
func (s *Stack) grantClusterAdmins(ctx *pulumi.Context, scope pulumi.StringOutput) ([]pulumi.Resource, error) {
	cfg := s.Config
	role := components.RoleDefinitionID(s.subscriptionID, components.RoleAKSRBACClusterAdmin)
	if len(cfg.ClusterAdmins) == 0 {
		if err := ctx.Log.Warn(ClusterAdminsUnsetWarning, nil); err != nil {
			return nil, fmt.Errorf("logging the cluster admin warning: %w", err)
		}
		ra, err := authorization.NewRoleAssignment(ctx, "deployer-aks-rbac-cluster-admin", &authorization.RoleAssignmentArgs{
			PrincipalId:      pulumi.String(s.deployerID),
			PrincipalType:    authorization.PrincipalType(cfg.DeployerPrincipalType),
			RoleDefinitionId: role,
			Scope:            scope,
		})
		if err != nil {
			return nil, fmt.Errorf("granting the deployer AKS RBAC Cluster Admin: %w", err)
		}
		return []pulumi.Resource{ra}, nil
	}
	grants := make([]pulumi.Resource, 0, len(cfg.ClusterAdmins))
	for _, a := range cfg.ClusterAdmins {
		ra, err := authorization.NewRoleAssignment(ctx, "cluster-admin-"+strings.ToLower(a.ObjectID), &authorization.RoleAssignmentArgs{
			PrincipalId:      pulumi.String(a.ObjectID),
			PrincipalType:    authorization.PrincipalType(a.Type),
			RoleDefinitionId: role,
			Scope:            scope,
		}, s.takeOver(a.ObjectID, "deployer-aks-rbac-cluster-admin")...)
		if err != nil {
			return nil, fmt.Errorf("granting %s %s AKS RBAC Cluster Admin: %w", a.Type, a.ObjectID, err)
		}
		grants = append(grants, ra)
	}
	return grants, nil
}

// DataOperatorsUnsetWarning is logged when a grantDeployer* key is on and dataOperators is unset:
// the data roles follow the deployer.
const DataOperatorsUnsetWarning = Project + ":dataOperators is unset: the grantDeployer* data roles (the producer's, " +
	"`make verify`'s and `make redrive`'s access to the queue, table and poison queue) go to whoever runs `pulumi up`. " +
	"When a different principal runs `up` next (CI after a laptop, or back), Pulumi replaces those grants and the previous " +
	"deployer loses that access. Set dataOperators to the object ids of the people, groups and pipelines that run them " +
	"(docs/deploy.md, \"Who gets the data roles\")"

// dataOperator is a principal the grantDeployer* data roles go to; prefix names its grants.
type dataOperator struct {
	prefix   string
	id       pulumi.StringInput
	kind     string
	objectID string // "" for the deployer's own grants
}

// takeOver is the options of a grant to the listed principal objectID that the unset key gave
// the deployer as oldName: when the deployer is that principal, the grant is oldName renamed
// (an alias), replaced delete-first if its principal's spelling or type differs. Without it, the
// `up` that sets the key would create the listed grant while oldName still holds the same role
// for the same principal at the same scope, which Azure refuses (RoleAssignmentExists), and
// delete oldName only after.
func (s *Stack) takeOver(objectID, oldName string) []pulumi.ResourceOption {
	if objectID == "" || !strings.EqualFold(objectID, s.deployerID) {
		return nil
	}
	return []pulumi.ResourceOption{pulumi.Aliases([]pulumi.Alias{{Name: pulumi.String(oldName)}}), pulumi.DeleteBeforeReplace(true)}
}

// deployDeployerGrants gives the data roles the grantDeployer* keys ask for, on either target:
// to each of dataOperators, each grant named by its object id so that who runs `up` changes
// none of them; with that key unset, to the deploying principal (grants named deployer-*), with
// a warning that they follow the deployer.
func (s *Stack) deployDeployerGrants(ctx *pulumi.Context) error {
	cfg := s.Config
	type grant struct {
		name, role string
		scope      pulumi.StringOutput
	}
	var grants []grant
	if cfg.GrantDeployerQueueAccess {
		// The producer runs on an operator workstation with the operator's own Entra identity.
		grants = append(grants, grant{"queue-data-contributor", components.RoleStorageQueueDataContributor, s.Storage.QueueID})
	}
	if cfg.GrantDeployerVerifyAccess {
		// `verify` (cmd/verify) runs with the operator's or CI's own Entra identity: it reads and
		// deletes the entities of its burst and peeks the poison queue.
		grants = append(grants,
			grant{"table-data-contributor", components.RoleStorageTableDataContributor, s.Storage.TableID},
			grant{"poison-queue-data-reader", components.RoleStorageQueueDataReader, s.Storage.PoisonQueueID})
	}
	if cfg.GrantDeployerRedriveAccess {
		// `redrive` (cmd/redrive) runs with the operator's own Entra identity: it reads, hides
		// (Update Message needs messages/write: Contributor, not Message Processor) and deletes
		// the poison queue's messages, and adds them to the queue. Sender, not Contributor, on
		// the queue: grantDeployerQueueAccess may already give the same principal Contributor
		// there, and Azure refuses a second assignment of one role at one scope.
		grants = append(grants,
			grant{"poison-queue-data-contributor", components.RoleStorageQueueDataContributor, s.Storage.PoisonQueueID},
			grant{"queue-data-message-sender", components.RoleStorageQueueDataMessageSender, s.Storage.QueueID})
	}
	if len(grants) == 0 {
		return nil
	}
	operators := make([]dataOperator, 0, len(cfg.DataOperators))
	for _, o := range cfg.DataOperators {
		operators = append(operators, dataOperator{"operator-" + strings.ToLower(o.ObjectID) + "-", pulumi.String(o.ObjectID), o.Type, o.ObjectID})
	}
	if len(operators) == 0 {
		if err := ctx.Log.Warn(DataOperatorsUnsetWarning, nil); err != nil {
			return fmt.Errorf("logging the data operators warning: %w", err)
		}
		operators = append(operators, dataOperator{"deployer-", pulumi.String(s.deployerID), cfg.DeployerPrincipalType, ""})
	}
	for _, o := range operators {
		for _, g := range grants {
			if _, err := authorization.NewRoleAssignment(ctx, o.prefix+g.name, &authorization.RoleAssignmentArgs{
				PrincipalId:      o.id,
				PrincipalType:    authorization.PrincipalType(o.kind),
				RoleDefinitionId: components.RoleDefinitionID(s.subscriptionID, g.role),
				Scope:            g.scope,
			}, s.takeOver(o.objectID, "deployer-"+g.name)...); err != nil {
				return fmt.Errorf("granting %s%s: %w", o.prefix, g.name, err)
			}
		}
	}
	return nil
}

// OutputKeys are the stack outputs, in the order docs/configuration.md documents them. Both targets export
// every key, so the outputs keep their shape; a key that has no meaning on the stack's target
// (the cluster's on Container Apps, the environment's on AKS) is "".
var OutputKeys = []string{
	"platform", "suffix", "resourceGroupName", "storageAccountName", "queueName", "tableName",
	"containerRegistryName", "containerRegistryLoginServer", "aksManagedIdentityName",
	"aksClusterName", "containerAppsEnvironmentName", "containerAppName",
	"workloadManagedIdentityName", "workloadManagedIdentityClientId",
	"serviceAccount", "federatedIdentityCredentialName", "kedaServiceAccountCredentialName",
	"oidcIssuerUrl", "kubeconfig", "deployState", "consumerImage", "consumerWorkload",
	"azureMonitorWorkspaceId", "prometheusQueryEndpoint",
}

// none is the value of an output that has no meaning on the stack's target.
func none() pulumi.StringOutput { return pulumi.String("").ToStringOutput() }

// Outputs are the stack outputs of SPEC §6; the kubeconfig is a secret.
func (s *Stack) Outputs() pulumi.Map {
	out := pulumi.Map{
		"platform":                     pulumi.String(s.Config.Platform),
		"suffix":                       s.Names.Suffix,
		"resourceGroupName":            s.ResourceGroup.Name,
		"storageAccountName":           s.Storage.AccountName,
		"queueName":                    s.Storage.QueueName,
		"tableName":                    s.Storage.TableName,
		"containerRegistryName":        s.Registry.Name,
		"containerRegistryLoginServer": s.Registry.LoginServer,
		"deployState":                  s.DeployState(),
		"consumerImage":                s.ConsumerImage,
		// Always exported, empty when managedPrometheus is off, so the outputs do not change shape.
		"azureMonitorWorkspaceId": s.prometheusOutput(func(p *components.ManagedPrometheus) pulumi.StringOutput { return p.WorkspaceID }),
		"prometheusQueryEndpoint": s.prometheusOutput(func(p *components.ManagedPrometheus) pulumi.StringOutput { return p.QueryEndpoint }),
	}
	if aca := s.ContainerApps; aca != nil {
		target := pulumi.Map{
			"aksManagedIdentityName":           none(),
			"aksClusterName":                   none(),
			"containerAppsEnvironmentName":     aca.EnvironmentName,
			"containerAppName":                 aca.AppName,
			"workloadManagedIdentityName":      s.ConsumerIdentity.Name,
			"workloadManagedIdentityClientId":  s.ConsumerIdentity.ClientID,
			"serviceAccount":                   none(),
			"federatedIdentityCredentialName":  none(),
			"kedaServiceAccountCredentialName": none(),
			"oidcIssuerUrl":                    none(),
			"kubeconfig":                       pulumi.ToSecret(none()),
			"consumerWorkload": pulumi.StringMap{
				"platform":          pulumi.String(PlatformContainerApps),
				"scaleMode":         pulumi.String(s.Config.Consumer.ScaleMode),
				"resourceGroupName": s.ResourceGroup.Name,
				"environmentName":   aca.EnvironmentName,
				"appName":           aca.AppName,
				"appId":             aca.AppID,
				"appKind":           pulumi.String(aca.AppKind),
			},
		}
		for k, v := range target {
			out[k] = v
		}
		return out
	}
	workload := pulumi.StringMap{"platform": pulumi.String(PlatformAKS)}
	for k, v := range s.Config.Consumer.WorkloadOutput() {
		workload[k] = pulumi.String(v)
	}
	target := pulumi.Map{
		"aksManagedIdentityName":           s.Cluster.IdentityName,
		"aksClusterName":                   s.Cluster.Name,
		"containerAppsEnvironmentName":     none(),
		"containerAppName":                 none(),
		"workloadManagedIdentityName":      s.WorkloadIdentity.Name,
		"workloadManagedIdentityClientId":  s.WorkloadIdentity.ClientID,
		"serviceAccount":                   pulumi.String(s.Config.Consumer.ServiceAccountName),
		"federatedIdentityCredentialName":  s.WorkloadIdentity.CredentialName,
		"kedaServiceAccountCredentialName": s.WorkloadIdentity.KedaCredentialName,
		"oidcIssuerUrl":                    s.Cluster.OIDCIssuerURL,
		"kubeconfig":                       s.Cluster.Kubeconfig, // secret from the cluster component
		"consumerWorkload":                 workload,
	}
	for k, v := range target {
		out[k] = v
	}
	return out
}

// prometheusOutput is get(s.Prometheus), or "" when managed Prometheus is off.
func (s *Stack) prometheusOutput(get func(*components.ManagedPrometheus) pulumi.StringOutput) pulumi.StringOutput {
	if s.Prometheus == nil {
		return pulumi.String("").ToStringOutput()
	}
	return get(s.Prometheus)
}

// DeployState renders the KEY=VALUE lines the original script wrote to deploy.state, so
// `pulumi stack output deployState > deploy.state` keeps old tooling working. On Container Apps
// the cluster's lines give way to the environment's and the app's (or job's).
func (s *Stack) DeployState() pulumi.StringOutput {
	type line struct {
		key   string
		value pulumi.StringInput
	}
	lines := []line{
		{"SUFFIX", s.Names.Suffix},
		{"RESOURCE_GROUP", s.ResourceGroup.Name},
		{"AZURE_STORAGE_ACCOUNT_NAME", s.Storage.AccountName},
		{"AZURE_QUEUE_NAME", s.Storage.QueueName},
		{"AZURE_TABLE_NAME", s.Storage.TableName},
		{"AZURE_COSMOSDB_TABLE", s.Storage.TableName},
		{"AZURE_CONTAINER_REGISTRY_NAME", s.Registry.Name},
	}
	if aca := s.ContainerApps; aca != nil {
		appKey := "CONTAINER_APP_NAME"
		if aca.AppKind == components.ContainerAppsKindJob {
			appKey = "CONTAINER_APPS_JOB_NAME"
		}
		lines = append(lines,
			line{"CONTAINER_APPS_ENVIRONMENT_NAME", aca.EnvironmentName},
			line{appKey, aca.AppName},
			line{"WORKLOAD_MANAGED_IDENTITY_NAME", s.ConsumerIdentity.Name},
		)
	} else {
		lines = append(lines,
			line{"AKS_MANAGED_IDENTITY_NAME", s.Cluster.IdentityName},
			line{"AKS_CLUSTER_NAME", s.Cluster.Name},
			line{"WORKLOAD_MANAGED_IDENTITY_NAME", s.WorkloadIdentity.Name},
			line{"SERVICE_ACCOUNT", pulumi.String(s.Config.Consumer.ServiceAccountName)},
			line{"FEDERATED_IDENTITY_CREDENTIAL_NAME", s.WorkloadIdentity.CredentialName},
			line{"KEDA_SERVICE_ACCT_CRED_NAME", s.WorkloadIdentity.KedaCredentialName},
		)
	}
	values := make([]any, len(lines))
	for i, l := range lines {
		values[i] = l.value
	}
	return pulumi.All(values...).ApplyT(func(v []any) string {
		var b strings.Builder
		for i, l := range lines {
			fmt.Fprintf(&b, "%s=%s\n", l.key, v[i].(string))
		}
		return b.String()
	}).(pulumi.StringOutput)
}

// MaintenanceWindowOrNil is the configured window, or nil when the key is left at its default `{}`.
func (c Config) MaintenanceWindowOrNil() *components.MaintenanceWindow {
	if c.MaintenanceWindow == (components.MaintenanceWindow{}) {
		return nil
	}
	w := c.MaintenanceWindow
	return &w
}
