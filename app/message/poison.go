package message

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxQueueMessageBytes is the Queue service's limit on a message's text.
const MaxQueueMessageBytes = 64 * 1024

// PoisonRecord is what the consumer puts on the poison queue: the message
// exactly as it was dequeued, and why it was taken off the work queue.
type PoisonRecord struct {
	// Reason is the Decision's name: malformed, over_delivered or rejected.
	Reason string `json:"reason"`
	// Detail says what was wrong (a parse error, the table's refusal), with
	// secrets redacted.
	Detail string `json:"detail,omitempty"`
	// Queue is the work queue the message came from.
	Queue string `json:"queue"`
	// MessageID and DequeueCount are the work queue's.
	MessageID    string `json:"messageId"`
	DequeueCount int64  `json:"dequeueCount"`
	// PoisonedAt is when it was moved (StampLayout, UTC).
	PoisonedAt string `json:"poisonedAt"`
	// Body is the original message text, unchanged, when it is valid UTF-8.
	Body *string `json:"body,omitempty"`
	// BodyBase64 is the original text's bytes in base64 when they are not
	// valid UTF-8 (JSON would alter them).
	BodyBase64 *string `json:"bodyBase64,omitempty"`
}

// NewPoisonRecord describes a message leaving the work queue for reason.
func NewPoisonRecord(queue, messageID string, dequeueCount int64, text string, reason Decision, detail string, now time.Time) PoisonRecord {
	r := PoisonRecord{
		Reason: reason.String(), Detail: detail, Queue: queue, MessageID: messageID,
		DequeueCount: dequeueCount, PoisonedAt: FormatStamp(now),
	}
	if utf8.ValidString(text) {
		r.Body = &text
	} else {
		b := base64.StdEncoding.EncodeToString([]byte(text))
		r.BodyBase64 = &b
	}
	return r
}

// ErrPoisonRecordTooLarge is returned by Encode when the record would not fit
// in a queue message; the caller then moves the original text unchanged.
var ErrPoisonRecordTooLarge = errors.New("poison record exceeds the queue message size limit")

// Encode returns the record as the poison queue message text.
func (r PoisonRecord) Encode() (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode poison record: %w", err)
	}
	if len(b) > MaxQueueMessageBytes {
		return "", fmt.Errorf("%w (%d bytes)", ErrPoisonRecordTooLarge, len(b))
	}
	return string(b), nil
}

// DecodePoison reads a poison queue message: a PoisonRecord, or (when the
// record would have been too large) the original text alone, returned with
// an empty Reason. It returns the original text either way.
func DecodePoison(text string) (PoisonRecord, string, error) {
	var r PoisonRecord
	if err := json.Unmarshal([]byte(text), &r); err != nil || r.Reason == "" || (r.Body == nil && r.BodyBase64 == nil) {
		return PoisonRecord{}, text, nil
	}
	if r.Body != nil {
		return r, *r.Body, nil
	}
	raw, err := base64.StdEncoding.DecodeString(*r.BodyBase64)
	if err != nil {
		return r, "", fmt.Errorf("poison record %s: bodyBase64: %w", r.MessageID, err)
	}
	return r, string(raw), nil
}
