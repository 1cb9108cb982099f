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
		ImageBuild:         imageBuild(stack),
	}); err != nil {
		return nil, err
	}
	outputs := stack.Outputs()
	for _, k := range infra.OutputKeys {
		ctx.Export(k, outputs[k])
	}
	return outputs, nil
}

// imageBuild is the task run the workload waits for, or nil (a nil *TaskRun must not become a
// non-nil pulumi.Resource).
func imageBuild(stack *infra.Stack) pulumi.Resource {
	if stack.ImageBuild == nil {
		return nil
	}
	return stack.ImageBuild.TaskRun
}
