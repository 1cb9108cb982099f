package components

import (
	"context"
	"fmt"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// RolePropagation is how long the stack lets a new Azure role assignment take before it relies on
// it where nothing retries for it: Azure documents "up to 10 minutes" for role assignment changes
// in general and "up to five minutes" for AKS's (docs/cloud-notes.md). Container Apps pulls the
// image with the consumer's identity while it creates the app, and a refused pull leaves the app
// in a failed provisioning state after about 10 minutes (microsoft/azure-container-apps#646).
const RolePropagation = 5 * time.Minute

// PropagationWait resolves once wait has passed since createdOn, a role assignment's createdOn
// output: it sleeps the remainder, returns at once for a grant made long ago (every `up` after the
// first), and is not waited for in a preview (createdOn is unknown there). Resources take it with
// pulumi.DependsOnInputs.
func PropagationWait(ctx *pulumi.Context, createdOn pulumi.StringOutput, wait time.Duration) pulumi.ResourceArrayOutput {
	return createdOn.ApplyTWithContext(ctx.Context(), func(c context.Context, created string) ([]pulumi.Resource, error) {
		remaining, err := remainingWait(created, time.Now(), wait)
		if err != nil {
			return nil, err
		}
		if remaining <= 0 {
			return nil, nil
		}
		if err := ctx.Log.Info(fmt.Sprintf("waiting %s for a new role assignment to take effect (Azure RBAC propagation)", remaining.Round(time.Second)), nil); err != nil {
			return nil, err
		}
		t := time.NewTimer(remaining)
		defer t.Stop()
		select {
		case <-c.Done():
			return nil, c.Err()
		case <-t.C:
			return nil, nil
		}
	}).(pulumi.ResourceArrayOutput)
}

// remainingWait is how much of wait is left at now for a grant created at createdOn (RFC 3339, as
// Azure returns it: 2026-12-06T05:04:11.5271234Z).
func remainingWait(createdOn string, now time.Time, wait time.Duration) (time.Duration, error) {
	created, err := time.Parse(time.RFC3339Nano, createdOn)
	if err != nil {
		return 0, fmt.Errorf("the role assignment's createdOn %q is not a time: %w", createdOn, err)
	}
	return min(created.Add(wait).Sub(now), wait), nil
}
