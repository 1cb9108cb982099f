package message

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPoisonRecordKeepsTheOriginalExactly(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, text := range []string{`{"msg":"x"}`, "not json at all", "caf\xe9 \x00 bytes", ""} {
		r := NewPoisonRecord("q", "mid", 2, text, PoisonMalformed, "missing field(s) srcStamp", now)
		enc, err := r.Encode()
		require.NoError(t, err)
		got, body, err := DecodePoison(enc)
		require.NoError(t, err)
		assert.Equal(t, text, body, "original text byte for byte")
		assert.Equal(t, "malformed", got.Reason)
		assert.Equal(t, "missing field(s) srcStamp", got.Detail)
		assert.Equal(t, "mid", got.MessageID)
		assert.EqualValues(t, 2, got.DequeueCount)
		assert.Equal(t, "2026-11-29 12:00:00.000000", got.PoisonedAt)
	}
	// A plain text (a record that did not fit) decodes as itself, without a reason.
	r, body, err := DecodePoison(`{"msg":"hi","srcStamp":"2025-01-02 03:04:05"}`)
	require.NoError(t, err)
	assert.Empty(t, r.Reason)
	assert.Equal(t, `{"msg":"hi","srcStamp":"2025-01-02 03:04:05"}`, body)
}

func TestPoisonRecordTooLarge(t *testing.T) {
	_, err := NewPoisonRecord("q", "m", 1, strings.Repeat("a", MaxQueueMessageBytes), PoisonRejected, "too big", time.Now()).Encode()
	assert.ErrorIs(t, err, ErrPoisonRecordTooLarge)
}
