package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/message"
)

// ListEntities reads every entity of the table (tests, demo and benchmark
// use it to check what the consumer stored).
func ListEntities(ctx context.Context, t *aztables.Client) ([]message.Entity, error) {
	return QueryEntities(ctx, t, "")
}

// QueryEntities reads every entity of the table that matches an OData filter ("" for all).
func QueryEntities(ctx context.Context, t *aztables.Client, filter string) ([]message.Entity, error) {
	var opts *aztables.ListEntitiesOptions
	if filter != "" {
		opts = &aztables.ListEntitiesOptions{Filter: &filter}
	}
	var out []message.Entity
	pager := t.NewListEntitiesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list entities: %w", err)
		}
		for _, raw := range page.Entities {
			var e message.Entity
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, fmt.Errorf("decode entity: %w", err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// PropertiesGetter is the one call Depth makes; *azqueue.QueueClient implements it.
type PropertiesGetter interface {
	GetProperties(ctx context.Context, o *azqueue.GetQueuePropertiesOptions) (azqueue.GetQueuePropertiesResponse, error)
}

// Depth returns the queue's approximate message count (visible and
// invisible messages; exact on Azurite).
func Depth(ctx context.Context, q PropertiesGetter) (int, error) {
	p, err := q.GetProperties(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("queue properties: %w", err)
	}
	if p.ApproximateMessagesCount == nil {
		return 0, nil
	}
	return int(*p.ApproximateMessagesCount), nil
}

// PeekTexts returns the texts of up to 32 visible messages without
// dequeuing them.
func PeekTexts(ctx context.Context, q *azqueue.QueueClient) ([]string, error) {
	n := int32(32)
	resp, err := q.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	if err != nil {
		return nil, fmt.Errorf("peek messages: %w", err)
	}
	var out []string
	for _, m := range resp.Messages {
		if m.MessageText != nil {
			out = append(out, *m.MessageText)
		}
	}
	return out, nil
}
