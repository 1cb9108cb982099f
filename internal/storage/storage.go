// Package storage holds the storage settings shared by the consumer and the
// producer and builds the Azure SDK clients from them: a connection string
// when one is set (Azurite, local runs), DefaultAzureCredential otherwise
// (workload identity in the pod).
package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
)

// Environment variable names, as in the original scripts.
const (
	EnvAccountName      = "AZURE_STORAGE_ACCOUNT_NAME"
	EnvQueueName        = "AZURE_QUEUE_NAME"
	EnvTableName        = "AZURE_TABLE_NAME"
	EnvConnectionString = "AZURE_STORAGE_CONNECTION_STRING"
)

// PoisonSuffix is appended to the queue name to name the poison queue.
const PoisonSuffix = "-poison"

// Settings says which account, queue and table to use and how to
// authenticate.
type Settings struct {
	// AccountName is the storage account (required without ConnectionString).
	AccountName string
	// QueueName is the work queue.
	QueueName string
	// TableName is the table entities are written to (may be empty for the
	// producer).
	TableName string
	// ConnectionString, when set, is used instead of DefaultAzureCredential.
	ConnectionString string
}

var (
	queueNameRE   = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9])*$`)
	tableNameRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)
	accountNameRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
)

// LoadSettings reads the storage settings from getenv. needTable says whether
// AZURE_TABLE_NAME is required. All problems are returned at once.
func LoadSettings(getenv func(string) string, needTable bool) (Settings, error) {
	s := Settings{
		AccountName:      getenv(EnvAccountName),
		QueueName:        getenv(EnvQueueName),
		TableName:        getenv(EnvTableName),
		ConnectionString: getenv(EnvConnectionString),
	}
	var errs []error
	if s.ConnectionString == "" {
		switch {
		case s.AccountName == "":
			errs = append(errs, fmt.Errorf("%s: required when %s is not set", EnvAccountName, EnvConnectionString))
		case !accountNameRE.MatchString(s.AccountName):
			errs = append(errs, fmt.Errorf("%s=%q: must be 3-24 lowercase letters and digits", EnvAccountName, s.AccountName))
		}
	}
	switch {
	case s.QueueName == "":
		errs = append(errs, fmt.Errorf("%s: required", EnvQueueName))
	case len(s.QueueName) < 3 || len(s.QueueName)+len(PoisonSuffix) > 63 || !queueNameRE.MatchString(s.QueueName):
		errs = append(errs, fmt.Errorf("%s=%q: must be 3-%d lowercase letters, digits and single inner hyphens (so that %q also fits 63)",
			EnvQueueName, s.QueueName, 63-len(PoisonSuffix), s.QueueName+PoisonSuffix))
	}
	switch {
	case s.TableName == "" && needTable:
		errs = append(errs, fmt.Errorf("%s: required", EnvTableName))
	case s.TableName != "" && !tableNameRE.MatchString(s.TableName):
		errs = append(errs, fmt.Errorf("%s=%q: must be 3-63 letters and digits, starting with a letter", EnvTableName, s.TableName))
	}
	return s, errors.Join(errs...)
}

// PoisonQueueName returns the poison queue's name.
func (s Settings) PoisonQueueName() string { return s.QueueName + PoisonSuffix }

// Auth describes how the clients authenticate, for logs (never a secret).
func (s Settings) Auth() string {
	if s.ConnectionString != "" {
		return "connection-string"
	}
	return "DefaultAzureCredential"
}

// Clients are the SDK clients the programs use.
type Clients struct {
	// Queue is the work queue.
	Queue *azqueue.QueueClient
	// Poison is the poison queue.
	Poison *azqueue.QueueClient
	// Table is the entity table (nil when no table name is set).
	Table *aztables.Client
}

// NewHTTPClient returns an HTTP client whose connection pool fits conns
// concurrent requests to one host (the SDK default keeps only 10 idle
// connections per host, which makes a busy consumer reconnect constantly).
func NewHTTPClient(conns int) *http.Client {
	if conns < 16 {
		conns = 16
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns * 2,
		MaxIdleConnsPerHost:   conns * 2,
		IdleConnTimeout:       4 * time.Second, // below Azurite's 5 s keep-alive
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr}
}

// NewClients builds the queue, poison queue and table clients. The SDK's own
// retries are switched off: callers retry with internal/retry, which also
// covers the 403 seen while a role assignment propagates.
func NewClients(s Settings, httpClient *http.Client) (*Clients, error) {
	co := policy.ClientOptions{
		Transport: httpClient,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
	c := &Clients{}
	if s.ConnectionString != "" {
		qs, err := azqueue.NewServiceClientFromConnectionString(s.ConnectionString, &azqueue.ClientOptions{ClientOptions: co})
		if err != nil {
			return nil, fmt.Errorf("%s: queue client: %w", EnvConnectionString, err)
		}
		c.Queue = qs.NewQueueClient(s.QueueName)
		c.Poison = qs.NewQueueClient(s.PoisonQueueName())
		if s.TableName != "" {
			ts, err := aztables.NewServiceClientFromConnectionString(s.ConnectionString, &aztables.ClientOptions{ClientOptions: co})
			if err != nil {
				return nil, fmt.Errorf("%s: table client: %w", EnvConnectionString, err)
			}
			c.Table = ts.NewClient(s.TableName)
		}
		return c, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: httpClient}})
	if err != nil {
		return nil, fmt.Errorf("DefaultAzureCredential: %w", err)
	}
	qs, err := azqueue.NewServiceClient(fmt.Sprintf("https://%s.queue.core.windows.net/", s.AccountName), cred, &azqueue.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("queue client: %w", err)
	}
	c.Queue = qs.NewQueueClient(s.QueueName)
	c.Poison = qs.NewQueueClient(s.PoisonQueueName())
	if s.TableName != "" {
		ts, err := aztables.NewServiceClient(fmt.Sprintf("https://%s.table.core.windows.net/", s.AccountName), cred, &aztables.ClientOptions{ClientOptions: co})
		if err != nil {
			return nil, fmt.Errorf("table client: %w", err)
		}
		c.Table = ts.NewClient(s.TableName)
	}
	return c, nil
}

// EnsureQueue creates the queue q if it does not exist. An existing queue is
// not an error.
func EnsureQueue(ctx context.Context, q *azqueue.QueueClient) error {
	if _, err := q.Create(ctx, nil); err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && (re.ErrorCode == "QueueAlreadyExists" || re.StatusCode == http.StatusConflict) {
			return nil
		}
		return fmt.Errorf("create queue %s: %w", q.URL(), err)
	}
	return nil
}

// EnsureTable creates the table if it does not exist. An existing table is not
// an error.
func EnsureTable(ctx context.Context, t *aztables.Client) error {
	if _, err := t.CreateTable(ctx, nil); err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && (re.ErrorCode == "TableAlreadyExists" || re.StatusCode == http.StatusConflict) {
			return nil
		}
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}
