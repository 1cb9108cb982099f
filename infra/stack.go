package infra

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/authorization/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/resources/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/components"
)

// Stack is the Azure side of one environment.
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
}

// Deploy composes the Azure components for one stack.
func Deploy(ctx *pulumi.Context, cfg Config) (*Stack, error) {
	names, err := NewNames(ctx, cfg)
	if err != nil {
		return nil, err
	}
	client := authorization.GetClientConfigOutput(ctx)
	subscriptionID := client.SubscriptionId()
	location := pulumi.String(cfg.Location)

	rg, err := resources.NewResourceGroup(ctx, "rg", &resources.ResourceGroupArgs{
		ResourceGroupName: names.ResourceGroup,
		Location:          location,
		Tags:              pulumi.ToStringMap(cfg.Tags),
	})
	if err != nil {
		return nil, fmt.Errorf("creating resource group: %w", err)
	}

	net, err := components.NewNetwork(ctx, "network", &components.NetworkArgs{
		ResourceGroupName: rg.Name,
		Location:          location,
		VnetName:          names.VirtualNetwork,
		SubnetName:        names.AksSubnet,
		AddressSpace:      cfg.VnetAddressSpace,
		SubnetPrefix:      cfg.AksSubnetPrefix,
		Tags:              cfg.Tags,
	})
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

	cluster, err := components.NewCluster(ctx, "cluster", &components.ClusterArgs{
		ResourceGroupName: rg.Name,
		Location:          location,
		ClusterName:       names.Cluster,
		IdentityName:      names.ClusterIdentity,
		WorkspaceName:     names.LogAnalytics,
		NodeResourceGroup: names.NodeResourceGroup,
		SubnetID:          net.SubnetID,
		RegistryID:        registry.ID,
		SubscriptionID:    subscriptionID,
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
			MaintenanceWindow:           cfg.maintenanceWindow(),
			LocalAccounts:               cfg.LocalAccounts,
		},
		Tags:    cfg.Tags,
		Protect: cfg.Protect,
	})
	if err != nil {
		return nil, err
	}

	prometheus, err := deployMonitoring(ctx, cfg, names, rg.Name, cluster)
	if err != nil {
		return nil, err
	}

	wi, err := components.NewWorkloadIdentity(ctx, "workload-identity", &components.WorkloadIdentityArgs{
		ResourceGroupName:  rg.Name,
		Location:           location,
		IdentityName:       names.WorkloadIdentity,
		SubscriptionID:     subscriptionID,
		QueueID:            store.QueueID,
		PoisonQueueID:      store.PoisonQueueID,
		TableID:            store.TableID,
		IssuerURL:          cluster.OIDCIssuerURL,
		Namespace:          cfg.Consumer.Namespace,
		ServiceAccountName: cfg.Consumer.ServiceAccountName,
		CredentialName:     names.FederatedCredential,
		KedaCredentialName: names.KedaCredential,
		Tags:               cfg.Tags,
	})
	if err != nil {
		return nil, err
	}

	// Entra-only cluster: the identity running `pulumi up` reaches the Kubernetes API through Azure
	// RBAC for Kubernetes, so it gets AKS RBAC Cluster Admin on this cluster; every Kubernetes
	// object waits for it (workload.Args.KubernetesAccess).
	var k8sAccess []pulumi.Resource
	if !cfg.LocalAccounts {
		ra, err := authorization.NewRoleAssignment(ctx, "deployer-aks-rbac-cluster-admin", &authorization.RoleAssignmentArgs{
			PrincipalId:      client.ObjectId(),
			PrincipalType:    authorization.PrincipalType(cfg.DeployerPrincipalType),
			RoleDefinitionId: components.RoleDefinitionID(subscriptionID, components.RoleAKSRBACClusterAdmin),
			Scope:            cluster.ManagedCluster.ID().ToStringOutput(),
		})
		if err != nil {
			return nil, fmt.Errorf("granting the deployer AKS RBAC Cluster Admin: %w", err)
		}
		k8sAccess = append(k8sAccess, ra)
	}

	if cfg.GrantDeployerQueueAccess {
		// The producer runs on an operator workstation with the operator's own Entra identity.
		if _, err := authorization.NewRoleAssignment(ctx, "deployer-queue-data-contributor", &authorization.RoleAssignmentArgs{
			PrincipalId:      client.ObjectId(),
			PrincipalType:    authorization.PrincipalType(cfg.DeployerPrincipalType),
			RoleDefinitionId: components.RoleDefinitionID(subscriptionID, components.RoleStorageQueueDataContributor),
			Scope:            store.QueueID,
		}); err != nil {
			return nil, fmt.Errorf("granting the deployer queue access: %w", err)
		}
	}
	if cfg.GrantDeployerVerifyAccess {
		// `verify` (cmd/verify) runs with the operator's or CI's own Entra identity: it reads and
		// deletes the entities of its burst and peeks the poison queue.
		for _, g := range []struct {
			name, role string
			scope      pulumi.StringOutput
		}{
			{"deployer-table-data-contributor", components.RoleStorageTableDataContributor, store.TableID},
			{"deployer-poison-queue-data-reader", components.RoleStorageQueueDataReader, store.PoisonQueueID},
		} {
			if _, err := authorization.NewRoleAssignment(ctx, g.name, &authorization.RoleAssignmentArgs{
				PrincipalId:      client.ObjectId(),
				PrincipalType:    authorization.PrincipalType(cfg.DeployerPrincipalType),
				RoleDefinitionId: components.RoleDefinitionID(subscriptionID, g.role),
				Scope:            g.scope,
			}); err != nil {
				return nil, fmt.Errorf("granting the deployer %s: %w", g.name, err)
			}
		}
	}

	return &Stack{
		Config: cfg, Names: names, ResourceGroup: rg, Network: net, Storage: store,
		Registry: registry, Cluster: cluster, WorkloadIdentity: wi,
		ImageBuild: build, ConsumerImage: image, Prometheus: prometheus, KubernetesAccess: k8sAccess,
	}, nil
}

// OutputKeys are the stack outputs, in the order the README documents them.
var OutputKeys = []string{
	"suffix", "resourceGroupName", "storageAccountName", "queueName", "tableName",
	"containerRegistryName", "containerRegistryLoginServer", "aksManagedIdentityName",
	"aksClusterName", "workloadManagedIdentityName", "workloadManagedIdentityClientId",
	"serviceAccount", "federatedIdentityCredentialName", "kedaServiceAccountCredentialName",
	"oidcIssuerUrl", "kubeconfig", "deployState", "consumerImage", "consumerWorkload",
	"azureMonitorWorkspaceId", "prometheusQueryEndpoint",
}

// Outputs are the stack outputs of SPEC §6; the kubeconfig is a secret.
func (s *Stack) Outputs() pulumi.Map {
	sa := s.Config.Consumer.ServiceAccountName
	return pulumi.Map{
		"suffix":                           s.Names.Suffix,
		"resourceGroupName":                s.ResourceGroup.Name,
		"storageAccountName":               s.Storage.AccountName,
		"queueName":                        s.Storage.QueueName,
		"tableName":                        s.Storage.TableName,
		"containerRegistryName":            s.Registry.Name,
		"containerRegistryLoginServer":     s.Registry.LoginServer,
		"aksManagedIdentityName":           s.Cluster.IdentityName,
		"aksClusterName":                   s.Cluster.Name,
		"workloadManagedIdentityName":      s.WorkloadIdentity.Name,
		"workloadManagedIdentityClientId":  s.WorkloadIdentity.ClientID,
		"serviceAccount":                   pulumi.String(sa),
		"federatedIdentityCredentialName":  s.WorkloadIdentity.CredentialName,
		"kedaServiceAccountCredentialName": s.WorkloadIdentity.KedaCredentialName,
		"oidcIssuerUrl":                    s.Cluster.OIDCIssuerURL,
		"kubeconfig":                       s.Cluster.Kubeconfig, // secret from the cluster component
		"deployState":                      s.DeployState(),
		"consumerImage":                    s.ConsumerImage,
		"consumerWorkload":                 pulumi.ToStringMap(s.Config.Consumer.WorkloadOutput()),
		// Always exported, empty when managedPrometheus is off, so the outputs do not change shape.
		"azureMonitorWorkspaceId": s.prometheusOutput(func(p *components.ManagedPrometheus) pulumi.StringOutput { return p.WorkspaceID }),
		"prometheusQueryEndpoint": s.prometheusOutput(func(p *components.ManagedPrometheus) pulumi.StringOutput { return p.QueryEndpoint }),
	}
}

// prometheusOutput is get(s.Prometheus), or "" when managed Prometheus is off.
func (s *Stack) prometheusOutput(get func(*components.ManagedPrometheus) pulumi.StringOutput) pulumi.StringOutput {
	if s.Prometheus == nil {
		return pulumi.String("").ToStringOutput()
	}
	return get(s.Prometheus)
}

// DeployState renders the KEY=VALUE lines the original script wrote to deploy.state, so
// `pulumi stack output deployState > deploy.state` keeps old tooling working.
func (s *Stack) DeployState() pulumi.StringOutput {
	return pulumi.All(
		s.Names.Suffix, s.ResourceGroup.Name, s.Storage.AccountName, s.Storage.QueueName,
		s.Storage.TableName, s.Registry.Name, s.Cluster.IdentityName, s.Cluster.Name,
		s.WorkloadIdentity.Name, s.WorkloadIdentity.CredentialName, s.WorkloadIdentity.KedaCredentialName,
	).ApplyT(func(v []any) string {
		str := func(i int) string { return v[i].(string) }
		lines := []string{
			"SUFFIX=" + str(0),
			"RESOURCE_GROUP=" + str(1),
			"AZURE_STORAGE_ACCOUNT_NAME=" + str(2),
			"AZURE_QUEUE_NAME=" + str(3),
			"AZURE_TABLE_NAME=" + str(4),
			"AZURE_COSMOSDB_TABLE=" + str(4),
			"AZURE_CONTAINER_REGISTRY_NAME=" + str(5),
			"AKS_MANAGED_IDENTITY_NAME=" + str(6),
			"AKS_CLUSTER_NAME=" + str(7),
			"WORKLOAD_MANAGED_IDENTITY_NAME=" + str(8),
			"SERVICE_ACCOUNT=" + s.Config.Consumer.ServiceAccountName,
			"FEDERATED_IDENTITY_CREDENTIAL_NAME=" + str(9),
			"KEDA_SERVICE_ACCT_CRED_NAME=" + str(10),
		}
		return strings.Join(lines, "\n") + "\n"
	}).(pulumi.StringOutput)
}

// maintenanceWindow is the configured window, or nil when the key is left at its default `{}`.
func (c Config) maintenanceWindow() *components.MaintenanceWindow {
	if c.MaintenanceWindow == (components.MaintenanceWindow{}) {
		return nil
	}
	w := c.MaintenanceWindow
	return &w
}
