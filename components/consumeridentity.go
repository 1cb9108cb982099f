package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ConsumerIdentityArgs configures the consumer's identity on Container Apps. Every field is
// required unless its comment says optional.
type ConsumerIdentityArgs struct {
	// ResourceGroupName, Location and IdentityName place and name the identity.
	ResourceGroupName, Location, IdentityName pulumi.StringInput
	// SubscriptionID is for the role definition ids.
	SubscriptionID pulumi.StringInput
	// QueueID, PoisonQueueID and TableID scope the data roles, as WorkloadIdentity's.
	QueueID, PoisonQueueID, TableID pulumi.StringInput
	// RegistryID scopes the identity's AcrPull: Container Apps pulls the image with it.
	RegistryID pulumi.StringInput
	// Tags are optional.
	Tags map[string]string
}

// ConsumerIdentity is the consumer's user-assigned identity on Container Apps, attached to the
// app or job: the consumer (AZURE_CLIENT_ID), the scale rule (its `identity`) and the image pull
// all use it. It has the same data roles as AKS's WorkloadIdentity, and AcrPull, which on AKS is
// the kubelet's; no federated credential (Container Apps hands the identity to the app itself).
type ConsumerIdentity struct {
	pulumi.ResourceState

	// ID is the identity's resource id.
	ID pulumi.StringOutput
	// Name is the identity's name.
	Name pulumi.StringOutput
	// ClientID is the identity's client id.
	ClientID pulumi.StringOutput
	// PrincipalID is the identity's object id.
	PrincipalID pulumi.StringOutput
	// Grants are the data roles and AcrPull: the app or job depends on them.
	Grants []pulumi.Resource
	// AcrPullCreatedOn is when the AcrPull grant was made (PropagationWait).
	AcrPullCreatedOn pulumi.StringOutput
}

func (a *ConsumerIdentityArgs) validate() error {
	if a.ResourceGroupName == nil || a.Location == nil || a.IdentityName == nil || a.SubscriptionID == nil ||
		a.QueueID == nil || a.PoisonQueueID == nil || a.TableID == nil || a.RegistryID == nil {
		return errors.New("ResourceGroupName, Location, IdentityName, SubscriptionID, QueueID, PoisonQueueID, TableID and RegistryID are required")
	}
	return nil
}

// NewConsumerIdentity creates the identity, its three data roles and its AcrPull.
func NewConsumerIdentity(ctx *pulumi.Context, name string, args *ConsumerIdentityArgs, opts ...pulumi.ResourceOption) (*ConsumerIdentity, error) {
	if args == nil {
		return nil, fmt.Errorf("consumer identity %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("consumer identity %q: %w", name, err)
	}
	c := &ConsumerIdentity{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:ConsumerIdentity", name, c, opts...); err != nil {
		return nil, fmt.Errorf("registering consumer identity %q: %w", name, err)
	}
	identity, err := newIdentity(ctx, name+"-identity", args.ResourceGroupName, args.Location, args.IdentityName, args.Tags, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	grants, err := newConsumerDataRoles(ctx, name, consumerDataScopes{
		PrincipalID: identity.PrincipalId, SubscriptionID: args.SubscriptionID,
		QueueID: args.QueueID, PoisonQueueID: args.PoisonQueueID, TableID: args.TableID,
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	acrPull, err := newRoleAssignment(ctx, name+"-acrpull", roleAssignment{
		PrincipalID:    identity.PrincipalId,
		SubscriptionID: args.SubscriptionID,
		RoleGUID:       RoleAcrPull,
		Scope:          args.RegistryID,
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.ID = identity.ID().ToStringOutput()
	c.Name = identity.Name
	c.ClientID = identity.ClientId
	c.PrincipalID = identity.PrincipalId
	c.Grants = append(grants, acrPull)
	c.AcrPullCreatedOn = acrPull.CreatedOn
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"id": c.ID, "name": c.Name, "clientId": c.ClientID, "principalId": c.PrincipalID,
	}); err != nil {
		return nil, fmt.Errorf("registering consumer identity %q outputs: %w", name, err)
	}
	return c, nil
}
