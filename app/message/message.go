// Package message defines the queue message format shared by the producer
// and the consumer, the table entity the consumer stores for each message,
// and the decision whether a dequeued message is poison.
package message

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// StampLayout is the layout of srcStamp and processedStamp: the format the
// original Python producer wrote with "%Y-%m-%d %H:%M:%S.%f" (UTC,
// microseconds).
const StampLayout = "2006-01-02 15:04:05.000000"

// parseLayout accepts StampLayout and also a stamp without the fraction
// (Python's str(datetime) drops ".000000" when microseconds are zero): Go
// accepts a fractional second after the seconds field when parsing.
const parseLayout = "2006-01-02 15:04:05"

// ErrMalformed is wrapped by every error Parse returns: the message text is
// not a valid message and can never become one, so it is poison.
var ErrMalformed = errors.New("malformed message")

// Message is the body of one queue message: {"msg": "...", "srcStamp": "..."}
// as the original producer wrote it, plus an optional idempotency "id".
type Message struct {
	// Msg is the free-form payload text.
	Msg string `json:"msg"`
	// SrcStamp is when the producer created the message, formatted with
	// StampLayout in UTC.
	SrcStamp string `json:"srcStamp"`
	// ID is the producer's idempotency key (optional): the consumer derives
	// the entity's keys from it when present, so the same message sent twice
	// (a retried enqueue whose response was lost) is stored once.
	ID string `json:"id,omitempty"`
}

// MaxIDLength bounds the idempotency id (the Table service allows 1 KiB keys).
const MaxIDLength = 256

// New returns a message with the given text, stamped at now (converted to
// UTC), without an idempotency id (the original two-field format).
func New(text string, now time.Time) Message {
	return Message{Msg: text, SrcStamp: FormatStamp(now)}
}

// NewWithID is New with an idempotency id, which must be 1-MaxIDLength
// characters; the producer uses a random UUID per message and keeps it when
// it retries the enqueue.
func NewWithID(id, text string, now time.Time) Message {
	m := New(text, now)
	m.ID = id
	return m
}

// FormatStamp formats t in UTC with StampLayout.
func FormatStamp(t time.Time) string {
	return t.UTC().Format(StampLayout)
}

// ParseStamp parses a srcStamp (UTC, with or without the microseconds).
func ParseStamp(s string) (time.Time, error) {
	t, err := time.ParseInLocation(parseLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("srcStamp %q is not %q: %w", s, StampLayout, err)
	}
	return t, nil
}

// Encode returns the JSON text the producer puts on the queue.
func (m Message) Encode() (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode message: %w", err)
	}
	return string(b), nil
}

// wire is the decoding shape: pointers tell a missing field from an empty one.
type wire struct {
	Msg      *string `json:"msg"`
	SrcStamp *string `json:"srcStamp"`
	ID       *string `json:"id"`
}

// Parsed is a successfully parsed message together with its decoded source
// time.
type Parsed struct {
	Message
	// Src is SrcStamp parsed (UTC).
	Src time.Time
}

// Parse decodes a queue message text. It accepts the JSON object itself and,
// for producers that use the SDKs' base64 message encoding, the base64 of that
// JSON. Both fields are required; srcStamp must follow StampLayout. Every
// error wraps ErrMalformed.
func Parse(text string) (Parsed, error) {
	p, err := parseJSON([]byte(text))
	if err == nil {
		return p, nil
	}
	trimmed := strings.TrimSpace(text)
	if trimmed != "" && !strings.HasPrefix(trimmed, "{") {
		if raw, decErr := base64.StdEncoding.DecodeString(trimmed); decErr == nil {
			if p, err2 := parseJSON(raw); err2 == nil {
				return p, nil
			}
		}
	}
	return Parsed{}, err
}

func parseJSON(b []byte) (Parsed, error) {
	// encoding/json turns invalid UTF-8 into U+FFFD: check the bytes first,
	// so a message is rejected rather than stored altered.
	if !utf8.Valid(b) {
		return Parsed{}, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Parsed{}, fmt.Errorf("%w: not a JSON object: %w", ErrMalformed, err)
	}
	var missing []string
	if w.Msg == nil {
		missing = append(missing, "msg")
	}
	if w.SrcStamp == nil {
		missing = append(missing, "srcStamp")
	}
	if len(missing) > 0 {
		return Parsed{}, fmt.Errorf("%w: missing field(s) %s", ErrMalformed, strings.Join(missing, ", "))
	}
	src, err := ParseStamp(*w.SrcStamp)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	m := Message{Msg: *w.Msg, SrcStamp: *w.SrcStamp}
	if w.ID != nil {
		if *w.ID == "" || len(*w.ID) > MaxIDLength {
			return Parsed{}, fmt.Errorf("%w: id must be 1-%d characters when present", ErrMalformed, MaxIDLength)
		}
		m.ID = *w.ID
	}
	return Parsed{Message: m, Src: src}, nil
}

// KeySource is what a message's entity keys derive from: the producer's
// idempotency id when the message has one, else the queue message id.
func (p Parsed) KeySource(messageID string) string {
	if p.ID != "" {
		return "id:" + p.ID
	}
	return messageID
}

// Plausibility bounds for srcStamp: a stamp further in the future than
// MaxClockSkew, or older than MaxAge, is stored but not observed as latency.
const (
	MaxClockSkew = 5 * time.Minute
	MaxAge       = 30 * 24 * time.Hour
)

// Plausible reports whether the source stamp can be a real send time seen at
// now: not in the future beyond clock skew, not older than MaxAge.
func (p Parsed) Plausible(now time.Time) bool {
	return !p.Src.After(now.Add(MaxClockSkew)) && !p.Src.Before(now.Add(-MaxAge))
}

// Partitions is the number of table partitions entities are spread over. The
// PartitionKey is a pure function of the message id, so a redelivered
// message always maps to the same entity; a few partitions let a dequeued
// batch be written as a handful of entity-group transactions, while keeping
// the load spread over more than one partition (Azure's per-partition target
// is about 2,000 entities per second). Changing it changes where an id maps:
// do not change it while messages are in flight.
const Partitions = 4

// Keys returns the PartitionKey and RowKey for a key source (Parsed.KeySource:
// the queue message id, or "id:" and the producer's idempotency id). The
// RowKey is the source itself (queue message ids are GUIDs); characters the
// Table service forbids in keys are replaced so any source maps to a valid,
// unique key.
func Keys(source string) (partitionKey, rowKey string) {
	sum := sha256.Sum256([]byte(source))
	partitionKey = fmt.Sprintf("p%d", int(sum[0])%Partitions)
	return partitionKey, sanitizeKey(source)
}

func sanitizeKey(id string) string {
	ok := id != "" && len(id) <= 512
	for _, r := range id {
		if r == '/' || r == '\\' || r == '#' || r == '?' || r == '~' || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			ok = false
			break
		}
	}
	if ok {
		return id
	}
	// "~" never appears in a kept id, so the hex form cannot collide with one.
	return "~" + hex.EncodeToString([]byte(id))
}

// Entity is the record the consumer stores for one message. data, srcStamp
// and dateStamp are the original consumer's property names, with the same
// meaning, so existing readers of the table keep working.
type Entity struct {
	// PartitionKey is derived from the key source (see Keys).
	PartitionKey string `json:"PartitionKey"`
	// RowKey is derived from the key source (see Keys).
	RowKey string `json:"RowKey"`
	// Data is the message text (the original consumer's "data").
	Data string `json:"data"`
	// SrcStamp is the producer's stamp, as received.
	SrcStamp string `json:"srcStamp"`
	// DateStamp is when the consumer processed the message (StampLayout, UTC;
	// the original consumer's "dateStamp").
	DateStamp string `json:"dateStamp"`
	// ID is the producer's idempotency id, when the message had one.
	ID string `json:"id,omitempty"`
	// LatencyMs is ProcessedStamp minus SrcStamp, in milliseconds.
	LatencyMs float64 `json:"latencyMs"`
	// MessageID is the queue message id.
	MessageID string `json:"messageId"`
	// DequeueCount is how many times the queue had handed out the message
	// when it was processed (1 on first delivery).
	DequeueCount int64 `json:"dequeueCount"`
}

// NewEntity maps a parsed message to its table entity, processed at
// processedAt; its keys come from p.KeySource(messageID).
func NewEntity(messageID string, dequeueCount int64, p Parsed, processedAt time.Time) Entity {
	pk, rk := Keys(p.KeySource(messageID))
	processedAt = processedAt.UTC().Truncate(time.Microsecond)
	return Entity{
		PartitionKey: pk,
		RowKey:       rk,
		Data:         p.Msg,
		SrcStamp:     p.SrcStamp,
		DateStamp:    FormatStamp(processedAt),
		ID:           p.ID,
		LatencyMs:    float64(processedAt.Sub(p.Src).Microseconds()) / 1000,
		MessageID:    messageID,
		DequeueCount: dequeueCount,
	}
}

// Latency returns the end-to-end latency as a duration.
func (e Entity) Latency() time.Duration {
	return time.Duration(e.LatencyMs * float64(time.Millisecond))
}

// Marshal returns the entity as the JSON the Table service expects.
func (e Entity) Marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entity %s/%s: %w", e.PartitionKey, e.RowKey, err)
	}
	return b, nil
}

// Decision says what the consumer does with a dequeued message.
type Decision int

const (
	// Process means store the entity, then delete the message.
	Process Decision = iota
	// PoisonMalformed means the text is not a valid message: move it to the
	// poison queue.
	PoisonMalformed
	// PoisonOverDelivered means the message was dequeued more than the
	// allowed number of times: move it to the poison queue.
	PoisonOverDelivered
	// PoisonRejected means the table refused the message's entity for good
	// (too large, invalid property): move it to the poison queue.
	PoisonRejected
)

// String returns the decision's name, used as a metric label and in logs.
func (d Decision) String() string {
	switch d {
	case Process:
		return "process"
	case PoisonMalformed:
		return "malformed"
	case PoisonOverDelivered:
		return "over_delivered"
	case PoisonRejected:
		return "rejected"
	default:
		return fmt.Sprintf("decision(%d)", int(d))
	}
}

// Decide classifies a dequeued message. dequeueCount is the queue's count
// including the current delivery; a message dequeued more than maxDeliveries
// times is poison even if it parses, so a message that keeps failing never
// loops forever. Otherwise a parse error makes it poison.
func Decide(dequeueCount int64, maxDeliveries int, parseErr error) Decision {
	if dequeueCount > int64(maxDeliveries) {
		return PoisonOverDelivered
	}
	if parseErr != nil {
		return PoisonMalformed
	}
	return Process
}
