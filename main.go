// Command aks-edw is the Pulumi program that stands up the event-driven queue workload on AKS:
// storage queue and table, container registry, an AKS cluster with node autoprovisioning, KEDA
// and workload identity, and the consumer workload that KEDA scales on queue depth.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/stack"
)

func main() { pulumi.Run(program) }

// program is the whole stack: infra and workload composed by stack.Deploy, which the tests and the
// offline plan (cmd/plan) run under mocks. Tests also run this function itself.
func program(ctx *pulumi.Context) error {
	_, err := deploy(ctx)
	return err
}

// deploy is the composition, returning the stack outputs it exports.
var deploy = stack.Deploy
