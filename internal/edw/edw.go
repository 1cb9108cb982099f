// Package edw composes the whole stack: the Azure side (infra) and the consumer workload on the
// cluster (workload). main's program runs it under the Pulumi engine; the whole-stack tests and
// the offline plan (cmd/plan) run this same composition under mocks.
package edw

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/workload"
)

// Deploy loads and validates the configuration once, composes the Azure side and the workload,
// and exports the stack outputs, which it also returns for tests.
func Deploy(ctx *pulumi.Context) (pulumi.Map, error) {
	cfg, err := infra.LoadConfig(ctx)
	if err != nil {
		return nil, err
	}
	stack, err := infra.Deploy(ctx, cfg)
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
	}); err != nil {
		return nil, err
	}
	outputs := stack.Outputs()
	for _, k := range infra.OutputKeys {
		ctx.Export(k, outputs[k])
	}
	return outputs, nil
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
