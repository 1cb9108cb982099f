// Command aks-edw is the Pulumi program that stands up the event-driven queue workload on AKS:
// storage queue and table, container registry, an AKS cluster with node autoprovisioning, KEDA
// and workload identity, and the consumer workload that KEDA scales on queue depth.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/workload"
)

func main() { pulumi.Run(program) }

// program is the whole stack; tests run this same function under mocks.
func program(ctx *pulumi.Context) error {
	_, err := deploy(ctx)
	return err
}

// deploy loads and validates the configuration once, composes the Azure side and the workload,
// and exports the stack outputs, which it also returns for tests.
func deploy(ctx *pulumi.Context) (pulumi.Map, error) {
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
		LoginServer:        stack.Registry.LoginServer,
	}); err != nil {
		return nil, err
	}
	outputs := stack.Outputs()
	for _, k := range infra.OutputKeys {
		ctx.Export(k, outputs[k])
	}
	return outputs, nil
}
