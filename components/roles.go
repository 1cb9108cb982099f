package components

import (
	"fmt"

	"github.com/pulumi/pulumi-azure-native-sdk/authorization/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/managedidentity/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Built-in Azure role definition ids used by the stack.
const (
	RoleAcrPull                     = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
	RoleStorageQueueDataContributor = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
	RoleStorageTableDataContributor = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
	RoleStorageQueueDataReader      = "19e7f393-937e-4f77-808e-94535e297925"
	// RoleStorageQueueDataMessageSender adds messages to a queue, nothing else.
	RoleStorageQueueDataMessageSender = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
	RoleNetworkContributor            = "4d97b98b-1d4f-4787-a291-c67834d212e7"
	// RoleAKSRBACClusterAdmin is "Azure Kubernetes Service RBAC Cluster Admin": every Kubernetes
	// permission on an Entra-only cluster with Azure RBAC, and listing its user credentials.
	RoleAKSRBACClusterAdmin = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
)

// PrincipalTypeServicePrincipal is the principal type of managed identities. Setting it on a
// role assignment lets Azure skip the directory lookup that fails with PrincipalNotFound while a
// new identity is still replicating.
const PrincipalTypeServicePrincipal = string(authorization.PrincipalTypeServicePrincipal)

// RoleDefinitionID returns the subscription-scoped id of a built-in role.
func RoleDefinitionID(subscriptionID pulumi.StringInput, roleGUID string) pulumi.StringOutput {
	return pulumi.Sprintf("/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s", subscriptionID, roleGUID)
}

// roleAssignment is one role given to one principal on one scope.
type roleAssignment struct {
	PrincipalID    pulumi.StringInput
	PrincipalType  string
	SubscriptionID pulumi.StringInput
	RoleGUID       string
	Scope          pulumi.StringInput
}

// roleAssignmentArgs is the pure builder of a role assignment.
func roleAssignmentArgs(ra roleAssignment) *authorization.RoleAssignmentArgs {
	pt := ra.PrincipalType
	if pt == "" {
		pt = PrincipalTypeServicePrincipal
	}
	return &authorization.RoleAssignmentArgs{
		PrincipalId:      ra.PrincipalID,
		PrincipalType:    authorization.PrincipalType(pt),
		RoleDefinitionId: RoleDefinitionID(ra.SubscriptionID, ra.RoleGUID),
		Scope:            ra.Scope,
	}
}

// newRoleAssignment creates the assignment; the name azure-native generates is a fresh GUID.
func newRoleAssignment(ctx *pulumi.Context, name string, ra roleAssignment, opts ...pulumi.ResourceOption) (*authorization.RoleAssignment, error) {
	res, err := authorization.NewRoleAssignment(ctx, name, roleAssignmentArgs(ra), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating role assignment %q: %w", name, err)
	}
	return res, nil
}

// consumerDataScopes are what the consumer's identity gets data roles on.
type consumerDataScopes struct {
	PrincipalID, SubscriptionID     pulumi.StringInput
	QueueID, PoisonQueueID, TableID pulumi.StringInput
}

// newConsumerDataRoles gives the consumer's identity Storage Queue Data Contributor on the queue
// and on the poison queue (where it moves what it cannot process) and Storage Table Data
// Contributor on the table, each scoped to that one queue or table. The queue's role comes first.
// Children are named name+"-queue-data-contributor", name+"-poison-queue-data-contributor" and
// name+"-table-data-contributor" on either target.
func newConsumerDataRoles(ctx *pulumi.Context, name string, d consumerDataScopes, opts ...pulumi.ResourceOption) ([]pulumi.Resource, error) {
	var out []pulumi.Resource
	for _, ra := range []struct {
		suffix, role string
		scope        pulumi.StringInput
	}{
		{"-queue-data-contributor", RoleStorageQueueDataContributor, d.QueueID},
		{"-poison-queue-data-contributor", RoleStorageQueueDataContributor, d.PoisonQueueID},
		{"-table-data-contributor", RoleStorageTableDataContributor, d.TableID},
	} {
		role, err := newRoleAssignment(ctx, name+ra.suffix, roleAssignment{
			PrincipalID:    d.PrincipalID,
			SubscriptionID: d.SubscriptionID,
			RoleGUID:       ra.role,
			Scope:          ra.scope,
		}, opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, role)
	}
	return out, nil
}

// newIdentity creates a user-assigned managed identity (the cluster's, the workload's, the
// Container Apps consumer's).
func newIdentity(ctx *pulumi.Context, name string, rg, location, identityName pulumi.StringInput, tags map[string]string, opts ...pulumi.ResourceOption) (*managedidentity.UserAssignedIdentity, error) {
	id, err := managedidentity.NewUserAssignedIdentity(ctx, name, &managedidentity.UserAssignedIdentityArgs{
		ResourceGroupName: rg,
		Location:          location,
		ResourceName:      identityName,
		Tags:              tagsInput(tags),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating identity %q: %w", name, err)
	}
	return id, nil
}
