// Package stack composes the whole stack for its platform: on AKS the Azure side (infra) and the
// consumer workload on the cluster (workload); on Container Apps the Azure side alone (infra),
// which holds the consumer. main's program runs it under the Pulumi engine; the whole-stack tests and
// the offline plan (cmd/plan) run this same composition under mocks.
package stack

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/workload"
)

// Deploy loads and validates the configuration once, composes the stack for its platform, and
// exports the stack outputs, which it also returns for tests. This is the one place the target
// is chosen: AKS (the Azure side, then the Kubernetes side through the cluster's provider) or
// Container Apps (the Azure side holds the consumer too; no cluster, no Kubernetes).
func Deploy(ctx *pulumi.Context) (pulumi.Map, error) {
	cfg, err := infra.LoadConfig(ctx)
	if err != nil {
		return nil, err
	}
	var stack *infra.Stack
	switch cfg.Platform {
	case infra.PlatformContainerApps:
		stack, err = infra.DeployContainerApps(ctx, cfg)
	default:
		stack, err = deployAKS(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	outputs := stack.Outputs()
	for _, k := range infra.OutputKeys {
		ctx.Export(k, outputs[k])
	}
	return outputs, nil
}

// deployAKS composes the Azure side of an AKS stack and the consumer workload on its cluster.
func deployAKS(ctx *pulumi.Context, cfg infra.Config) (*infra.Stack, error) {
	stack, err := infra.DeployAKS(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := workload.Deploy(ctx, "consumer", workload.Args{
		Kubeconfig:         stack.Cluster.Kubeconfig,
		Cluster:            stack.Cluster.ManagedCluster,
		Settings:           cfg.Consumer,
		StorageAccountName: stack.Storage.AccountName,
		QueueName:          stack.Storage.QueueName,
		TableName:          stack.Storage.TableName,
		ClientID:           stack.WorkloadIdentity.ClientID,
		Image:              stack.ConsumerImage,
		PodsDependOn:       podsDependOn(stack),
		KedaDependsOn:      stack.WorkloadIdentity.KedaGrants,
		// Managed Prometheus scrapes the consumer and KEDA through PodMonitors.
		ScrapeMetrics: cfg.ManagedPrometheus,
		// Entra-only cluster: every Kubernetes object waits for the deployer's AKS RBAC role.
		KubernetesAccess: stack.KubernetesAccess,
		// NAP replaces and consolidates the app pool's nodes only in the maintenance window.
		MaintenanceWindow: cfg.MaintenanceWindowOrNil(),
	}); err != nil {
		return nil, err
	}
	return stack, nil
}

// podsDependOn is everything in Azure the consumer's pods need before they start: the image
// build (when the stack builds the image; a nil *TaskRun must not become a non-nil
// pulumi.Resource), the kubelet's AcrPull, the service account's federated credential and the
// data roles.
func podsDependOn(stack *infra.Stack) []pulumi.Resource {
	deps := []pulumi.Resource{stack.Cluster.AcrPull}
	deps = append(deps, stack.WorkloadIdentity.PodGrants...)
	if stack.ImageBuild != nil {
		deps = append(deps, stack.ImageBuild.TaskRun)
	}
	return deps
}
