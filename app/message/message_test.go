package message

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewAndEncodeUseTheOriginalFormat(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	text, err := New("hello", at).Encode()
	require.NoError(t, err)
	assert.JSONEq(t, `{"msg":"hello","srcStamp":"2025-03-04 04:06:07.890123"}`, text, "UTC, microseconds")
}

func TestParse(t *testing.T) {
	src := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	cases := []struct {
		name    string
		text    string
		wantMsg string
		wantSrc time.Time
		wantErr string
	}{
		{name: "valid", text: `{"msg":"hi","srcStamp":"2025-01-02 03:04:05.000006"}`, wantMsg: "hi", wantSrc: src},
		{name: "python str without fraction", text: `{"msg":"hi","srcStamp":"2025-01-02 03:04:05"}`, wantMsg: "hi", wantSrc: src.Truncate(time.Second)},
		{name: "empty msg is a message", text: `{"msg":"","srcStamp":"2025-01-02 03:04:05.000006"}`, wantMsg: "", wantSrc: src},
		{name: "extra fields ignored", text: `{"msg":"hi","srcStamp":"2025-01-02 03:04:05.000006","x":1}`, wantMsg: "hi", wantSrc: src},
		{name: "base64 of valid JSON", text: base64.StdEncoding.EncodeToString([]byte(`{"msg":"b64","srcStamp":"2025-01-02 03:04:05.000006"}`)), wantMsg: "b64", wantSrc: src},
		{name: "not JSON", text: `hello`, wantErr: "not a JSON object"},
		{name: "empty", text: ``, wantErr: "not a JSON object"},
		{name: "JSON array", text: `["msg"]`, wantErr: "not a JSON object"},
		{name: "null", text: `null`, wantErr: "missing field(s) msg, srcStamp"},
		{name: "missing srcStamp", text: `{"msg":"hi"}`, wantErr: "missing field(s) srcStamp"},
		{name: "missing msg", text: `{"srcStamp":"2025-01-02 03:04:05.000006"}`, wantErr: "missing field(s) msg"},
		{name: "msg not a string", text: `{"msg":1,"srcStamp":"2025-01-02 03:04:05.000006"}`, wantErr: "not a JSON object"},
		{name: "bad stamp", text: `{"msg":"hi","srcStamp":"2025-01-02T03:04:05Z"}`, wantErr: "srcStamp"},
		{name: "trailing garbage", text: `{"msg":"hi","srcStamp":"2025-01-02 03:04:05.000006"} x`, wantErr: "not a JSON object"},
		{name: "base64 of garbage", text: base64.StdEncoding.EncodeToString([]byte(`nope`)), wantErr: "not a JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.text)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrMalformed), "wraps ErrMalformed")
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantMsg, p.Msg)
			assert.True(t, tc.wantSrc.Equal(p.Src), "src %s, want %s", p.Src, tc.wantSrc)
		})
	}
}

func TestKeysAreDeterministicAndValid(t *testing.T) {
	ids := []string{"6b1c2c3e-0b7a-4a59-9b8a-1f0a3e5d2c11", "00000000-0000-0000-0000-000000000000", "a/b#c?d\\e", "x\x01y", ""}
	seen := map[string]bool{}
	for _, id := range ids {
		pk1, rk1 := Keys(id)
		pk2, rk2 := Keys(id)
		assert.Equal(t, pk1, pk2)
		assert.Equal(t, rk1, rk2, "same id, same entity: redelivery upserts, never duplicates")
		assert.Regexp(t, `^p[0-3]$`, pk1)
		assert.NotRegexp(t, `[/\\#?\x00-\x1f]`, rk1)
		assert.NotEmpty(t, rk1)
		assert.False(t, seen[rk1], "distinct ids give distinct row keys")
		seen[rk1] = true
	}
	pk, rk := Keys("6b1c2c3e-0b7a-4a59-9b8a-1f0a3e5d2c11")
	assert.Equal(t, "6b1c2c3e-0b7a-4a59-9b8a-1f0a3e5d2c11", rk, "a GUID is its own row key")
	assert.NotEmpty(t, pk)
}

func TestKeysSpreadOverAllPartitions(t *testing.T) {
	count := map[string]int{}
	for i := range 400 {
		pk, _ := Keys(string(rune('a'+i%26)) + time.Duration(i).String())
		count[pk]++
	}
	assert.Len(t, count, Partitions)
	for pk, n := range count {
		assert.Greater(t, n, 50, "partition %s", pk)
	}
}

func TestNewEntity(t *testing.T) {
	p, err := Parse(`{"msg":"payload","srcStamp":"2025-01-02 03:04:05.000000"}`)
	require.NoError(t, err)
	processed := time.Date(2025, 1, 2, 3, 4, 5, 250500999, time.UTC)
	e := NewEntity("id-1", 3, p, processed)
	pk, rk := Keys("id-1")
	assert.Equal(t, Entity{
		PartitionKey: pk, RowKey: rk, Data: "payload", SrcStamp: "2025-01-02 03:04:05.000000",
		DateStamp: "2025-01-02 03:04:05.250500", LatencyMs: 250.5, MessageID: "id-1", DequeueCount: 3,
	}, e)
	assert.Equal(t, 250500*time.Microsecond, e.Latency())

	// The original consumer's property names, with the same meaning, beside the new ones.
	b, err := e.Marshal()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, map[string]any{
		"PartitionKey": pk, "RowKey": rk, "data": "payload", "srcStamp": "2025-01-02 03:04:05.000000",
		"dateStamp": "2025-01-02 03:04:05.250500", "latencyMs": 250.5, "messageId": "id-1", "dequeueCount": 3.0,
	}, m)
}

// With an idempotency id, the keys derive from it, not from the queue message id: the same
// message enqueued twice (two queue ids) maps to one entity.
func TestEntityKeysFromIdempotencyID(t *testing.T) {
	text, err := NewWithID("4f1c1e2a-9a51-4f0e-8d7e-2d8b3f6a1c11", "hello", time.Now()).Encode()
	require.NoError(t, err)
	assert.Contains(t, text, `"id":"4f1c1e2a-9a51-4f0e-8d7e-2d8b3f6a1c11"`)
	p, err := Parse(text)
	require.NoError(t, err)
	a := NewEntity("queue-id-first-send", 1, p, time.Now())
	b := NewEntity("queue-id-retried-send", 1, p, time.Now())
	assert.Equal(t, a.PartitionKey, b.PartitionKey)
	assert.Equal(t, a.RowKey, b.RowKey)
	assert.Equal(t, "4f1c1e2a-9a51-4f0e-8d7e-2d8b3f6a1c11", a.ID)
	// The original two-field format still keys on the queue message id.
	p2, err := Parse(`{"msg":"hello","srcStamp":"2025-01-02 03:04:05"}`)
	require.NoError(t, err)
	assert.NotEqual(t, NewEntity("q1", 1, p2, time.Now()).RowKey, NewEntity("q2", 1, p2, time.Now()).RowKey)
	for _, bad := range []string{`{"msg":"x","srcStamp":"2025-01-02 03:04:05","id":""}`, `{"msg":"x","srcStamp":"2025-01-02 03:04:05","id":7}`,
		`{"msg":"x","srcStamp":"2025-01-02 03:04:05","id":"` + strings.Repeat("a", MaxIDLength+1) + `"}`} {
		_, err := Parse(bad)
		assert.ErrorIs(t, err, ErrMalformed, bad)
	}
}

// Invalid UTF-8 is rejected, not stored with U+FFFD in its place.
func TestInvalidUTF8IsMalformed(t *testing.T) {
	_, err := Parse("{\"msg\":\"caf\xe9\",\"srcStamp\":\"2025-01-02 03:04:05\"}")
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "UTF-8")
}

func TestPlausible(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		src  time.Time
		want bool
	}{
		{now.Add(-time.Second), true}, {now.Add(MaxClockSkew), true}, {now.Add(-MaxAge), true},
		{now.Add(MaxClockSkew + time.Second), false}, {now.Add(-MaxAge - time.Second), false},
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), false}, {time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		assert.Equal(t, tc.want, Parsed{Src: tc.src}.Plausible(now), "%s", tc.src)
	}
}

func TestDecide(t *testing.T) {
	bad := errors.New("bad")
	cases := []struct {
		count int64
		max   int
		err   error
		want  Decision
	}{
		{count: 1, max: 5, want: Process},
		{count: 5, max: 5, want: Process},
		{count: 6, max: 5, want: PoisonOverDelivered},
		{count: 1, max: 5, err: bad, want: PoisonMalformed},
		{count: 6, max: 5, err: bad, want: PoisonOverDelivered},
		{count: 1, max: 1, want: Process},
		{count: 2, max: 1, want: PoisonOverDelivered},
		{count: 0, max: 5, want: Process},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, Decide(tc.count, tc.max, tc.err), "count=%d max=%d err=%v", tc.count, tc.max, tc.err)
	}
	assert.Equal(t, "malformed", PoisonMalformed.String())
	assert.Equal(t, "over_delivered", PoisonOverDelivered.String())
	assert.Equal(t, "process", Process.String())
}
