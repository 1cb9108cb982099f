// Package redact removes secrets from text before it is logged: SAS
// signatures in URLs (sig=...), account keys and SAS tokens in connection
// strings, and bearer tokens. The Azure SDK's error messages carry the request
// URL, SAS query included, so every logged error goes through it (Handler).
package redact

import (
	"context"
	"log/slog"
	"regexp"
)

// Mask replaces a secret's value.
const Mask = "REDACTED"

var patterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	// SAS signature in a URL query or a connection string's SAS token.
	{regexp.MustCompile(`(?i)(\bsig=)[^&\s;"']+`), "${1}" + Mask},
	// Connection string secrets.
	{regexp.MustCompile(`(?i)(\bAccountKey=)[^;\s"']+`), "${1}" + Mask},
	{regexp.MustCompile(`(?i)(\bSharedAccessSignature=)[^;\s"']+`), "${1}" + Mask},
	{regexp.MustCompile(`(?i)(\bSharedAccessKey=)[^;\s"']+`), "${1}" + Mask},
	// Authorization headers and bearer tokens.
	{regexp.MustCompile(`(?i)(\bBearer\s+)[A-Za-z0-9\-._~+/]+=*`), "${1}" + Mask},
	{regexp.MustCompile(`(?i)(\bSharedKey\s+[^:\s]+:)[A-Za-z0-9+/=]+`), "${1}" + Mask},
	// Client assertions and tokens in form or query values.
	{regexp.MustCompile(`(?i)(\b(?:client_assertion|access_token|refresh_token|client_secret)=)[^&\s"']+`), "${1}" + Mask},
}

// String returns s with every secret value replaced by Mask.
func String(s string) string {
	for _, p := range patterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	return s
}

// Handler wraps a slog.Handler so that every string, error and Stringer
// attribute value (and the message) is redacted before it is written.
func Handler(h slog.Handler) slog.Handler { return handler{h} }

type handler struct{ next slog.Handler }

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return handler{h.next.WithAttrs(red)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.next.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = attr(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, String(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, String(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
