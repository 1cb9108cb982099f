package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-azure-native-sdk/managedidentity/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TokenExchangeAudience is the audience Entra expects in federated service account tokens.
const TokenExchangeAudience = "api://AzureADTokenExchange"

// KedaOperatorName is the AKS KEDA add-on's operator: its Deployment and its service account.
const KedaOperatorName = "keda-operator"

// KedaNamespace is where the AKS KEDA add-on runs.
const KedaNamespace = "kube-system"

// KedaOperatorSubject is the subject of the AKS KEDA add-on's operator service account.
const KedaOperatorSubject = "system:serviceaccount:" + KedaNamespace + ":" + KedaOperatorName

// ServiceAccountSubject is the federated credential subject of a Kubernetes service account.
func ServiceAccountSubject(namespace, serviceAccount string) string {
	return "system:serviceaccount:" + namespace + ":" + serviceAccount
}

// WorkloadIdentityArgs configures the consumer pods' identity.
type WorkloadIdentityArgs struct {
	// ResourceGroupName is required.
	ResourceGroupName pulumi.StringInput
	// Location is required.
	Location pulumi.StringInput
	// IdentityName is required.
	IdentityName pulumi.StringInput
	// SubscriptionID is required (role definition ids).
	SubscriptionID pulumi.StringInput
	// QueueID is required: Storage Queue Data Contributor is scoped to this queue only.
	QueueID pulumi.StringInput
	// PoisonQueueID is required: the same role on the poison queue, where the consumer moves
	// messages it cannot process.
	PoisonQueueID pulumi.StringInput
	// TableID is required: Storage Table Data Contributor is scoped to this table only.
	TableID pulumi.StringInput
	// IssuerURL is required: the cluster's OIDC issuer URL output, used verbatim.
	IssuerURL pulumi.StringInput
	// Namespace is required: the consumer service account's namespace.
	Namespace string
	// ServiceAccountName is required: the consumer service account.
	ServiceAccountName string
	// CredentialName is required: the consumer service account's federated credential name.
	CredentialName pulumi.StringInput
	// KedaCredentialName is required: the KEDA operator's federated credential name.
	KedaCredentialName pulumi.StringInput
	// Tags are optional.
	Tags map[string]string
}

// WorkloadIdentity is a user-assigned identity with data roles on the queue and the table and
// federated credentials for the consumer's service account and the KEDA operator.
type WorkloadIdentity struct {
	pulumi.ResourceState

	// Name is the identity's name.
	Name pulumi.StringOutput
	// ClientID is what Kubernetes objects reference (service account annotation, KEDA identityId).
	ClientID pulumi.StringOutput
	// PrincipalID is the object id that role assignments use.
	PrincipalID pulumi.StringOutput
	// CredentialName is the consumer service account's federated credential name.
	CredentialName pulumi.StringOutput
	// KedaCredentialName is the KEDA operator's federated credential name.
	KedaCredentialName pulumi.StringOutput
	// PodGrants are what the consumer's pods need to exist before they start: the service
	// account's federated credential and the queue, poison queue and table data roles.
	PodGrants []pulumi.Resource
	// KedaGrants are what the KEDA operator needs to read the queue with this identity: its
	// federated credential and the queue's data role.
	KedaGrants []pulumi.Resource
}

func (a *WorkloadIdentityArgs) validate() error {
	if a.ResourceGroupName == nil || a.Location == nil || a.IdentityName == nil || a.SubscriptionID == nil ||
		a.QueueID == nil || a.PoisonQueueID == nil || a.TableID == nil || a.IssuerURL == nil || a.CredentialName == nil || a.KedaCredentialName == nil {
		return errors.New("ResourceGroupName, Location, IdentityName, SubscriptionID, QueueID, PoisonQueueID, TableID, IssuerURL, CredentialName and KedaCredentialName are required")
	}
	if a.Namespace == "" || a.ServiceAccountName == "" {
		return errors.New("the Namespace and ServiceAccountName args are required")
	}
	return nil
}

// federatedCredentialArgs is the pure builder of one federated identity credential.
func federatedCredentialArgs(a *WorkloadIdentityArgs, identityName pulumi.StringInput, credName pulumi.StringInput, subject string) *managedidentity.FederatedIdentityCredentialArgs {
	return &managedidentity.FederatedIdentityCredentialArgs{
		ResourceGroupName:                       a.ResourceGroupName,
		ResourceName:                            identityName,
		FederatedIdentityCredentialResourceName: credName,
		Issuer:                                  a.IssuerURL,
		Subject:                                 pulumi.String(subject),
		Audiences:                               pulumi.StringArray{pulumi.String(TokenExchangeAudience)},
	}
}

// NewWorkloadIdentity creates the identity, its two data-role assignments and its two
// federated credentials.
func NewWorkloadIdentity(ctx *pulumi.Context, name string, args *WorkloadIdentityArgs, opts ...pulumi.ResourceOption) (*WorkloadIdentity, error) {
	if args == nil {
		return nil, fmt.Errorf("workload identity %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("workload identity %q: %w", name, err)
	}
	w := &WorkloadIdentity{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:WorkloadIdentity", name, w, opts...); err != nil {
		return nil, fmt.Errorf("registering workload identity %q: %w", name, err)
	}
	identity, err := newIdentity(ctx, name+"-identity", args.ResourceGroupName, args.Location, args.IdentityName, args.Tags, pulumi.Parent(w))
	if err != nil {
		return nil, err
	}
	grants, err := newConsumerDataRoles(ctx, name, consumerDataScopes{
		PrincipalID: identity.PrincipalId, SubscriptionID: args.SubscriptionID,
		QueueID: args.QueueID, PoisonQueueID: args.PoisonQueueID, TableID: args.TableID,
	}, pulumi.Parent(w))
	if err != nil {
		return nil, err
	}
	queueRole := grants[0]
	w.PodGrants = append(w.PodGrants, grants...)
	// Same issuer+subject cannot exist twice on an identity: replace by delete first.
	first, err := managedidentity.NewFederatedIdentityCredential(ctx, name+"-sa-credential",
		federatedCredentialArgs(args, identity.Name, args.CredentialName, ServiceAccountSubject(args.Namespace, args.ServiceAccountName)),
		pulumi.Parent(w), pulumi.DeleteBeforeReplace(true))
	if err != nil {
		return nil, fmt.Errorf("creating federated credential for %s/%s: %w", args.Namespace, args.ServiceAccountName, err)
	}
	// Azure rejects concurrent credential writes on one identity (409): the second waits for the first.
	second, err := managedidentity.NewFederatedIdentityCredential(ctx, name+"-keda-credential",
		federatedCredentialArgs(args, identity.Name, args.KedaCredentialName, KedaOperatorSubject),
		pulumi.Parent(w), pulumi.DeleteBeforeReplace(true), pulumi.DependsOn([]pulumi.Resource{first}))
	if err != nil {
		return nil, fmt.Errorf("creating federated credential for the KEDA operator: %w", err)
	}
	w.Name = identity.Name
	w.ClientID = identity.ClientId
	w.PrincipalID = identity.PrincipalId
	w.CredentialName = first.Name
	w.KedaCredentialName = second.Name
	w.PodGrants = append(w.PodGrants, first)
	w.KedaGrants = []pulumi.Resource{second, queueRole}
	if err := ctx.RegisterResourceOutputs(w, pulumi.Map{
		"name": w.Name, "clientId": w.ClientID, "principalId": w.PrincipalID,
		"credentialName": w.CredentialName, "kedaCredentialName": w.KedaCredentialName,
	}); err != nil {
		return nil, fmt.Errorf("registering workload identity %q outputs: %w", name, err)
	}
	return w, nil
}
