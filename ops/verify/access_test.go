package verify

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAccessCodesAreTheSDKs(t *testing.T) {
	assert.Equal(t, string(queueerror.AuthorizationPermissionMismatch), CodeAuthorizationPermissionMismatch)
	assert.Equal(t, string(queueerror.AuthorizationFailure), CodeAuthorizationFailure)
}

func TestClassifyAccess(t *testing.T) {
	queue := Target{Service: ServiceQueue, Account: "stedwdev", Name: "orders", Stack: "dev"}
	table := Target{Service: ServiceTable, Account: "stedwdev", Name: "records", Stack: "dev"}
	poison := Target{Service: ServicePoisonQueue, Account: "stedwdev", Name: "orders-poison", Stack: "dev"}
	respErr := func(status int, code string) error {
		return &azcore.ResponseError{StatusCode: status, ErrorCode: code}
	}
	cases := []struct {
		name   string
		err    error
		target Target
		want   []string // nil: not an access error
	}{
		{"queue role missing", respErr(http.StatusForbidden, "AuthorizationPermissionMismatch"), queue, []string{
			"storage queue orders in account stedwdev answered 403 AuthorizationPermissionMismatch",
			"lacks Storage Queue Data Contributor on the queue",
			"`grantDeployerQueueAccess: true` in the stack config grants it",
			"pulumi config set grantDeployerQueueAccess true --stack dev",
		}},
		{"table role missing", respErr(http.StatusForbidden, "AuthorizationPermissionMismatch"), table, []string{
			"storage table records in account stedwdev answered 403 AuthorizationPermissionMismatch",
			"lacks Storage Table Data Contributor on the table",
			"`grantDeployerVerifyAccess: true` in the stack config grants it",
			"pulumi config set grantDeployerVerifyAccess true --stack dev",
			`az role assignment create --role "Storage Table Data Contributor" --assignee <your-object-id> --scope "$(az storage account show --name stedwdev --query id --output tsv)/tableServices/default/tables/records"`,
		}},
		{"poison queue role missing", respErr(http.StatusForbidden, "AuthorizationPermissionMismatch"), poison, []string{
			"poison queue orders-poison in account stedwdev answered 403 AuthorizationPermissionMismatch",
			"lacks Storage Queue Data Reader on the poison queue",
			"`grantDeployerVerifyAccess: true` in the stack config grants it",
			`az role assignment create --role "Storage Queue Data Reader" --assignee <your-object-id> --scope "$(az storage account show --name stedwdev --query id --output tsv)/queueServices/default/queues/orders-poison"`,
		}},
		{"firewall on the queue", respErr(http.StatusForbidden, "AuthorizationFailure"), queue, []string{
			"storage account stedwdev answered 403 AuthorizationFailure on the queue orders",
			"the storage firewall refuses this machine's public IP",
			"operatorIpRanges",
		}},
		{"firewall on the table", respErr(http.StatusForbidden, "AuthorizationFailure"), table, []string{
			"on the table records", "operatorIpRanges",
		}},
		{"wrapped by the caller", fmt.Errorf("giving up after 5 attempts: %w", respErr(http.StatusForbidden, "AuthorizationPermissionMismatch")), queue, []string{
			"Storage Queue Data Contributor",
		}},
		{"another 403 code", respErr(http.StatusForbidden, "AuthenticationFailed"), queue, nil},
		{"a code without 403", respErr(http.StatusConflict, "AuthorizationFailure"), queue, nil},
		{"not found", respErr(http.StatusNotFound, "QueueNotFound"), queue, nil},
		{"not an Azure error", errors.New("dial tcp: connection refused"), queue, nil},
		{"nil", nil, queue, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ClassifyAccess(tc.err, tc.target)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			var ae *AccessError
			require.ErrorAs(t, err, &ae)
			assert.ErrorIs(t, err, tc.err, "the SDK's error stays reachable")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}
