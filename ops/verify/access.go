package verify

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// The Azure Storage error codes of a 403 that mean "this caller may not", as the service sends
// them in x-ms-error-code (azcore.ResponseError.ErrorCode). Source: the Azure Storage REST
// reference, "Common REST API error codes" (shared by the Queue and Table services), and the
// azqueue SDK's generated list (sdk/storage/azqueue queueerror/error_codes.go:
// queueerror.AuthorizationFailure, queueerror.AuthorizationPermissionMismatch); aztables'
// TableErrorCode list only holds the table-specific codes.
const (
	// CodeAuthorizationPermissionMismatch: the caller is authenticated but its Entra role
	// assignments do not allow the operation ("This request is not authorized to perform this
	// operation using this permission.").
	CodeAuthorizationPermissionMismatch = "AuthorizationPermissionMismatch"
	// CodeAuthorizationFailure: the request is refused before permissions are looked at; with
	// Entra credentials, the storage account's firewall refusing the caller's IP ("This request
	// is not authorized to perform this operation.").
	CodeAuthorizationFailure = "AuthorizationFailure"
)

// Services an AccessError is about: the work queue, its poison queue (verify reads its count and
// peeks it), and the table.
const (
	ServiceQueue       = "queue"
	ServicePoisonQueue = "poison queue"
	ServiceTable       = "table"
)

// Target names the storage resource a request went to, for the advice an AccessError gives.
type Target struct {
	// Service is ServiceQueue, ServicePoisonQueue or ServiceTable.
	Service string
	// Account is the storage account name.
	Account string
	// Name is the queue or table name.
	Name string
	// Stack is the Pulumi stack (for the `pulumi config set` advice).
	Stack string
}

// AccessError is a 403 from storage that verify cannot get past by waiting: the caller lacks a
// data role, or the firewall refuses its IP. Its message says what to change.
type AccessError struct {
	// Target is where the request went.
	Target Target
	// Code is the storage error code (CodeAuthorizationPermissionMismatch or
	// CodeAuthorizationFailure).
	Code string
	// Err is the SDK's error.
	Err error
}

// Error says what is missing and how to fix it.
func (e *AccessError) Error() string {
	t := e.Target
	// byHand is the `az role assignment create` a user runs when no stack config key fits.
	byHand := func(role, scope string) string {
		return fmt.Sprintf("az role assignment create --role %q --assignee <your-object-id> --scope \"$(az storage account show --name %s --query id --output tsv)/%s\" "+
			"(your object id: az ad signed-in-user show --query id --output tsv)", role, t.Account, scope)
	}
	const propagation = "a new role assignment takes a few minutes to apply"
	switch {
	case e.Code == CodeAuthorizationFailure:
		return fmt.Sprintf("storage account %s answered 403 %s on the %s %s: the storage firewall refuses this machine's public IP. "+
			"Add it to operatorIpRanges in the stack config (pulumi config set --path 'operatorIpRanges[0]' <your-public-ip> --stack %s) and run pulumi up",
			t.Account, e.Code, t.Service, t.Name, t.Stack)
	case t.Service == ServiceQueue:
		return fmt.Sprintf("storage queue %s in account %s answered 403 %s: the identity verify runs as lacks Storage Queue Data Contributor on the queue. "+
			"`grantDeployerQueueAccess: true` in the stack config grants it to the stack's dataOperators (unset: to whoever runs pulumi up) "+
			"(pulumi config set grantDeployerQueueAccess true --stack %s, then pulumi up; %s)",
			t.Name, t.Account, e.Code, t.Stack, propagation)
	case t.Service == ServicePoisonQueue:
		return fmt.Sprintf("poison queue %s in account %s answered 403 %s: the identity verify runs as lacks Storage Queue Data Reader on the poison queue (verify reads its count and peeks it). "+
			"`grantDeployerVerifyAccess: true` in the stack config grants it to the stack's dataOperators (unset: to whoever runs pulumi up) "+
			"(pulumi config set grantDeployerVerifyAccess true --stack %s, then pulumi up), or grant it with: %s; %s",
			t.Name, t.Account, e.Code, t.Stack, byHand("Storage Queue Data Reader", "queueServices/default/queues/"+t.Name), propagation)
	default:
		return fmt.Sprintf("storage table %s in account %s answered 403 %s: the identity verify runs as lacks Storage Table Data Contributor on the table (verify reads and deletes its burst's entities). "+
			"`grantDeployerVerifyAccess: true` in the stack config grants it to the stack's dataOperators (unset: to whoever runs pulumi up) "+
			"(pulumi config set grantDeployerVerifyAccess true --stack %s, then pulumi up), or grant it with: %s; %s",
			t.Name, t.Account, e.Code, t.Stack, byHand("Storage Table Data Contributor", "tableServices/default/tables/"+t.Name), propagation)
	}
}

// Unwrap returns the SDK's error.
func (e *AccessError) Unwrap() error { return e.Err }

// ClassifyAccess returns an *AccessError when err is a 403 with one of the codes above from a
// request to target, and nil for any other error.
func ClassifyAccess(err error, target Target) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		return nil
	}
	switch re.ErrorCode {
	case CodeAuthorizationPermissionMismatch, CodeAuthorizationFailure:
		return &AccessError{Target: target, Code: re.ErrorCode, Err: err}
	}
	return nil
}
