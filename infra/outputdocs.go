package infra

// OutputDoc documents one or more stack outputs (docs/configuration.md is generated from it).
type OutputDoc struct {
	// Keys are the outputs the row is about, in OutputKeys order.
	Keys []string
	// What says what they hold.
	What string
}

// OutputDocs document every output in OutputKeys, each once (TestOutputDocsCoverEveryOutput).
var OutputDocs = []OutputDoc{
	{Keys: []string{"platform"}, What: "`aks` or `containerapps`. Every output below exists on both; one that has no meaning on the stack's platform is `\"\"`"},
	{Keys: []string{"suffix"}, What: "The stack's random 6-character suffix"},
	{Keys: []string{"resourceGroupName"}, What: "`rg-<prefix>-<suffix>`"},
	{Keys: []string{"storageAccountName", "queueName", "tableName"}, What: "Storage account, queue, table"},
	{Keys: []string{"containerRegistryName", "containerRegistryLoginServer"}, What: "Registry and its `<name>.azurecr.io`"},
	{Keys: []string{"aksManagedIdentityName"}, What: "Control-plane identity `mi-<prefix>-<suffix>`"},
	{Keys: []string{"aksClusterName"}, What: "`aks-<prefix>-<suffix>`"},
	{Keys: []string{"containerAppsEnvironmentName"}, What: "Container Apps: the environment `cae-<prefix>-<suffix>`"},
	{Keys: []string{"containerAppName"}, What: "Container Apps: the Container App `ca-<prefix>-<suffix>` (ScaledObject mode) or the job `caj-<prefix>-<suffix>` (ScaledJob mode)"},
	{Keys: []string{"workloadManagedIdentityName", "workloadManagedIdentityClientId"}, What: "The consumer's identity (AKS: `mi-aks-workload-identity-<sfx>`, federated with its service account; Container Apps: `mi-<prefix>-consumer-<sfx>`, attached to the app or job)"},
	{Keys: []string{"serviceAccount"}, What: "The consumer's Kubernetes service account"},
	{Keys: []string{"federatedIdentityCredentialName", "kedaServiceAccountCredentialName"}, What: "The two federated credentials"},
	{Keys: []string{"oidcIssuerUrl"}, What: "The cluster's OIDC issuer (as AKS reports it, trailing slash included)"},
	{Keys: []string{"kubeconfig"}, What: "Cluster user kubeconfig, **secret** (`--show-secrets` to read)"},
	{Keys: []string{"deployState"}, What: "The script's `deploy.state` lines: `SUFFIX=`, `RESOURCE_GROUP=`, `AZURE_STORAGE_ACCOUNT_NAME=`, `AZURE_QUEUE_NAME=`, `AZURE_TABLE_NAME=`, `AZURE_COSMOSDB_TABLE=`, `AZURE_CONTAINER_REGISTRY_NAME=`, `AKS_MANAGED_IDENTITY_NAME=`, `AKS_CLUSTER_NAME=`, `WORKLOAD_MANAGED_IDENTITY_NAME=`, `SERVICE_ACCOUNT=`, `FEDERATED_IDENTITY_CREDENTIAL_NAME=`, `KEDA_SERVICE_ACCT_CRED_NAME=`; on Container Apps the cluster's lines give way to `CONTAINER_APPS_ENVIRONMENT_NAME=`, `CONTAINER_APP_NAME=` (or `CONTAINER_APPS_JOB_NAME=`) and `WORKLOAD_MANAGED_IDENTITY_NAME=`"},
	{Keys: []string{"consumerImage"}, What: "The image the consumer runs: `<loginServer>/aws2azure/aqs-consumer:sha-<12 hex>` when the stack builds it, else the `image` setting"},
	{Keys: []string{"consumerWorkload"}, What: "Where the workload lives, with its `platform`. AKS: `namespace`, `scaleMode`, `deploymentName`, `scaledObjectName`, `scaledJobName`, `nodePoolName`, `appLabel` (what `make verify` reads; the scaling numbers it reads from the live ScaledObject or ScaledJob). Container Apps: `scaleMode`, `resourceGroupName`, `environmentName`, `appName`, `appId`, `appKind` (`ContainerApp` or `Job`)"},
	{Keys: []string{"azureMonitorWorkspaceId", "prometheusQueryEndpoint"}, What: "The Azure Monitor workspace's resource id and its Prometheus query endpoint (for Grafana or PromQL queries); empty strings when `managedPrometheus` is off"},
}
