package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-azure-native-sdk/storage/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// StorageArgs configures the storage account with its queue and table.
type StorageArgs struct {
	// ResourceGroupName is required.
	ResourceGroupName pulumi.StringInput
	// Location is required.
	Location pulumi.StringInput
	// AccountName is required: 3-24 lowercase letters and digits.
	AccountName pulumi.StringInput
	// Sku is optional, default Standard_LRS.
	Sku string
	// QueueName is required.
	QueueName string
	// TableName is required.
	TableName string
	// AllowedSubnetIDs are the subnets admitted by the firewall (service endpoint Microsoft.Storage).
	AllowedSubnetIDs []pulumi.StringInput
	// AllowedIPRanges are public IPv4 addresses or CIDRs admitted by the firewall (operators).
	AllowedIPRanges []string
	// PublicNetworkAccess opens the firewall to every network; optional, default false (Deny).
	// Shared keys stay off either way: access still needs an Entra identity with a data role.
	PublicNetworkAccess bool
	// Tags are optional.
	Tags map[string]string
	// Protect marks the account protected against deletion; optional, default false.
	Protect bool
}

// Storage is a StorageV2 account with identity-only access, a queue and a table.
type Storage struct {
	pulumi.ResourceState

	// AccountName is the storage account's name.
	AccountName pulumi.StringOutput
	// AccountID is the storage account's resource id.
	AccountID pulumi.StringOutput
	// QueueName is the queue's name.
	QueueName pulumi.StringOutput
	// QueueID is the queue's resource id (role assignment scope).
	QueueID pulumi.StringOutput
	// PoisonQueueName is <queue>-poison, where the consumer moves messages it cannot process.
	PoisonQueueName pulumi.StringOutput
	// PoisonQueueID is the poison queue's resource id (role assignment scope).
	PoisonQueueID pulumi.StringOutput
	// TableName is the table's name.
	TableName pulumi.StringOutput
	// TableID is the table's resource id (role assignment scope).
	TableID pulumi.StringOutput
}

func (a *StorageArgs) validate() error {
	var errs []error
	if a.ResourceGroupName == nil || a.Location == nil || a.AccountName == nil {
		errs = append(errs, errors.New("ResourceGroupName, Location and AccountName are required"))
	}
	if a.QueueName == "" || a.TableName == "" {
		errs = append(errs, errors.New("QueueName and TableName are required"))
	}
	if !a.PublicNetworkAccess && len(a.AllowedSubnetIDs) == 0 {
		errs = append(errs, errors.New("with the firewall closed, at least one AllowedSubnetIDs entry is required or the cluster cannot reach storage"))
	}
	return errors.Join(errs...)
}

// storageAccountArgs is the pure builder of the account: HTTPS only, TLS 1.2, no blob public
// access, no shared keys (Entra only), and a firewall that denies by default.
func storageAccountArgs(a *StorageArgs) *storage.StorageAccountArgs {
	sku := a.Sku
	if sku == "" {
		sku = string(storage.SkuName_Standard_LRS)
	}
	return &storage.StorageAccountArgs{
		ResourceGroupName:            a.ResourceGroupName,
		Location:                     a.Location,
		AccountName:                  a.AccountName,
		Kind:                         storage.KindStorageV2,
		Sku:                          &storage.SkuArgs{Name: storage.SkuName(sku)},
		EnableHttpsTrafficOnly:       pulumi.Bool(true),
		MinimumTlsVersion:            storage.MinimumTlsVersion_TLS1_2,
		AllowBlobPublicAccess:        pulumi.Bool(false),
		AllowSharedKeyAccess:         pulumi.Bool(false),
		DefaultToOAuthAuthentication: pulumi.Bool(true),
		AllowCrossTenantReplication:  pulumi.Bool(false),
		PublicNetworkAccess:          storage.PublicNetworkAccessEnabled,
		NetworkRuleSet:               networkRuleSetArgs(a),
		Tags:                         tagsInput(a.Tags),
	}
}

// networkRuleSetArgs admits the AKS subnet and the operator ranges and denies the rest, unless
// PublicNetworkAccess deliberately opens the account.
func networkRuleSetArgs(a *StorageArgs) *storage.NetworkRuleSetArgs {
	defaultAction := storage.DefaultActionDeny
	if a.PublicNetworkAccess {
		defaultAction = storage.DefaultActionAllow
	}
	vnetRules := storage.VirtualNetworkRuleArray{}
	for _, id := range a.AllowedSubnetIDs {
		vnetRules = append(vnetRules, &storage.VirtualNetworkRuleArgs{
			VirtualNetworkResourceId: id,
			Action:                   storage.ActionAllow,
		})
	}
	ipRules := storage.IPRuleArray{}
	for _, r := range a.AllowedIPRanges {
		ipRules = append(ipRules, &storage.IPRuleArgs{IPAddressOrRange: pulumi.String(r), Action: storage.ActionAllow})
	}
	return &storage.NetworkRuleSetArgs{
		DefaultAction:       defaultAction,
		Bypass:              storage.BypassAzureServices,
		VirtualNetworkRules: vnetRules,
		IpRules:             ipRules,
	}
}

// PoisonQueueName is the name of a queue's poison queue (the consumer's convention).
func PoisonQueueName(queue string) string { return queue + "-poison" }

// NewStorage creates the account, the queue and the table.
func NewStorage(ctx *pulumi.Context, name string, args *StorageArgs, opts ...pulumi.ResourceOption) (*Storage, error) {
	if args == nil {
		return nil, fmt.Errorf("storage %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("storage %q: %w", name, err)
	}
	s := &Storage{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:Storage", name, s, opts...); err != nil {
		return nil, fmt.Errorf("registering storage %q: %w", name, err)
	}
	account, err := storage.NewStorageAccount(ctx, name+"-account", storageAccountArgs(args),
		pulumi.Parent(s), pulumi.Protect(args.Protect))
	if err != nil {
		return nil, fmt.Errorf("creating storage account %q: %w", name, err)
	}
	queue, err := storage.NewQueue(ctx, name+"-queue", &storage.QueueArgs{
		ResourceGroupName: args.ResourceGroupName,
		AccountName:       account.Name,
		QueueName:         pulumi.String(args.QueueName),
	}, pulumi.Parent(s))
	if err != nil {
		return nil, fmt.Errorf("creating storage queue %q: %w", args.QueueName, err)
	}
	// The consumer moves malformed and over-delivered messages here; with identity-only access
	// and queue-scoped roles it cannot create the queue itself.
	poison, err := storage.NewQueue(ctx, name+"-poison-queue", &storage.QueueArgs{
		ResourceGroupName: args.ResourceGroupName,
		AccountName:       account.Name,
		QueueName:         pulumi.String(PoisonQueueName(args.QueueName)),
	}, pulumi.Parent(s))
	if err != nil {
		return nil, fmt.Errorf("creating poison queue %q: %w", PoisonQueueName(args.QueueName), err)
	}
	table, err := storage.NewTable(ctx, name+"-table", &storage.TableArgs{
		ResourceGroupName: args.ResourceGroupName,
		AccountName:       account.Name,
		TableName:         pulumi.String(args.TableName),
	}, pulumi.Parent(s))
	if err != nil {
		return nil, fmt.Errorf("creating storage table %q: %w", args.TableName, err)
	}
	s.AccountName = account.Name
	s.AccountID = account.ID().ToStringOutput()
	s.QueueName = queue.Name
	s.QueueID = queue.ID().ToStringOutput()
	s.PoisonQueueName = poison.Name
	s.PoisonQueueID = poison.ID().ToStringOutput()
	s.TableName = table.Name
	s.TableID = table.ID().ToStringOutput()
	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{
		"accountName": s.AccountName, "accountId": s.AccountID,
		"queueName": s.QueueName, "queueId": s.QueueID,
		"poisonQueueName": s.PoisonQueueName, "poisonQueueId": s.PoisonQueueID,
		"tableName": s.TableName, "tableId": s.TableID,
	}); err != nil {
		return nil, fmt.Errorf("registering storage %q outputs: %w", name, err)
	}
	return s, nil
}
