package components

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/require"
)

// Helpers for the queue consumer's tests: render Pulumi args to the JSON the engine would send,
// and decode that JSON strictly into the real Kubernetes, KEDA and Karpenter API types.

// decodeStrict decodes data into a T and fails on any field T does not have, so a misspelt field
// name in a builder fails the test instead of being dropped by the API server.
func decodeStrict[T any](t testing.TB, what string, data []byte) T {
	t.Helper()
	var out T
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoErrorf(t, dec.Decode(&out), "%s does not decode strictly into %T:\n%s", what, out, data)
	return out
}

// renderArgs resolves a resource's args struct (e.g. *corev1.NamespaceArgs or
// *apiextensions.CustomResourceArgs) into the JSON object the resource's inputs would be, with
// apiVersion and kind as the SDK's constructor fills them in. Only works on known values: the
// builders' tests pass literals.
func renderArgs(t testing.TB, apiVersion, kind string, args any) []byte {
	t.Helper()
	obj := map[string]any{"apiVersion": apiVersion, "kind": kind}
	v := reflect.ValueOf(args)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	require.Equal(t, reflect.Struct, v.Kind(), "renderArgs wants a struct, got %T", args)
	for i := 0; i < v.NumField(); i++ {
		f, fv := v.Type().Field(i), v.Field(i)
		if !f.IsExported() || isNil(fv) {
			continue
		}
		if f.Name == "OtherFields" { // apiextensions.CustomResourceArgs: inlined untyped fields
			for it := fv.MapRange(); it.Next(); {
				obj[it.Key().String()] = resolve(t, it.Value().Interface())
			}
			continue
		}
		if f.Name == "ApiVersion" || f.Name == "Kind" {
			continue
		}
		obj[lowerFirst(f.Name)] = resolve(t, fv.Interface())
	}
	data, err := json.Marshal(obj)
	require.NoError(t, err)
	return data
}

// resolve awaits an input (or plain value holding inputs) and returns a JSON-ready value.
func resolve(t testing.TB, v any) any {
	t.Helper()
	res, err := internals.UnsafeAwaitOutput(context.Background(), pulumi.ToOutput(v))
	require.NoError(t, err)
	require.True(t, res.Known, "value %T is unknown; builder tests need literal inputs", v)
	return plain(reflect.ValueOf(res.Value))
}

// plain turns a resolved Pulumi value (SDK structs tagged `pulumi:"name"`, pointers, maps,
// slices) into maps and slices keyed by the wire names; nil pointers are left out.
func plain(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("pulumi"), ",")
			if !f.IsExported() || name == "" {
				continue
			}
			if val := plain(v.Field(i)); val != nil {
				m[name] = val
			}
		}
		return m
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			if val := plain(v.MapIndex(k)); val != nil {
				m[k.String()] = val
			}
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

func isNil(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
		return v.IsNil()
	}
	return false
}

func lowerFirst(s string) string {
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}

// testInputs are literal deploy-time inputs for the builders' tests.
func testInputs() consumerInputs {
	return consumerInputs{
		Namespace:                 pulumi.String("aqs-demo"),
		StorageAccountName:        pulumi.String("storaksdemox7k2p9"),
		QueueName:                 pulumi.String("aws2azmsgs"),
		TableName:                 pulumi.String("aws2azpmts"),
		ClientID:                  pulumi.String("11111111-2222-3333-4444-555555555555"),
		Image:                     pulumi.String("acraksdemox7k2p9.azurecr.io/aws2azure/aqs-consumer:v1"),
		ServiceAccountName:        pulumi.String("aqs-app-service-account"),
		TriggerAuthenticationName: pulumi.String("keda-az-credentials"),
	}
}
