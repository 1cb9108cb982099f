package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
)

var update = flag.Bool("update", false, "regenerate testdata/inventory.<stack>.golden from the current program")

const (
	tCluster      = "azure-native:containerservice:ManagedCluster"
	tAgentPool    = "azure-native:containerservice:AgentPool"
	tRole         = "azure-native:authorization:RoleAssignment"
	tFIC          = "azure-native:managedidentity:FederatedIdentityCredential"
	tIdentity     = "azure-native:managedidentity:UserAssignedIdentity"
	tAccount      = "azure-native:storage:StorageAccount"
	tQueue        = "azure-native:storage:Queue"
	tTable        = "azure-native:storage:Table"
	tRegistry     = "azure-native:containerregistry:Registry"
	tSubnet       = "azure-native:network:Subnet"
	tWorkspace    = "azure-native:operationalinsights:Workspace"
	tRandom       = "random:index/randomString:RandomString"
	tResourceGrp  = "azure-native:resources:ResourceGroup"
	tDCR          = "azure-native:monitor:DataCollectionRule"
	tDCRA         = "azure-native:monitor:DataCollectionRuleAssociation"
	tManagedEnv   = "azure-native:app:ManagedEnvironment"
	tContainerApp = "azure-native:app:ContainerApp"
	tACAJob       = "azure-native:app:Job"
	tDiagnostics  = "azure-native:monitor:DiagnosticSetting"
)

// TestStacks runs the program once per Pulumi.<stack>.yaml, with the config loaded as the CLI
// would, and checks what every stack must have.
func TestStacks(t *testing.T) {
	for _, stack := range aksStackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg := loadStackConfig(t, stack)
			run := runStack(t, stack, cfg)
			m := run.mocks
			sfx := pulumitest.RandomResult

			// Naming scheme (SPEC §3).
			rnd := m.One(t, tRandom)
			assert.EqualValues(t, 6, rnd.Input("length"))
			assert.Equal(t, false, rnd.Input("upper"))
			assert.Equal(t, false, rnd.Input("special"))
			assert.Equal(t, "rg-aksdemo-"+sfx, m.One(t, tResourceGrp).Input("resourceGroupName"))
			assert.Equal(t, "storaksdemo"+sfx, m.One(t, tAccount).Input("accountName"))
			assert.Equal(t, "acraksdemo"+sfx, m.One(t, tRegistry).Input("registryName"))
			assert.Equal(t, "aks-aksdemo-"+sfx, m.One(t, tCluster).Input("resourceName"))
			assert.Equal(t, "mi-aksdemo-"+sfx, m.Get(t, tIdentity, "cluster-identity").Input("resourceName"))
			assert.Equal(t, "mi-aks-workload-identity-"+sfx, m.Get(t, tIdentity, "workload-identity-identity").Input("resourceName"))
			assert.Equal(t, "federated-credential-"+sfx, m.Get(t, tFIC, "workload-identity-sa-credential").Input("federatedIdentityCredentialResourceName"))
			assert.Equal(t, "fed-cred-aksdemo-kedasvc-"+sfx, m.Get(t, tFIC, "workload-identity-keda-credential").Input("federatedIdentityCredentialResourceName"))
			assert.Equal(t, "MC_rg-aksdemo-"+sfx+"_aks-aksdemo-"+sfx+"_westus3", m.One(t, tCluster).Input("nodeResourceGroup"))
			assert.Equal(t, "aws2azmsgs", m.Get(t, tQueue, "storage-queue").Input("queueName"))
			assert.Equal(t, "aws2azpmts", m.One(t, tTable).Input("tableName"))

			// Every Azure resource that takes tags carries owner and environment.
			for _, r := range m.Resources() {
				if _, ok := r.Inputs["tags"]; !ok {
					continue
				}
				assert.Equal(t, stack, r.Input("tags.environment"), "%s %s: tags.environment", r.Type, r.Name)
				assert.NotEmpty(t, r.Input("tags.owner"), "%s %s: tags.owner", r.Type, r.Name)
			}

			// Protection follows the stack's config: prod protects, dev does not.
			wantProtect := cfg[infra.Project+":protect"] == "true"
			for _, typ := range []string{tAccount, tRegistry, tCluster} {
				assert.Equal(t, wantProtect, m.One(t, typ).Protect, "%s protect", typ)
			}
			for _, r := range m.Resources() {
				if r.Type != tAccount && r.Type != tRegistry && r.Type != tCluster {
					assert.False(t, r.Protect, "%s %s must not be protected", r.Type, r.Name)
				}
			}

			// Outputs (SPEC §6).
			for _, k := range infra.OutputKeys {
				o, ok := run.outputs[k]
				require.True(t, ok, "output %s missing", k)
				assert.True(t, o.Known, "output %s unknown", k)
			}
			assert.Len(t, run.outputs, len(infra.OutputKeys))
			assert.Equal(t, sfx, run.outputs["suffix"].Value)
			assert.Equal(t, "client-id-of-mi-aks-workload-identity-"+sfx, run.outputs["workloadManagedIdentityClientId"].Value)
			assert.Equal(t, "acraksdemo"+sfx+".azurecr.io", run.outputs["containerRegistryLoginServer"].Value)
			wantState := strings.Join([]string{
				"SUFFIX=" + sfx,
				"RESOURCE_GROUP=rg-aksdemo-" + sfx,
				"AZURE_STORAGE_ACCOUNT_NAME=storaksdemo" + sfx,
				"AZURE_QUEUE_NAME=aws2azmsgs",
				"AZURE_TABLE_NAME=aws2azpmts",
				"AZURE_COSMOSDB_TABLE=aws2azpmts",
				"AZURE_CONTAINER_REGISTRY_NAME=acraksdemo" + sfx,
				"AKS_MANAGED_IDENTITY_NAME=mi-aksdemo-" + sfx,
				"AKS_CLUSTER_NAME=aks-aksdemo-" + sfx,
				"WORKLOAD_MANAGED_IDENTITY_NAME=mi-aks-workload-identity-" + sfx,
				"SERVICE_ACCOUNT=aqs-app-service-account",
				"FEDERATED_IDENTITY_CREDENTIAL_NAME=federated-credential-" + sfx,
				"KEDA_SERVICE_ACCT_CRED_NAME=fed-cred-aksdemo-kedasvc-" + sfx,
			}, "\n") + "\n"
			assert.Equal(t, wantState, run.outputs["deployState"].Value)
			// verify finds the workload through this output (cmd/verify); names as the stack's config.
			assert.Equal(t, map[string]string{
				"platform": "aks", "namespace": "aqs-demo", "scaleMode": cfgOr(cfg, "scaleMode", "ScaledObject"),
				"deploymentName": "aqs-app", "scaledObjectName": "aws2az-queue-scaleobj",
				"scaledJobName": "aws2az-queue-scaledjob", "nodePoolName": "aqs-app-pool", "appLabel": "aqs-reader",
			}, run.outputs["consumerWorkload"].Value, "consumerWorkload")

			checkGolden(t, stack, m)
		})
	}
}

// TestProgramRunsEveryStack runs main's program function itself, as pulumi.Run would.
func TestProgramRunsEveryStack(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg := loadStackConfig(t, stack)
			m, err := runProgram(stack, cfg)
			require.NoError(t, err)
			if cfg[infra.Project+":platform"] == infra.PlatformContainerApps {
				assert.Empty(t, m.ByType(tCluster))
				assert.NotEmpty(t, m.ByType(tManagedEnv))
			} else {
				assert.NotEmpty(t, m.ByType(tCluster))
				assert.Empty(t, m.ByType(tManagedEnv))
			}
		})
	}
}

// Pitfall 1 (SPEC §7): NAP needs Azure CNI overlay + Cilium (dataplane and policy), IPv4 only,
// and no pool with the cluster autoscaler.
func TestPitfallNAPNetworkProfile(t *testing.T) {
	for _, stack := range aksStackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			m := runStack(t, stack, loadStackConfig(t, stack)).mocks
			mc := m.One(t, tCluster)
			assert.Equal(t, "Auto", mc.Input("nodeProvisioningProfile.mode"), "nodeProvisioningProfile.mode")
			assert.Equal(t, "azure", mc.Input("networkProfile.networkPlugin"))
			assert.Equal(t, "overlay", mc.Input("networkProfile.networkPluginMode"))
			assert.Equal(t, "cilium", mc.Input("networkProfile.networkDataplane"))
			assert.Equal(t, "cilium", mc.Input("networkProfile.networkPolicy"))
			assert.Equal(t, []any{"IPv4"}, mc.Input("networkProfile.ipFamilies"))
			assert.Nil(t, mc.Input("autoScalerProfile"), "cluster autoscaler profile must not be set with NAP")
			pools, _ := mc.Input("agentPoolProfiles").([]any)
			for i, p := range pools {
				assert.NotEqual(t, true, lookupMap(p, "enableAutoScaling"), "agent pool %d has the autoscaler on", i)
			}
			for _, ap := range m.ByType(tAgentPool) {
				assert.NotEqual(t, true, ap.Input("enableAutoScaling"), "AgentPool %s has the autoscaler on", ap.Name)
			}
			assert.Equal(t, true, mc.Input("workloadAutoScalerProfile.keda.enabled"), "KEDA add-on")
			assert.Equal(t, true, mc.Input("oidcIssuerProfile.enabled"), "OIDC issuer")
			assert.Equal(t, true, mc.Input("securityProfile.workloadIdentity.enabled"), "workload identity")
		})
	}
}

// Pitfall 9 (SPEC §7): exactly one pool inline, the system pool, tainted at creation.
func TestPitfallOneInlineSystemPool(t *testing.T) {
	run := runStack(t, "dev", loadStackConfig(t, "dev"))
	mc := run.mocks.One(t, tCluster)
	pools, _ := mc.Input("agentPoolProfiles").([]any)
	require.Len(t, pools, 1, "only the system pool may be inline; add pools as AgentPool resources or rely on NAP")
	assert.Equal(t, "systempool", mc.Input("agentPoolProfiles.0.name"))
	assert.Equal(t, "System", mc.Input("agentPoolProfiles.0.mode"))
	assert.Equal(t, []any{components.SystemPoolTaint}, mc.Input("agentPoolProfiles.0.nodeTaints"))
	assert.EqualValues(t, 2, mc.Input("agentPoolProfiles.0.count"), "dev system pool size")
	assert.Equal(t, "Standard_D2ds_v5", mc.Input("agentPoolProfiles.0.vmSize"))
	assert.Equal(t, run.mocks.One(t, tSubnet).ID, mc.Input("agentPoolProfiles.0.vnetSubnetID"))
}

// Pitfalls 2 and 3 (SPEC §7): the second credential depends on the first; issuer is the cluster's
// output verbatim; subjects match the service account and the KEDA operator.
func TestPitfallFederatedCredentials(t *testing.T) {
	m := runStack(t, "dev", loadStackConfig(t, "dev")).mocks
	mc := m.One(t, tCluster)
	issuer := mc.Output("oidcIssuerProfile.issuerURL")
	require.NotEmpty(t, issuer)
	require.True(t, strings.HasSuffix(issuer.(string), "/"), "mock issuer keeps the trailing slash")

	sa := m.Get(t, tFIC, "workload-identity-sa-credential")
	keda := m.Get(t, tFIC, "workload-identity-keda-credential")
	wi := m.Get(t, tIdentity, "workload-identity-identity")
	settings := components.DefaultConsumerSettings()
	for _, fic := range []*pulumitest.Resource{sa, keda} {
		assert.Equal(t, issuer, fic.Input("issuer"), "%s issuer must be the cluster's output, verbatim", fic.Name)
		assert.Equal(t, []any{"api://AzureADTokenExchange"}, fic.Input("audiences"), "%s audiences", fic.Name)
		assert.Equal(t, wi.Output("name"), fic.Input("resourceName"), "%s must be on the workload identity", fic.Name)
		assert.True(t, fic.DeleteBeforeReplace, "%s must be delete-before-replace", fic.Name)
	}
	assert.Equal(t, "system:serviceaccount:"+settings.Namespace+":"+settings.ServiceAccountName, sa.Input("subject"))
	assert.Equal(t, "system:serviceaccount:kube-system:keda-operator", keda.Input("subject"))
	assert.True(t, keda.DependsOn(sa), "the KEDA credential must depend on the first (concurrent writes fail with 409)")
}

// Pitfall 3 with custom names: the subject follows the configured namespace and service account.
func TestFederatedSubjectFollowsConfig(t *testing.T) {
	cfg := withConfig(loadStackConfig(t, "dev"), "namespace", "edw", "serviceAccountName", "edw-reader")
	m := runStack(t, "dev", cfg).mocks
	assert.Equal(t, "system:serviceaccount:edw:edw-reader", m.Get(t, tFIC, "workload-identity-sa-credential").Input("subject"))
}

// Pitfalls 4 and 5 (SPEC §7): AcrPull for the kubelet identity, principal type everywhere.
func TestPitfallRoleAssignments(t *testing.T) {
	m := runStack(t, "dev", loadStackConfig(t, "dev")).mocks
	mc := m.One(t, tCluster)
	kubelet := mc.Output("identityProfile.kubeletidentity.objectId")
	controlPlane := m.Get(t, tIdentity, "cluster-identity")
	wi := m.Get(t, tIdentity, "workload-identity-identity")
	roleID := func(guid string) string {
		return "/subscriptions/" + pulumitest.SubscriptionID + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
	}

	acr := m.Get(t, tRole, "cluster-kubelet-acrpull")
	assert.Equal(t, kubelet, acr.Input("principalId"), "AcrPull must go to the kubelet identity")
	assert.NotEqual(t, controlPlane.Output("principalId"), acr.Input("principalId"), "AcrPull must not go to the control-plane identity")
	assert.Equal(t, roleID(components.RoleAcrPull), acr.Input("roleDefinitionId"))
	assert.Equal(t, m.One(t, tRegistry).ID, acr.Input("scope"))

	net := m.Get(t, tRole, "cluster-network-contributor")
	assert.Equal(t, controlPlane.Output("principalId"), net.Input("principalId"))
	assert.Equal(t, roleID(components.RoleNetworkContributor), net.Input("roleDefinitionId"))
	assert.Equal(t, m.One(t, tSubnet).ID, net.Input("scope"))
	assert.True(t, mc.DependsOn(net), "the cluster must wait for Network Contributor on its subnet")

	q := m.Get(t, tRole, "workload-identity-queue-data-contributor")
	assert.Equal(t, wi.Output("principalId"), q.Input("principalId"))
	assert.Equal(t, roleID(components.RoleStorageQueueDataContributor), q.Input("roleDefinitionId"))
	mainQueue := m.Get(t, tQueue, "storage-queue")
	poisonQueue := m.Get(t, tQueue, "storage-poison-queue")
	assert.Equal(t, "aws2azmsgs-poison", poisonQueue.Input("queueName"))
	assert.Equal(t, mainQueue.ID, q.Input("scope"), "queue role is scoped to the queue, not the account")
	pq := m.Get(t, tRole, "workload-identity-poison-queue-data-contributor")
	assert.Equal(t, wi.Output("principalId"), pq.Input("principalId"))
	assert.Equal(t, roleID(components.RoleStorageQueueDataContributor), pq.Input("roleDefinitionId"))
	assert.Equal(t, poisonQueue.ID, pq.Input("scope"), "the consumer must be able to write the poison queue")
	tb := m.Get(t, tRole, "workload-identity-table-data-contributor")
	assert.Equal(t, wi.Output("principalId"), tb.Input("principalId"))
	assert.Equal(t, roleID(components.RoleStorageTableDataContributor), tb.Input("roleDefinitionId"))
	assert.Equal(t, m.One(t, tTable).ID, tb.Input("scope"), "table role is scoped to the table, not the account")

	// dev grants the deployer queue access; its principal type comes from config (User).
	dep := m.Get(t, tRole, "deployer-queue-data-contributor")
	assert.Equal(t, pulumitest.DeployerObjectID, dep.Input("principalId"))
	assert.Equal(t, "User", dep.Input("principalType"))
	assert.Equal(t, mainQueue.ID, dep.Input("scope"))
	// ... and what `make verify` needs besides: the table (read, then delete its burst's
	// entities) and a look at the poison queue, each scoped to that one resource.
	depTable := m.Get(t, tRole, "deployer-table-data-contributor")
	assert.Equal(t, pulumitest.DeployerObjectID, depTable.Input("principalId"))
	assert.Equal(t, "User", depTable.Input("principalType"))
	assert.Equal(t, roleID(components.RoleStorageTableDataContributor), depTable.Input("roleDefinitionId"))
	assert.Equal(t, m.One(t, tTable).ID, depTable.Input("scope"))
	depPoison := m.Get(t, tRole, "deployer-poison-queue-data-reader")
	assert.Equal(t, pulumitest.DeployerObjectID, depPoison.Input("principalId"))
	assert.Equal(t, roleID(components.RoleStorageQueueDataReader), depPoison.Input("roleDefinitionId"))
	assert.Equal(t, poisonQueue.ID, depPoison.Input("scope"))
	// ... and what `make redrive` needs: the poison queue's messages read, hidden (Update
	// Message: Contributor) and deleted, and added to the queue (Sender, so that it never repeats
	// grantDeployerQueueAccess's Contributor at the same scope, which Azure refuses).
	depRedrive := m.Get(t, tRole, "deployer-poison-queue-data-contributor")
	assert.Equal(t, pulumitest.DeployerObjectID, depRedrive.Input("principalId"))
	assert.Equal(t, roleID(components.RoleStorageQueueDataContributor), depRedrive.Input("roleDefinitionId"))
	assert.Equal(t, poisonQueue.ID, depRedrive.Input("scope"))
	depSender := m.Get(t, tRole, "deployer-queue-data-message-sender")
	assert.Equal(t, pulumitest.DeployerObjectID, depSender.Input("principalId"))
	assert.Equal(t, "User", depSender.Input("principalType"))
	assert.Equal(t, roleID(components.RoleStorageQueueDataMessageSender), depSender.Input("roleDefinitionId"))
	assert.Equal(t, mainQueue.ID, depSender.Input("scope"))
	// No role is given twice at one scope to the deployer (Azure answers RoleAssignmentExists).
	type grant struct{ role, scope any }
	given := map[grant]string{}
	for _, r := range m.ByType(tRole) {
		if !strings.HasPrefix(r.Name, "deployer-") {
			continue
		}
		g := grant{r.Input("roleDefinitionId"), r.Input("scope")}
		assert.Empty(t, given[g], "%s repeats %s", r.Name, given[g])
		given[g] = r.Name
	}

	for _, r := range m.ByType(tRole) {
		if strings.HasPrefix(r.Name, "deployer-") {
			continue
		}
		assert.Equal(t, "ServicePrincipal", r.Input("principalType"), "role assignment %s needs principalType ServicePrincipal", r.Name)
	}
}

// The deployer grant is off unless asked for (prod does not ask).
func TestDeployerGrantOnlyWhenConfigured(t *testing.T) {
	m := runStack(t, "prod", loadStackConfig(t, "prod")).mocks
	for _, r := range m.ByType(tRole) {
		if r.Name == "deployer-aks-rbac-cluster-admin" {
			continue // its own access to the Entra-only cluster (TestEntraOnlyClusterAccess), no data
		}
		assert.False(t, strings.HasPrefix(r.Name, "deployer-"), "prod grants the deployer no data access: %s", r.Name)
	}
}

// Pitfall 7 (SPEC §7): the kubeconfig output is a secret; no other output is.
func TestPitfallKubeconfigSecret(t *testing.T) {
	run := runStack(t, "dev", loadStackConfig(t, "dev"))
	kc := run.outputs["kubeconfig"]
	assert.True(t, kc.Secret, "kubeconfig must be exported as a secret")
	assert.Equal(t, pulumitest.Kubeconfig(), kc.Value, "kubeconfig is the decoded credentials")
	for k, o := range run.outputs {
		if k != "kubeconfig" {
			assert.False(t, o.Secret, "output %s is unexpectedly secret", k)
		}
	}
}

// Pitfall 11 (SPEC §7): the storage firewall admits the AKS subnet, denies the rest in prod, and
// is open only where a stack deliberately says so.
func TestPitfallStorageFirewall(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg := loadStackConfig(t, stack)
			m := runStack(t, stack, cfg).mocks
			acct := m.One(t, tAccount)
			subnet := m.One(t, tSubnet)
			assert.Equal(t, []any{map[string]any{"service": "Microsoft.Storage"}}, subnet.Input("serviceEndpoints"), "subnet needs the storage service endpoint")
			assert.Equal(t, subnet.ID, acct.Input("networkRuleSet.virtualNetworkRules.0.virtualNetworkResourceId"), "AKS subnet must be allowed")
			assert.Equal(t, "AzureServices", acct.Input("networkRuleSet.bypass"))
			assert.Equal(t, false, acct.Input("allowSharedKeyAccess"), "shared keys off")
			assert.Equal(t, false, acct.Input("allowBlobPublicAccess"))
			assert.Equal(t, true, acct.Input("enableHttpsTrafficOnly"))
			assert.Equal(t, "TLS1_2", acct.Input("minimumTlsVersion"))
			assert.Equal(t, "StorageV2", acct.Input("kind"))
			wantOpen := cfg[infra.Project+":storagePublicNetworkAccess"] == "true"
			want := "Deny"
			if wantOpen {
				want = "Allow"
			}
			assert.Equal(t, want, acct.Input("networkRuleSet.defaultAction"))
			rules, _ := acct.Input("networkRuleSet.ipRules").([]any)
			for _, r := range rules {
				ip := lookupMap(r, "iPAddressOrRange")
				assert.NotContains(t, []any{"0.0.0.0/0", "0.0.0.0"}, ip, "storage open to the world through an IP rule")
			}
		})
	}
	// prod must be closed to the internet.
	cfg := loadStackConfig(t, "prod")
	acct := runStack(t, "prod", cfg).mocks.One(t, tAccount)
	assert.Equal(t, "Deny", acct.Input("networkRuleSet.defaultAction"), "prod storage must deny by default")
}

// Bad config fails the program (as `pulumi preview` would) with an error naming the key.
func TestBadConfigFailsPreview(t *testing.T) {
	base := loadStackConfig(t, "dev")
	cases := []struct {
		name string
		kv   []string
		want string
	}{
		{"storage name over 24", []string{"storageAccountName", "storageaccountnamewaytoolong"}, "aks-edw:storageAccountName"},
		{"prefix too long for storage", []string{"prefix", "averyverylongprefix"}, "aks-edw:prefix"},
		{"unknown storage SKU", []string{"storageSku", "Premium_XYZ"}, "aks-edw:storageSku"},
		{"unknown registry SKU", []string{"registrySku", "Gold"}, "aks-edw:registrySku"},
		{"maxReplicas below minReplicas", []string{"minReplicas", "5", "maxReplicas", "2"}, "aks-edw:maxReplicas"},
		{"invalid CIDR", []string{"vnetAddressSpace", "10.300.0.0/16"}, "aks-edw:vnetAddressSpace"},
		{"empty VM size", []string{"systemNodeVmSize", ""}, "aks-edw:systemNodeVmSize"},
		{"not an integer", []string{"systemNodeCount", "three"}, "aks-edw:systemNodeCount"},
		{"world-open IP rule", []string{"operatorIpRanges", `["0.0.0.0/0"]`}, "aks-edw:operatorIpRanges"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := runProgram("dev", withConfig(base, tc.kv...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, m.Resources(), "nothing may be registered when the config is invalid")
		})
	}
}

// checkGolden compares the sorted resource inventory with testdata/inventory.<stack>.golden;
// `go test . -run TestStacks -update` regenerates it.
func checkGolden(t *testing.T, stack string, m *pulumitest.Mocks) {
	t.Helper()
	got := inventory(m)
	path := filepath.Join("testdata", "inventory."+stack+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run: make golden")
	if string(want) != got {
		t.Errorf("resource inventory for %s differs from %s (review, then regenerate with: make golden)\n%s",
			stack, path, lineDiff(string(want), got))
	}
}

// inventory renders every resource (type, logical name, options, inputs) sorted by type and name.
func inventory(m *pulumitest.Mocks) string { return pulumitest.Inventory(m) }

func lineDiff(want, got string) string { return pulumitest.LineDiff(want, got) }

func lookupMap(v any, key string) any {
	if mm, ok := v.(map[string]any); ok {
		return mm[key]
	}
	return nil
}

// Every config key of the typed struct is declared in Pulumi.yaml with the same default as the
// Go code, and Pulumi.yaml declares nothing the program does not read.
func TestPulumiYamlDeclaresEveryKey(t *testing.T) {
	proj, err := workspace.LoadProject("Pulumi.yaml")
	require.NoError(t, err)
	keys := infra.ConfigKeys()
	// The program run with no stack values at all must see exactly the Go defaults.
	m := pulumitest.New(infra.Project, "defaults")
	cfg := map[string]string{}
	for _, k := range keys {
		decl, ok := proj.Config[k]
		require.True(t, ok, "config key %q is read by the program but not declared in Pulumi.yaml", k)
		assert.NotEmpty(t, decl.Description, "config key %q has no description", k)
		require.NotNil(t, decl.Default, "config key %q has no default", k)
		v, err := json.Marshal(decl.Default)
		require.NoError(t, err)
		if s, ok := decl.Default.(string); ok {
			cfg[infra.Project+":"+k] = s
		} else {
			cfg[infra.Project+":"+k] = string(v)
		}
	}
	assert.Len(t, proj.Config, len(keys), "Pulumi.yaml declares keys the program does not read")
	var loaded infra.Config
	load := func(ctx *pulumi.Context) error {
		var err error
		loaded, err = infra.LoadConfig(ctx)
		return err
	}
	// Only imageSourceRepository has no usable default: alone, it is the one problem (the
	// config is still loaded, so the defaults can be compared).
	err = m.Run(cfg, load)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid configuration (1 problem(s)):\naks-edw:imageSourceRepository is required when image is empty")
	want := infra.DefaultConfig()
	want.Tags = want.EffectiveTags("defaults")
	assert.Equal(t, want, loaded, "Pulumi.yaml defaults differ from infra.DefaultConfig()")
	require.NoError(t, pulumitest.New(infra.Project, "defaults").Run(withConfig(cfg, "imageSourceRepository", pulumitest.ImageSourceRepository), load),
		"with the repository set, the defaults are a valid configuration")
}

// Issue 3: the workload on the cluster is wired to the Azure side it needs (SPEC §7 items 6, 8, 10).
func TestWorkloadWiring(t *testing.T) {
	for _, mode := range []string{"ScaledObject", "ScaledJob"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg := withConfig(loadStackConfig(t, "dev"), "scaleMode", mode)
			run := runStack(t, "dev", cfg)
			m := run.mocks
			settings := components.DefaultConsumerSettings()
			wi := m.Get(t, tIdentity, "workload-identity-identity")
			clientID, principalID := wi.Output("clientId"), wi.Output("principalId")
			acct := m.One(t, tAccount)
			mc := m.One(t, tCluster)

			sa := m.One(t, "kubernetes:core/v1:ServiceAccount")
			assert.Equal(t, clientID, sa.Input("metadata.annotations.azure\\.workload\\.identity/client-id"), "SA annotation")
			// The FIC subject is built from the same config values the ServiceAccount uses.
			assert.Equal(t, "system:serviceaccount:"+sa.Input("metadata.namespace").(string)+":"+sa.Input("metadata.name").(string),
				m.Get(t, tFIC, "workload-identity-sa-credential").Input("subject"))

			ta := m.One(t, "kubernetes:keda.sh/v1alpha1:TriggerAuthentication")
			assert.Equal(t, "azure-workload", ta.Input("spec.podIdentity.provider"))
			assert.Equal(t, clientID, ta.Input("spec.podIdentity.identityId"), "identityId must be the client id")
			assert.NotEqual(t, principalID, ta.Input("spec.podIdentity.identityId"), "identityId must not be the principal id")

			var scaler *pulumitest.Resource
			var podSpec string
			if mode == "ScaledObject" {
				scaler = m.One(t, "kubernetes:keda.sh/v1alpha1:ScaledObject")
				podSpec = "spec.template.spec"
				dep := m.One(t, "kubernetes:apps/v1:Deployment")
				assert.Equal(t, settings.ServiceAccountName, dep.Input(podSpec+".serviceAccountName"), "pod service account")
				assert.Equal(t, "true", dep.Input("spec.template.metadata.labels.azure\\.workload\\.identity/use"), "workload identity pod label")
				assert.Equal(t, "acraksdemo"+pulumitest.RandomResult+".azurecr.io/aws2azure/aqs-consumer:main", dep.Input(podSpec+".containers.0.image"), "dev builds imageSourceRef main")
			} else {
				scaler = m.One(t, "kubernetes:keda.sh/v1alpha1:ScaledJob")
				podSpec = "spec.jobTargetRef.template.spec"
				assert.Equal(t, settings.ServiceAccountName, scaler.Input(podSpec+".serviceAccountName"), "job pod service account")
				assert.Equal(t, "true", scaler.Input("spec.jobTargetRef.template.metadata.labels.azure\\.workload\\.identity/use"))
				assert.Empty(t, m.ByType("kubernetes:apps/v1:Deployment"))
			}
			assert.Equal(t, "azure-queue", scaler.Input("spec.triggers.0.type"))
			assert.Equal(t, acct.Output("name"), scaler.Input("spec.triggers.0.metadata.accountName"), "trigger accountName")
			assert.Equal(t, m.Get(t, tQueue, "storage-queue").Output("name"), scaler.Input("spec.triggers.0.metadata.queueName"))
			assert.Equal(t, ta.Input("metadata.name"), scaler.Input("spec.triggers.0.authenticationRef.name"))

			// Every Kubernetes object uses the explicit provider and is deleted with the cluster.
			provider := m.One(t, "pulumi:providers:kubernetes")
			assert.True(t, provider.InputIsSecret("kubeconfig"), "provider kubeconfig must be secret")
			assert.Equal(t, mc.URN, provider.DeletedWith)
			assert.GreaterOrEqual(t, pulumitest.CheckKubernetesObjects(t, m, provider, mc), 5)
		})
	}
}

// cfgOr is the stack's value for a project config key, or def when the stack leaves it out.
func cfgOr(cfg map[string]string, key, def string) string {
	if v, ok := cfg[infra.Project+":"+key]; ok {
		return v
	}
	return def
}
