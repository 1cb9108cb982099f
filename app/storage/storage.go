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
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
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

// The storage emulator's well-known development account, which
// UseDevelopmentStorage=true stands for in every Azure SDK (Azurite and the
// old Storage Emulator use the same name, key and ports).
const (
	DevAccountName = "devstoreaccount1"
	DevAccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	// DevConnectionString is the full form of UseDevelopmentStorage=true.
	DevConnectionString = "DefaultEndpointsProtocol=http;AccountName=" + DevAccountName + ";AccountKey=" + DevAccountKey +
		";BlobEndpoint=http://127.0.0.1:10000/" + DevAccountName +
		";QueueEndpoint=http://127.0.0.1:10001/" + DevAccountName +
		";TableEndpoint=http://127.0.0.1:10002/" + DevAccountName
)

// ExpandConnectionString returns cs with the UseDevelopmentStorage=true
// shortcut replaced by DevConnectionString (the key is matched in any case,
// as the .NET and Python SDKs do; the Go SDKs do not know the shortcut).
// Any other connection string is returned unchanged. The shortcut combined
// with other keys, DevelopmentStorageProxyUri included, or with a value
// other than true is an error; errors name keys, never values, so no key or
// SAS token can end up in a message.
func ExpandConnectionString(cs string) (string, error) {
	var dev string
	var others []string
	found := false
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, "UseDevelopmentStorage") {
			dev, found = strings.TrimSpace(v), true
		} else {
			others = append(others, k)
		}
	}
	if !found {
		return cs, nil
	}
	if !strings.EqualFold(dev, "true") {
		return "", errors.New("UseDevelopmentStorage: the only valid value is true")
	}
	for _, k := range others {
		if strings.EqualFold(k, "DevelopmentStorageProxyUri") {
			return "", errors.New("UseDevelopmentStorage=true: DevelopmentStorageProxyUri is not supported; give the endpoints instead (" +
				"DefaultEndpointsProtocol=http;AccountName=...;AccountKey=...;QueueEndpoint=...;TableEndpoint=...)")
		}
	}
	if len(others) > 0 {
		return "", fmt.Errorf("UseDevelopmentStorage=true cannot be combined with other keys (%s); use either the shortcut alone or a full connection string", strings.Join(others, ", "))
	}
	return DevConnectionString, nil
}

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

// ValidQueueName reports whether name is a valid queue name (3-63 lowercase letters, digits and
// single inner hyphens).
func ValidQueueName(name string) bool {
	return len(name) >= 3 && len(name) <= 63 && queueNameRE.MatchString(name)
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
	if _, err := ExpandConnectionString(s.ConnectionString); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvConnectionString, err))
	}
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
	// Service is the account's queue service (for a queue by another name).
	Service *azqueue.ServiceClient
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

// tableServiceFromConnectionString is aztables.NewServiceClientFromConnectionString,
// except for a SAS connection string: aztables v1.4.1 then ignores TableEndpoint
// (and EndpointSuffix) and always calls https://<account>.table.core.windows.net
// (connection_string.go, parseConnectionString), which sends an Azurite or
// sovereign-cloud SAS to the wrong host. Here the SAS is appended to the
// endpoint the connection string names, as azqueue does.
func tableServiceFromConnectionString(cs string, opts *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
			kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	sas, hasSAS := kv["sharedaccesssignature"]
	if !hasSAS || kv["accountkey"] != "" {
		return aztables.NewServiceClientFromConnectionString(cs, opts)
	}
	endpoint := kv["tableendpoint"]
	if endpoint == "" {
		account, suffix, scheme := kv["accountname"], kv["endpointsuffix"], kv["defaultendpointsprotocol"]
		if account == "" {
			return nil, errors.New("a SAS connection string needs TableEndpoint or AccountName")
		}
		if suffix == "" {
			suffix = "core.windows.net"
		}
		if scheme == "" {
			scheme = "https"
		}
		endpoint = fmt.Sprintf("%s://%s.table.%s", scheme, account, suffix)
	}
	return aztables.NewServiceClientWithNoCredential(strings.TrimSuffix(endpoint, "/")+"/?"+strings.TrimPrefix(sas, "?"), opts)
}

// NewClients builds the queue, poison queue and table clients. The SDK's own
// retries are switched off: callers retry with app/retry, which also
// covers the 403 seen while a role assignment propagates. A connection string
// of UseDevelopmentStorage=true means the local emulator (DevConnectionString).
func NewClients(s Settings, httpClient *http.Client) (*Clients, error) {
	co := policy.ClientOptions{
		Transport: httpClient,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
	c := &Clients{}
	if s.ConnectionString != "" {
		cs, err := ExpandConnectionString(s.ConnectionString)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvConnectionString, err)
		}
		qs, err := azqueue.NewServiceClientFromConnectionString(cs, &azqueue.ClientOptions{ClientOptions: co})
		if err != nil {
			return nil, fmt.Errorf("%s: queue client: %w", EnvConnectionString, err)
		}
		c.Service = qs
		c.Queue = qs.NewQueueClient(s.QueueName)
		c.Poison = qs.NewQueueClient(s.PoisonQueueName())
		if s.TableName != "" {
			ts, err := tableServiceFromConnectionString(cs, &aztables.ClientOptions{ClientOptions: co})
			if err != nil {
				return nil, fmt.Errorf("%s: table client: %w", EnvConnectionString, err)
			}
			c.Table = ts.NewClient(s.TableName)
		}
		return c, nil
	}
	cred, err := NewCredential(CredentialOptions{Client: httpClient})
	if err != nil {
		return nil, fmt.Errorf("the Azure credential: %w", err)
	}
	qs, err := azqueue.NewServiceClient(fmt.Sprintf("https://%s.queue.core.windows.net/", s.AccountName), cred, &azqueue.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("queue client: %w", err)
	}
	c.Service = qs
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
