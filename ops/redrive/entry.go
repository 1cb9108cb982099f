// Package redrive reads the poison queue the consumer fills and puts chosen messages back on the
// work queue they came from, byte for byte, without losing or doubling any (cmd/redrive).
//
// Azure Storage queues have no dead-letter redrive of their own. The poison queue holds, per
// message, a message.PoisonRecord (the original text and why it was taken off the work queue), or
// the original text alone when a record would not have fitted in a queue message. A message is
// moved by putting the original on the work queue first and only then deleting the poison message
// with its pop receipt: a crash between the two leaves it on both queues, and the consumer stores
// it once (the producer's idempotency id is the entity's key).
package redrive

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aks-edw/aks-edw/app/message"
)

// The categories of poison messages. The consumer's reasons (message.Decision's names) are those
// of the records; TooLarge is the original text alone (its record would not have fitted), which
// is moved as it is; Unparseable is anything else, never moved.
const (
	ReasonMalformed     = "malformed"
	ReasonOverDelivered = "over_delivered"
	ReasonRejected      = "rejected"
	ReasonTooLarge      = "too_large"
	ReasonUnparseable   = "unparseable"
)

// Reasons are the categories -reason accepts, in report order.
var Reasons = []string{ReasonMalformed, ReasonOverDelivered, ReasonRejected, ReasonTooLarge}

// Entry is one message read from the poison queue.
type Entry struct {
	// PoisonID is the poison queue's own message id.
	PoisonID string
	// Inserted is when the message went onto the poison queue (the service's time).
	Inserted time.Time
	// Text is the poison message's text as read.
	Text string
	// Reason is the record's reason, ReasonTooLarge or ReasonUnparseable.
	Reason string
	// Record is the decoded record (Reason one of the consumer's).
	Record message.PoisonRecord
	// Original is the text to put back on the work queue (not for ReasonUnparseable).
	Original string
	// Problem says why the message is ReasonUnparseable.
	Problem string

	popReceipt string
}

// ID is the id the report shows and -id matches: the work queue's message id the record names,
// or the poison queue's own id for a message kept as it was (and for one that does not parse).
func (e Entry) ID() string {
	if e.Record.MessageID != "" {
		return e.Record.MessageID
	}
	return e.PoisonID
}

// At is when the message was poisoned: the record's poisonedAt, else its poison queue insertion.
func (e Entry) At() time.Time {
	if t, err := message.ParseStamp(e.Record.PoisonedAt); err == nil && e.Record.PoisonedAt != "" {
		return t
	}
	return e.Inserted
}

// Source is the work queue the message came from: the one its record names, else the work
// queue whose poison queue holds it.
func (e Entry) Source(work string) string {
	if e.Record.Queue != "" {
		return e.Record.Queue
	}
	return work
}

// Movable reports whether the entry can go back to a work queue.
func (e Entry) Movable() bool { return e.Reason != ReasonUnparseable }

// Classify reads one poison message's text. work is the work queue whose poison queue it is on.
func Classify(poisonID string, inserted time.Time, text, work string) Entry {
	e := Entry{PoisonID: poisonID, Inserted: inserted, Text: text}
	unparseable := func(format string, a ...any) Entry {
		e.Reason, e.Problem, e.Record, e.Original = ReasonUnparseable, fmt.Sprintf(format, a...), message.PoisonRecord{}, ""
		return e
	}
	rec, original, err := message.DecodePoison(text)
	if err != nil {
		return unparseable("%v", err)
	}
	if rec.Reason == "" {
		// Not a record. The consumer moves a text unchanged only when its record would not fit;
		// a text that would have fitted was not put there by the consumer.
		if looksLikeRecord(text) {
			return unparseable("a poison record without its reason or body")
		}
		_, encErr := message.NewPoisonRecord(work, "00000000-0000-0000-0000-000000000000", 1, text, message.PoisonRejected, "", inserted).Encode()
		if !errors.Is(encErr, message.ErrPoisonRecordTooLarge) {
			return unparseable("neither a poison record nor a text too large to wrap in one (%d bytes)", len(text))
		}
		e.Reason, e.Original = ReasonTooLarge, text
		return e
	}
	e.Record, e.Original = rec, original
	switch {
	case !slices.Contains(Reasons[:3], rec.Reason):
		return unparseable("unknown reason %q", rec.Reason)
	case rec.Queue == "":
		return unparseable("the record names no queue")
	case rec.MessageID == "":
		return unparseable("the record has no messageId")
	}
	if _, err := message.ParseStamp(rec.PoisonedAt); err != nil {
		return unparseable("poisonedAt: %v", err)
	}
	e.Reason = rec.Reason
	return e
}

// looksLikeRecord reports whether text is a JSON object with a poison record's own fields.
func looksLikeRecord(text string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(text), &m) != nil {
		return false
	}
	for _, k := range []string{"reason", "poisonedAt", "bodyBase64", "dequeueCount"} {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// Sendable says why text cannot be put on a queue byte for byte ("" when it can): the Queue
// service's API carries text in XML, which holds only valid UTF-8 in XML's character range
// (encoding/xml writes U+FFFD for anything else).
func Sendable(text string) string {
	for i, r := range text {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(text[i:]); size == 1 {
				return fmt.Sprintf("not valid UTF-8 at byte %d", i)
			}
		}
		if !(r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			return fmt.Sprintf("character U+%04X at byte %d cannot travel in the queue API's XML", r, i)
		}
	}
	return ""
}

// Selector picks the entries to move. The zero value selects every movable entry.
type Selector struct {
	// Reasons, when not empty, are the categories selected (of Reasons).
	Reasons []string
	// Since and Until, when not zero, bound At: Since <= At < Until.
	Since, Until time.Time
	// IDs, when not empty, are the ids selected (Entry.ID, or the poison queue's own id).
	IDs map[string]bool
}

// Match reports whether the selector picks e (never an unparseable entry).
func (s Selector) Match(e Entry) bool {
	if !e.Movable() {
		return false
	}
	if len(s.Reasons) > 0 && !slices.Contains(s.Reasons, e.Reason) {
		return false
	}
	at := e.At()
	if !s.Since.IsZero() && at.Before(s.Since) {
		return false
	}
	if !s.Until.IsZero() && !at.Before(s.Until) {
		return false
	}
	if len(s.IDs) > 0 && !s.IDs[e.ID()] && !s.IDs[e.PoisonID] {
		return false
	}
	return true
}

// ParseReasons reads -reason values (each may hold several, comma-separated).
func ParseReasons(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, r := range strings.Split(v, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			if !slices.Contains(Reasons, r) {
				return nil, fmt.Errorf("-reason %q: unknown; the reasons are %s", r, strings.Join(Reasons, ", "))
			}
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// ParseTime reads -since and -until: RFC 3339 ("2026-12-01T10:00:00Z"), the records' own
// layout in UTC ("2026-12-01 10:00:00[.000000]"), a date in UTC ("2026-12-01"), or a duration
// before now ("90m", "36h").
func ParseTime(flag, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := message.ParseStamp(v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, time.UTC); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: not a time: use RFC 3339 (2026-12-01T10:00:00Z), \"2026-12-01 10:00:00\" (UTC), 2026-12-01, or a duration before now (36h)", flag, v)
}
