package components

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func storageTestArgs() *StorageArgs {
	return &StorageArgs{
		ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
		AccountName: pulumi.String("stortest123"), QueueName: "q1", TableName: "t1",
		AllowedSubnetIDs: []pulumi.StringInput{pulumi.String("/subnets/aks")},
		AllowedIPRanges:  []string{"203.0.113.0/24"},
		Tags:             map[string]string{"owner": "me"},
		Protect:          true,
	}
}

func TestStorageComponent(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error {
		_, err := NewStorage(ctx, "s", storageTestArgs())
		return err
	})
	acct := m.One(t, "azure-native:storage:StorageAccount")
	assert.True(t, acct.Protect)
	assert.Equal(t, "Standard_LRS", acct.Input("sku.name"))
	assert.Equal(t, false, acct.Input("allowSharedKeyAccess"))
	assert.Equal(t, "Deny", acct.Input("networkRuleSet.defaultAction"))
	assert.Equal(t, "/subnets/aks", acct.Input("networkRuleSet.virtualNetworkRules.0.virtualNetworkResourceId"))
	assert.Equal(t, "203.0.113.0/24", acct.Input("networkRuleSet.ipRules.0.iPAddressOrRange"))
	assert.Equal(t, "q1", m.Get(t, "azure-native:storage:Queue", "s-queue").Input("queueName"))
	assert.Equal(t, "q1-poison", m.Get(t, "azure-native:storage:Queue", "s-poison-queue").Input("queueName"))
	assert.Equal(t, "t1", m.One(t, "azure-native:storage:Table").Input("tableName"))
	requireChildrenParented(t, m, "aks-edw:azure:Storage")
}

func TestStoragePublicAccessIsExplicit(t *testing.T) {
	args := storageTestArgs()
	args.PublicNetworkAccess = true
	m := runAzure(t, func(ctx *pulumi.Context) error { _, err := NewStorage(ctx, "s", args); return err })
	assert.Equal(t, "Allow", m.One(t, "azure-native:storage:StorageAccount").Input("networkRuleSet.defaultAction"))
}

func TestStorageValidation(t *testing.T) {
	args := storageTestArgs()
	args.AllowedSubnetIDs = nil
	args.QueueName = ""
	err := runAzureErr(func(ctx *pulumi.Context) error { _, err := NewStorage(ctx, "s", args); return err })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AllowedSubnetIDs")
	assert.Contains(t, err.Error(), "QueueName")
}
