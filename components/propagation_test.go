package components

import (
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

func TestRemainingWait(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		createdOn string
		want      time.Duration
	}{
		{"2026-12-06T05:00:00Z", 5 * time.Minute},                                                    // just made
		{"2026-12-06T04:58:30.1234567Z", 3*time.Minute + 30*time.Second + 123456700*time.Nanosecond}, // Azure's 7 fraction digits
		{"2026-12-06T04:55:00Z", 0},                                                                  // exactly propagated
		{"2026-12-06T05:10:00Z", 5 * time.Minute},                                                    // a clock ahead of ours: never more than the wait
	} {
		got, err := remainingWait(tc.createdOn, now, 5*time.Minute)
		require.NoError(t, err, tc.createdOn)
		assert.Equal(t, tc.want, got, tc.createdOn)
	}
	old, err := remainingWait("2026-01-02T03:04:05Z", now, 5*time.Minute)
	require.NoError(t, err)
	assert.Negative(t, old, "a grant made long ago: nothing left to wait")
	_, err = remainingWait("", now, time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "createdOn \"\" is not a time")
}

// Issue 23 item 4: the Container App (or job) is created only once its identity's AcrPull has had
// time to propagate, when the grant was just made (a prebuilt image: nothing else takes minutes
// first); a grant made long ago (every later `up`) delays nothing.
func TestContainerAppWaitsForAcrPull(t *testing.T) {
	const wait = 1500 * time.Millisecond
	deploy := func(t *testing.T, createdNow bool) (app, acrPull *pulumitest.Resource) {
		m := pulumitest.New("aks-edw", "test")
		if createdNow {
			m.SetRoleCreatedOn(time.Now())
		}
		require.NoError(t, m.Run(nil, func(ctx *pulumi.Context) error {
			id, err := NewConsumerIdentity(ctx, "consumer-identity", &ConsumerIdentityArgs{
				ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"), IdentityName: pulumi.String("mi"),
				SubscriptionID: pulumi.String(pulumitest.SubscriptionID), QueueID: pulumi.String("q"), PoisonQueueID: pulumi.String("p"),
				TableID: pulumi.String("t"), RegistryID: pulumi.String("acr"),
			})
			if err != nil {
				return err
			}
			_, err = NewContainerAppsConsumer(ctx, "consumer", &ContainerAppsConsumerArgs{
				Settings: DefaultConsumerSettings(), ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
				WorkspaceName: pulumi.String("log"), EnvironmentName: pulumi.String("cae"), AppName: pulumi.String("ca"),
				StorageAccountName: pulumi.String("stor"), QueueName: pulumi.String("q"), TableName: pulumi.String("t"),
				IdentityID: id.ID, ClientID: id.ClientID, RegistryServer: pulumi.String("acr.azurecr.io"),
				Image: pulumi.String("acr.azurecr.io/consumer:1"), DependsOn: id.Grants,
				AcrPullCreatedOn: id.AcrPullCreatedOn, AcrPullPropagation: wait,
			})
			return err
		}))
		return m.One(t, "azure-native:app:ContainerApp"), m.Get(t, "azure-native:authorization:RoleAssignment", "consumer-identity-acrpull")
	}
	app, acrPull := deploy(t, true)
	assert.GreaterOrEqual(t, app.Registered.Sub(acrPull.Registered), wait-100*time.Millisecond,
		"the app waited for AcrPull to propagate (registered %s after the grant)", app.Registered.Sub(acrPull.Registered))
	assert.True(t, app.DependsOn(acrPull))

	app, acrPull = deploy(t, false)
	assert.Less(t, app.Registered.Sub(acrPull.Registered), wait-100*time.Millisecond, "a grant made long ago: no wait")
}
