package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{"GET https://acct.queue.core.windows.net/q/messages?sv=2023-01-03&se=2026&sr=q&sp=raup&sig=AbC%2Bdef123%3D&x=1 failed", "AbC%2Bdef123%3D"},
		{"BlobEndpoint=https://a;QueueEndpoint=https://b;SharedAccessSignature=sv=2023&sig=s3cr3t", "s3cr3t"},
		{"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4==;EndpointSuffix=core.windows.net", "Zm9vYmFyYmF6cXV4=="},
		{"Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-part_1", "eyJhbGciOi"},
		{"Authorization: SharedKey acct:c2VjcmV0a2V5", "c2VjcmV0a2V5"},
		{"client_assertion=eyJ0eXAi.token&grant_type=x", "eyJ0eXAi"},
	} {
		got := String(tc.in)
		if strings.Contains(got, tc.secret) || !strings.Contains(got, Mask) {
			t.Errorf("String(%q) = %q: secret %q not masked", tc.in, got, tc.secret)
		}
	}
	if got := String("queue aws2azmsgs: 404 QueueNotFound"); got != "queue aws2azmsgs: 404 QueueNotFound" {
		t.Errorf("text without secrets changed: %q", got)
	}
}

func TestHandlerRedactsEveryKindOfValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil))).With("conn", "AccountKey=k3y;")
	log.Warn("request to https://a/q?sig=m3ss4ge failed",
		"err", errors.New("GET https://a/q?sig=3rr0r: 500"),
		"url", "https://a/q?sv=1&sig=str1ng",
		slog.Group("g", "inner", "https://a/q?sig=gr0up"))
	out := buf.String()
	for _, secret := range []string{"k3y", "m3ss4ge", "3rr0r", "str1ng", "gr0up"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line leaks %q: %s", secret, out)
		}
	}
	if strings.Count(out, Mask) != 5 {
		t.Errorf("want 5 masks, got %s", out)
	}
}
